"""The time axis of a simulated run: learning rates, logged steps, epochs and learning progress.

Step numbers are optimizer steps 1..max_steps (the Trainer's `state.global_step`). Arrays
indexed by step hold the value of step s at index s - 1.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")


def warmup_steps_of(warmup: float, max_steps: int) -> int:
    """The warm-up length in steps. transformers 5 takes `warmup_steps` < 1 as a ratio of the run
    (warmup_ratio was folded into it: huggingface/transformers#41326) and rounds it up."""
    if 0 < warmup < 1:
        return math.ceil(warmup * max_steps)
    return int(warmup)


def learning_rates(max_steps: int, peak: float, warmup: int, kind: str) -> np.ndarray:
    """The learning rate each step used, as transformers logs it.

    The scheduler's lambda is read at k = s - 1 for step s (LambdaLR applies lambda(0) when it is
    built, and steps after the optimizer): real_trl_logs/sft.jsonl, linear decay over 5 steps
    from 1e-3, logs 0.001 at step 1 and 0.0008 at step 2. With a warm-up the first step's rate
    is therefore exactly 0.0. The formulas are transformers' get_{linear,cosine}_schedule_with_warmup.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}")
    k = np.arange(max_steps, dtype=float)
    factor = np.ones(max_steps)
    if kind != "constant" and warmup > 0:
        factor = np.where(k < warmup, k / warmup, 1.0)
    after = k >= warmup
    decay_span = max(1, max_steps - warmup)
    if kind == "linear":
        factor[after] = np.maximum(0.0, (max_steps - k[after]) / decay_span)
    elif kind == "cosine":
        done = (k[after] - warmup) / decay_span
        factor[after] = np.maximum(0.0, 0.5 * (1.0 + np.cos(math.pi * done)))
    return peak * factor


def logged_steps(max_steps: int, every: int) -> np.ndarray:
    """The steps with a training row: the Trainer logs when global_step % logging_steps == 0
    (logging_first_step is False by default)."""
    return np.arange(every, max_steps + 1, every)


def progress_of(lr: np.ndarray, normalizer: float) -> np.ndarray:
    """How far learning had come when each step's metrics were measured, in [0, 1) for the healthy
    schedule. A step's metrics come from its forward pass, before its own update: step 1 sees the
    initial weights (DPO's policy equals its reference there: real_trl_logs/dpo.jsonl step 1 has
    loss 0.6931 and every reward 0.0).

    Parameters move in proportion to the learning rate, so progress is the cumulative learning
    rate over that of the healthy schedule. A warm-up keeps the curves flat at first (DPO's loss
    stays near ln 2 while the rate is tiny), and a rate that drops to 0 freezes them.
    """
    return np.concatenate(([0.0], np.cumsum(lr)[:-1])) / normalizer
