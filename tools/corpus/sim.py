"""One simulated run: a value per optimizer step for every key, reduced to the rows TRL logs.

A trainer model fills `Sim.series` (one numpy array per key, a value per step), a failure may
rewrite parts of it, and `rows()` turns it into what `on_log` receives, the way TRL 1.16 and
transformers 5.24 build it:

- TRL's own metrics are appended once per step and logged as the mean over the logging window
  (trl_metrics.yaml `meta.aggregation`); `*_min`/`*_max` keys are window means of per-step extremes;
- `loss` is the mean of the step losses since the last log (transformers `_maybe_log_save_evaluate`);
- `grad_norm` and `learning_rate` are those of the last step of the window;
- `num_tokens` is a cumulative counter: its last value;
- GRPO-family trainers log None (JSON null) for a metric whose every value in the window was NaN
  (grpo_trainer.py `log`: `sum(valid) / len(valid) if valid else None`); other trainers average
  the NaN in;
- a key with no value in the whole window is left out of the row (KTO's `rewards/rejected` when
  no undesirable example was in the batches).

Evaluation rows (every `eval_every` steps) and the end-of-training summary come after the training
row of their step, as in real_trl_logs/*.jsonl.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import noise, schedules

MEAN, LAST, MIN, MAX = "mean", "last", "min", "max"
SUM = "sum"  # a count of events in the window (async trainers' *_total keys)
MEAN_4DP = "mean_4dp"  # a window mean the trainer rounds to 4 decimals itself (GOLD, online DPO)
HEAD_KEYS = ("loss", "grad_norm", "learning_rate")  # the Trainer's own: NaN stays NaN


@dataclass
class Sim:
    trainer: str
    max_steps: int
    logging_steps: int
    peak_lr: float
    warmup: int  # steps
    schedule: str
    seed: int
    steps_per_epoch: float
    eval_every: int | None = None
    null_for_nan: bool = False  # GRPO-family trainers log None for an all-NaN window
    loss_nan_filter: bool = True  # transformers' logging_nan_inf_filter (default True)
    samples_per_step: int = 32  # for the throughput keys of the summary and eval rows
    series: dict[str, np.ndarray] = field(default_factory=dict)
    reducers: dict[str, str] = field(default_factory=dict)
    absent: dict[str, np.ndarray] = field(default_factory=dict)  # True where a step logs no value
    eval_series: dict[str, np.ndarray] = field(default_factory=dict)  # `eval_` keys, read at eval steps
    lr: np.ndarray = field(init=False)
    progress: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.lr = schedules.learning_rates(self.max_steps, self.peak_lr, self.warmup, self.schedule)
        self._normalizer = float(self.lr.sum())
        self.progress = schedules.progress_of(self.lr, self._normalizer)

    # ------------------------------------------------------------ building

    @property
    def n(self) -> int:
        return self.max_steps

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, self.max_steps + 1)

    @property
    def warmup_end(self) -> int:
        """The first step at the peak learning rate (1 without a warm-up)."""
        return self.warmup + 1

    def set_lr(self, lr: np.ndarray) -> None:
        """A learning-rate schedule other than the configured one (a scheduler bug): progress follows it."""
        self.lr = lr
        self.progress = schedules.progress_of(lr, self._normalizer)

    def freeze_progress(self, from_step: int, scale: float = 0.0) -> None:
        """Learning stops (scale 0) or slows from `from_step` on, whatever the rate says."""
        i = from_step - 1
        step_gain = np.diff(self.progress, prepend=0.0)
        step_gain[i:] *= scale
        self.progress = np.cumsum(step_gain)

    def put(self, key: str, values: np.ndarray | float, reduce: str = MEAN) -> None:
        """A key's value at every step (its position in the rows is the order of the first `put`)."""
        array = np.broadcast_to(np.asarray(values, dtype=float), (self.n,)).copy()
        self.series[key] = array
        self.reducers[key] = reduce

    def put_eval(self, key: str, values: np.ndarray | float) -> None:
        self.eval_series[key] = np.broadcast_to(np.asarray(values, dtype=float), (self.n,)).copy()

    def hide(self, key: str, where: np.ndarray) -> None:
        """No value of `key` at the steps where `where` is True (the key is not appended there)."""
        previous = self.absent.get(key, np.zeros(self.n, dtype=bool))
        self.absent[key] = previous | where

    def at(self, step: int) -> slice:
        """The steps from `step` to the end, as a slice of a series."""
        return slice(step - 1, None)

    def noise(self, sigma: float | np.ndarray) -> np.ndarray:
        return noise.gauss(self.rng, self.n, sigma)

    # ------------------------------------------------------------ rows

    def train_steps(self) -> np.ndarray:
        return schedules.logged_steps(self.max_steps, self.logging_steps)

    def eval_steps(self) -> np.ndarray:
        if not self.eval_every:
            return np.array([], dtype=int)
        return np.arange(self.eval_every, self.max_steps + 1, self.eval_every)

    def rows(self) -> list[dict[str, float | None]]:
        """What `on_log` receives, with `step` first, in order."""
        steps = self.train_steps()
        columns = {key: self._reduced(key, steps) for key in self.series}
        train_steps = steps.tolist()
        out: list[dict[str, float | None]] = []
        for i, step in enumerate(train_steps):
            row: dict[str, float | None] = {"step": step}
            for key, (values, present) in columns.items():
                if present[i]:
                    row[key] = values[i]
            row["epoch"] = self.epoch(step)
            out.append(row)
        out.extend(self._eval_row(step) for step in self.eval_steps().tolist())
        out.sort(key=lambda row: int(row["step"] or 0))  # stable: a step's training row stays before its eval row
        out.append(self._summary_row())
        return out

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def _reduced(self, key: str, steps: np.ndarray) -> tuple[list[float | None], np.ndarray]:
        """The logged value of `key` in each window (previous logged step, step], and whether the
        row has the key at all (some step of the window appended a value)."""
        values = self.series[key]
        present = ~self.absent.get(key, np.zeros(self.n, dtype=bool))
        starts = np.concatenate(([0], steps[:-1]))
        count = np.add.reduceat(present.astype(int), starts)
        how = self.reducers[key]
        if how == LAST:
            last_present = np.maximum.accumulate(np.where(present, np.arange(self.n), -1))
            return values[np.maximum(last_present[steps - 1], 0)].tolist(), count > 0
        if key == "loss" and self.loss_nan_filter:
            return [self._filtered_loss(values[a:b][present[a:b]]) if c else None
                    for a, b, c in zip(starts, steps, count)], count > 0
        valid = present & ~np.isnan(values) if self.null_for_nan and key not in HEAD_KEYS else present
        n_valid = np.add.reduceat(valid.astype(int), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            if how == MIN:
                reduced = np.minimum.reduceat(np.where(valid, values, np.inf), starts)
            elif how == MAX:
                reduced = np.maximum.reduceat(np.where(valid, values, -np.inf), starts)
            else:
                total = np.add.reduceat(np.where(valid, values, 0.0), starts)
                reduced = total if how == SUM else total / n_valid
        if how == MEAN_4DP:
            reduced = np.round(reduced, 4)
        logged: list[float | None] = reduced.tolist()
        if self.null_for_nan:  # a window whose every value was NaN logs None
            logged = [None if n == 0 else v for v, n in zip(logged, n_valid.tolist())]
        return logged, count > 0

    @staticmethod
    def _filtered_loss(window: np.ndarray) -> float:
        """transformers' loss with logging_nan_inf_filter: a non-finite step loss adds the mean of the
        window so far instead (`tr_loss + tr_loss / (1 + global_step - _globalstep_last_logged)`), and
        tr_loss starts each window at 0: a window of NaN steps logs exactly 0.0."""
        if np.isfinite(window).all():
            return float(window.mean())
        total = 0.0
        for k, value in enumerate(window.tolist()):
            total += total / (1 + k) if not math.isfinite(value) else value
        return total / len(window)

    def _eval_row(self, step: int) -> dict[str, float | None]:
        """transformers' evaluate(): eval_loss, the timing keys, then the trainer's own metrics."""
        row: dict[str, float | None] = {"step": step}
        timing = self._eval_timing(step)
        items = list(self.eval_series.items())
        for key, values in items[:1]:
            row[key] = float(values[step - 1])
        row.update(timing)
        for key, values in items[1:]:
            row[key] = float(values[step - 1])
        row["epoch"] = self.epoch(step)
        return row

    def _eval_timing(self, step: int) -> dict[str, float]:
        runtime = 40.0 * (1.0 + 0.05 * math.sin(step))  # an eval pass of ~40 s; never read by a rule
        samples = 512
        return {"eval_runtime": runtime, "eval_samples_per_second": samples / runtime,
                "eval_steps_per_second": samples / 8 / runtime}

    def _summary_row(self) -> dict[str, float | None]:
        """The end-of-training call (real_trl_logs: train_runtime ... train_loss, epoch at the last step)."""
        seconds_per_step = 6.0 if "step_time" not in self.series else float(np.nanmean(self.series["step_time"]))
        runtime = seconds_per_step * self.max_steps
        loss = self.series.get("loss")
        return {"step": self.max_steps, "train_runtime": runtime,
                "train_samples_per_second": self.samples_per_step * self.max_steps / runtime,
                "train_steps_per_second": self.max_steps / runtime,
                "total_flos": 2.1e13 * self.samples_per_step * self.max_steps,
                "train_loss": float(np.nanmean(loss)) if loss is not None else 0.0,
                "epoch": self.epoch(self.max_steps)}
