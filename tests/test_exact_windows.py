"""The batch engine's window sums, means and standard deviations, bit for bit, at any window.

The contract both engines keep: a window sum adds its values left to right from the oldest,
x_(i-L-W+1) + … + x_(i-L) (a sum of one value is that value, so -0.0 stays -0.0); the mean is
that sum / W correctly rounded; the std is sqrt(sum, left to right, of (x - mean)^2, / W).
Here the real functions of the polars backend run over small frames laid out as the backend
lays out a series (sorted by run, with the index within the run), and every row whose window
lies within its run is compared with the same arithmetic in plain Python. Short windows are a
chain of shifted columns in the plan, long ones (> EXACT_WINDOW_LIMIT) a numpy kernel: both are
covered, the kernel with blocks and segment gaps small enough to split these short series.
"""

from __future__ import annotations

import math
import struct
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruledsl.engines.batch import polars_backend as backend
from ruledsl.engines.batch.frames import INDEX, RUN, VALUE, index_in_run

STATISTICS = {"sum": backend.window_sum, "mean": backend.window_mean, "std": backend.window_std}


# ------------------------------------------------------------ plain Python, left to right


def left_to_right(values: list[float], end: int, window: int) -> float:
    """values[end-W+1] + … + values[end], from the oldest."""
    total = values[end - window + 1]
    for j in range(end - window + 2, end + 1):
        total += values[j]
    return total


def expected(statistic: str, values: list[float], end: int, window: int) -> float:
    total = left_to_right(values, end, window)
    if statistic == "sum":
        return total
    mean = total / window
    if statistic == "mean":
        return mean
    deviation = values[end - window + 1] - mean
    squares = deviation * deviation
    for j in range(end - window + 2, end + 1):
        deviation = values[j] - mean
        squares += deviation * deviation
    return math.sqrt(squares / window)


def same_bits(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):  # inf - inf in a deviation: NaN either way
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<d", a) == struct.pack("<d", b)


# ------------------------------------------------------------ the batch engine's functions


def series_frame(runs: list[list[float]]) -> pl.LazyFrame:
    """A series as LogFrame.series hands it out: sorted by run, the index within the run."""
    return pl.LazyFrame({RUN: [f"run{r:03d}" for r, values in enumerate(runs) for _ in values],
                         VALUE: [v for values in runs for v in values]},
                        schema={RUN: pl.String, VALUE: pl.Float64}
                        ).with_columns(index_in_run().alias(INDEX))


def computed(runs: list[list[float]], window: int, lag: int) -> dict[str, list[float | None]]:
    frame = series_frame(runs).select(
        *(STATISTICS[name](pl.col(VALUE), window, lag).alias(name) for name in STATISTICS))
    return frame.collect().to_dict(as_series=False)


def mismatches(runs: list[list[float]], window: int, lag: int) -> list[str]:
    """Every (statistic, run, index) whose window lies in its run and whose bits differ."""
    got = computed(runs, window, lag)
    wrong = []
    row = 0
    for r, values in enumerate(runs):
        for i in range(len(values)):
            if i >= window + lag - 1:
                for name in STATISTICS:
                    want, have = expected(name, values, i - lag, window), got[name][row + i]
                    if have is None or not same_bits(want, have):
                        wrong.append(f"{name} W={window} lag={lag} run {r} index {i}: {have!r}, expected {want!r}")
        row += len(values)
    return wrong


# ------------------------------------------------------------ fixed cases (the fast core)


def fixed_runs() -> list[list[float]]:
    """Three runs (a long one, one shorter than the long windows, another long one) of values
    whose sums round differently in another order: large and small magnitudes, signs, -0.0."""
    def run(length: int, seed: int) -> list[float]:
        values, state = [], seed
        for j in range(length):
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            magnitude = (0.1, 1e-9, 3.7, 1e16, 5e-324, 1e300)[state % 6]
            values.append(-0.0 if j % 97 == 13 else magnitude * ((state >> 20) % 1000 - 500) / 7)
        return values
    return [run(700, 1), run(64, 2), run(1500, 3)]


@pytest.mark.parametrize("window, lag", [(65, 0), (65, 3), (200, 0), (200, 1), (20, 0), (20, 2), (1, 0), (1, 4)])
def test_fixed_series_bit_for_bit(window, lag):
    assert mismatches(fixed_runs(), window, lag) == []


@pytest.mark.parametrize("window", [65, 200])
def test_fixed_series_across_kernel_blocks_and_segments(window):
    """The numpy kernel's blocks and merged segments cut the rows in other places: same bits."""
    for block, gap in [(7, 0), (64, 10), (1000, 5000)]:
        with mock.patch.object(backend, "WINDOW_BLOCK", block), mock.patch.object(backend, "WINDOW_GAP", gap):
            assert mismatches(fixed_runs(), window, 2) == [], (block, gap)


def test_a_rolling_sum_would_differ():
    """The fixed series tell the exact sums from polars' rolling sum (the earlier fallback past 64)."""
    runs = fixed_runs()
    frame = series_frame(runs).select(INDEX, backend.window_sum(pl.col(VALUE), 65).alias("exact"),
                                      pl.col(VALUE).rolling_sum(65).over(RUN).alias("rolling")).collect()
    defined = frame.filter(pl.col(INDEX) >= 64)
    assert (defined["exact"] != defined["rolling"]).sum() > 0


def test_sum_of_one_value_keeps_negative_zero():
    got = computed([[-0.0, -0.0, 1.0], [-0.0]], 1, 0)
    assert [math.copysign(1.0, v) for v in got["sum"]] == [-1.0, -1.0, 1.0, -1.0]
    assert [math.copysign(1.0, v) for v in got["mean"]] == [-1.0, -1.0, 1.0, -1.0]


def test_windows_that_never_fit_their_run_are_null():
    got = computed([[1.0] * 10, [2.0] * 80], 100, 0)
    assert got["sum"] == [None] * 90 and got["std"] == [None] * 90


def test_a_null_in_the_window_makes_it_null():
    """Series never hold nulls (values that are absent are not rows), but a null must not
    become a number: the kernel gives null where the chain of additions would."""
    frame = pl.LazyFrame({RUN: ["a"] * 100, VALUE: [1.0] * 70 + [None] + [1.0] * 29},
                         schema={RUN: pl.String, VALUE: pl.Float64}).with_columns(index_in_run().alias(INDEX))
    sums = frame.select(backend.window_sum(pl.col(VALUE), 66).alias("s")).collect()["s"].to_list()
    assert sums[65:70] == [66.0] * 5
    assert sums[70:] == [None] * 30


# ------------------------------------------------------------ random series (slow)

finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # any magnitude, huge and subnormal included
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    st.sampled_from([0.0, -0.0, 0.1, -0.1, 1e-300, 5e-324, 1e308, -1e308, 1.0 / 3.0]),
)


@st.composite
def archives(draw):
    """Runs of different lengths (some repeated), a window, a lag, and the kernel's block and gap."""
    window = draw(st.one_of(st.integers(1, 200), st.integers(60, 70)))
    lag = draw(st.integers(0, 5))
    lengths = draw(st.lists(st.integers(0, window + lag + 40), min_size=1, max_size=5))
    runs = [draw(st.lists(finite, min_size=n, max_size=n)) for n in lengths]
    if draw(st.booleans()):  # the same values again as another run
        runs.append(list(draw(st.sampled_from(runs))))
    block = draw(st.sampled_from([1, 3, 17, 1 << 14]))
    gap = draw(st.sampled_from([0, 5, 4096]))
    return runs, window, lag, block, gap


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(archives())
def test_random_series_bit_for_bit(case):
    runs, window, lag, block, gap = case
    with mock.patch.object(backend, "WINDOW_BLOCK", block), mock.patch.object(backend, "WINDOW_GAP", gap):
        assert mismatches(runs, window, lag) == []
