"""One log key's series, kept incrementally (docs/language.md §2): its last few finite values.

A `Series` holds only what the rules reading the key need: the last `capacity`
finite values (the largest window plus its lag, one more for `spike` and
`delta`), how many finite and raw values were seen, the last raw value (for
`nonfinite`), the steps the key was first and last present at (for `absent`)
and the means of the first W values (`baseline`, `drop`, `rise`). Memory is
bounded by `capacity`, whatever the length of the run.

Rows at one step merge key by key (docs/language.md §2), so the value a key holds at the
current step may be replaced by a later row of the same step: `put` undoes the
append it made for that step (in O(1)) before applying the new value.

Arithmetic matches the batch engine bit for bit: a window sum is added left to
right starting from its oldest value (not from 0.0, which would turn a sum of
-0.0 into 0.0), then divided once by W. A lagged window (lag L) is the window of
W values ending L values before the current one: x_(i-L-W+1) … x_(i-L).
"""

from __future__ import annotations

import math

_NOTHING = object()  # no value was evicted by the last append


class Series:
    __slots__ = ("key", "capacity", "values", "count", "raw_count", "raw_last", "step", "before", "first_step", "now",
                 "appended", "_baseline_windows", "_baselines", "_cache")

    def __init__(self, key: str, capacity: int, baseline_windows: frozenset[int]):
        self.key = key
        self.capacity = max(capacity, 1)
        self.values: list[float] = []  # the last finite values, oldest first (at least `capacity` once seen)
        self.count = 0  # finite values seen: the series index of the last one is count - 1
        self.raw_count = 0  # rows holding the key, non-finite values included
        self.raw_last = math.nan
        self.step: int | None = None  # step of the last raw value: the last step the key was present at
        self.before: int | None = None  # the step it was present at before `step` (a retracted value restores it)
        self.first_step: int | None = None  # step of the first raw value (absent evaluates after it)
        self.now = 0  # the step an `absent` rule is evaluating (set by it: the series knows only its own steps)
        self.appended = False  # whether that value was finite (appended to `values`)
        self._baseline_windows = baseline_windows
        self._baselines: dict[int, float] = {}  # W -> mean of the first W finite values
        self._cache: dict[object, float] = {}  # statistics of the current index, shared by rules

    @property
    def baseline_windows(self) -> frozenset[int]:
        """The W whose first-W means it records."""
        return self._baseline_windows

    # ------------------------------------------------------------ feeding

    def put(self, step: int, value: float) -> None:
        """The key's (merged) value at `step`; a second call at the same step replaces the first."""
        self._cache.clear()
        if self.step == step:
            if self.appended:
                self._unappend()
        else:
            self.before, self.step = self.step, step
            self.raw_count += 1
            if self.first_step is None:
                self.first_step = step
        self.raw_last = value
        self.appended = math.isfinite(value)
        if self.appended:
            self._append(value)

    def retract(self, step: int) -> None:
        """A later row of `step` nulled the key (docs/language.md §2): it is absent at `step` after all."""
        if self.step != step:
            return
        self._cache.clear()
        if self.appended:
            self._unappend()
        self.raw_count -= 1
        self.step, self.appended = self.before, False
        if self.raw_count == 0:
            self.first_step = None

    def _append(self, value: float) -> None:
        values = self.values
        values.append(value)
        self.count += 1
        if len(values) > 2 * self.capacity + 2:  # trim in batches; keep one spare value for an undo
            del values[:len(values) - self.capacity - 1]
        if self.count in self._baseline_windows:
            self._baselines[self.count] = self.mean(self.count)

    def _unappend(self) -> None:
        self._baselines.pop(self.count, None)
        self.values.pop()
        self.count -= 1

    # ------------------------------------------------------------ the current index

    def has_value_at(self, step: int) -> bool:
        """A finite value at `step`: an index of the series (docs/language.md §2)."""
        return self.step == step and self.appended

    def has_row_at(self, step: int) -> bool:
        """Any value at `step`, non-finite included (what `nonfinite` evaluates)."""
        return self.step == step

    @property
    def last(self) -> float:
        return self.values[-1]

    def sum(self, window: int, lag: int = 0) -> float:
        """x_(i-L-W+1) + … + x_(i-L), added left to right from the oldest."""
        key = ("sum", window, lag)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = _left_to_right(self.values, len(self.values) - lag - window, window)
        return cached

    def mean(self, window: int, lag: int = 0) -> float:
        # unlagged means are keyed by the bare window: the most asked for (every shorthand comparison)
        key: object = window if lag == 0 else ("mean", window, lag)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self.sum(window, lag) / window
        return cached

    def previous_mean(self, window: int) -> float:
        """mean(x_(i-W) … x_(i-1)): the mean lagged by one value (spike's m)."""
        return self.mean(window, 1)

    def std(self, window: int, lag: int = 0) -> float:
        """Population standard deviation, the squares added left to right (as the batch engine)."""
        key = ("std", window, lag)
        cached = self._cache.get(key)
        if cached is None:
            mean = self.mean(window, lag)
            values = self.values
            start = len(values) - lag - window
            deviation = values[start] - mean
            squares = deviation * deviation
            for j in range(start + 1, start + window):
                deviation = values[j] - mean
                squares += deviation * deviation
            cached = self._cache[key] = math.sqrt(squares / window)
        return cached

    def minimum(self, window: int, lag: int = 0) -> float:
        end = len(self.values) - lag
        return min(self.values[end - window:end])

    def maximum(self, window: int, lag: int = 0) -> float:
        end = len(self.values) - lag
        return max(self.values[end - window:end])

    def spread(self, window: int) -> float:
        key = ("spread", window)
        cached = self._cache.get(key)
        if cached is None:
            recent = self.values[len(self.values) - window:]
            cached = self._cache[key] = max(recent) - min(recent)
        return cached

    def gap(self) -> float:
        """s − L: the steps from the last one the key was present at to the step being evaluated (`now`)."""
        assert self.step is not None
        return float(self.now - self.step)

    def delta(self, lag: int) -> float:
        return self.values[-1] - self.values[-1 - lag]

    def baseline(self, window: int) -> float:
        """The mean of the first W values (defined once W values were seen)."""
        return self._baselines[window]


def _left_to_right(values: list[float], start: int, length: int) -> float:
    total = values[start]
    for j in range(start + 1, start + length):
        total += values[j]
    return total
