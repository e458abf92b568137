"""A simulated GRPO run with vLLM whose weights stop being synced, replayed through a callback
exactly as transformers' Trainer calls it.

The rows carry the keys TRL 1.16's GRPOTrainer logs with `use_vllm=True` and the default
importance-sampling correction, in the order it logs them (tests/data/real_trl_logs/grpo.jsonl
holds a real capture without vLLM; schemas/metric_catalog.yaml lists the `sampling/*` keys
and where they sit). Every 10 steps (TRL's default `logging_steps`), 800 steps in all. Until
step 400 the run is healthy: the importance-sampling ratio stays near 0.975, as in a reported
healthy run. Then vLLM stops receiving the new weights: the trainer's and vLLM's
log-probabilities drift apart, and the ratio's mean slides from ~1.0 to ~0.1 while its
minimum hits 0 (most sequences masked out of the loss).

    rows = simulated_rows()
    replay(rows, args, [callback], on_row=print_progress)

Deterministic (a seeded `random.Random`), stdlib only: what the demo shows is the same on
every machine.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

LOGGING_STEPS = 10
MAX_STEPS = 800
DESYNC_STEP = 400  # the last step at which vLLM still had the trainer's weights
STEPS_PER_EPOCH = 500
REWARD_FUNCS = ("correctness_reward", "format_reward")
IS_RATIO = "sampling/importance_sampling_ratio/mean"


def f32(x: float) -> float:
    """`x` rounded to float32 and back: logged values come from `tensor.item()` of float32 tensors."""
    return struct.unpack("f", struct.pack("f", x))[0]


def is_ratio_mean(step: int, noise: random.Random) -> float:
    """Healthy at ~0.975; after the desync it decays towards ~0.1 within about a hundred steps."""
    if step <= DESYNC_STEP:
        return 0.975 + noise.gauss(0, 0.002)
    return 0.1 + 0.875 * math.exp(-(step - DESYNC_STEP) / 30) + noise.gauss(0, 0.004)


def drift(step: int) -> float:
    """How far vLLM's weights are from the trainer's: 0 while synced, rising to 1 once they are stale."""
    return 0.0 if step <= DESYNC_STEP else 1 - math.exp(-(step - DESYNC_STEP) / 30)


def learning_rate(step: int, base: float = 1e-6, warmup: int = 80) -> float:
    """Linear warmup, then linear decay to 0: the Trainer's default scheduler with warmup."""
    if step < warmup:
        return base * step / warmup
    return base * (MAX_STEPS - step) / (MAX_STEPS - warmup)


def training_row(step: int, noise: random.Random, tokens_so_far: float) -> dict[str, float]:
    """One training log row of GRPOTrainer (TRL 1.16, vLLM on, beta=0 so no `kl`), keys in its order."""
    gap = drift(step)
    progress = step / MAX_STEPS
    length = 330 + 40 * progress + noise.gauss(0, 8)
    correctness = min(0.95, 0.25 + 0.35 * progress + noise.gauss(0, 0.02))
    fmt = min(0.99, 0.57 + 0.45 * progress + noise.gauss(0, 0.01))
    row = {
        "loss": 0.007 + noise.gauss(0, 0.002),
        "grad_norm": 0.3 * (1 - 0.5 * progress) + abs(noise.gauss(0, 0.03)),
        "learning_rate": learning_rate(step),
        "num_tokens": tokens_so_far,
        "completions/mean_length": length,
        "completions/min_length": 40 + noise.gauss(0, 3),
        "completions/max_length": 1024.0,
        "completions/clipped_ratio": 0.07 + noise.gauss(0, 0.005),
        "completions/mean_terminated_length": length - 50,
        "completions/min_terminated_length": 40 + noise.gauss(0, 3),
        "completions/max_terminated_length": 900 + noise.gauss(0, 30),
        f"rewards/{REWARD_FUNCS[0]}/mean": correctness,
        f"rewards/{REWARD_FUNCS[0]}/std": math.sqrt(correctness * (1 - correctness)),
        f"rewards/{REWARD_FUNCS[1]}/mean": fmt,
        f"rewards/{REWARD_FUNCS[1]}/std": math.sqrt(fmt * (1 - fmt)),
        "reward": correctness + fmt,
        "reward_std": 0.65 - 0.1 * progress + noise.gauss(0, 0.01),
        "frac_reward_zero_std": 0.31 + noise.gauss(0, 0.01),
        "sampling/sampling_logp_difference/mean": 0.014 + 0.3 * gap + noise.gauss(0, 0.0005),
        "sampling/sampling_logp_difference/max": 0.99 + 6.2 * gap + abs(noise.gauss(0, 0.05)),
        "sampling/importance_sampling_ratio/min": max(0.0, 0.43 * (1 - 3 * gap) + noise.gauss(0, 0.01)),
        IS_RATIO: is_ratio_mean(step, noise),
        "sampling/importance_sampling_ratio/max": 1.99 + 0.5 * gap + abs(noise.gauss(0, 0.02)),
        "entropy": 0.62 - 0.15 * progress + noise.gauss(0, 0.005),
        "clip_ratio/low_mean": 0.00015 + abs(noise.gauss(0, 0.00002)),
        "clip_ratio/high_mean": 0.00025 + abs(noise.gauss(0, 0.00003)),
        "clip_ratio/region_mean": 0.0004 + abs(noise.gauss(0, 0.00004)),
        "clip_ratio/low_min": 0.0,
        "clip_ratio/high_max": 0.0017 + abs(noise.gauss(0, 0.0002)),
        "step_time": 36 + noise.gauss(0, 1.5),
    }
    rounded = {key: f32(value) for key, value in row.items()}
    rounded["learning_rate"] = row["learning_rate"]  # the scheduler's float, not a tensor
    rounded["epoch"] = round(step / STEPS_PER_EPOCH, 4)
    return rounded


def simulated_rows(seed: int = 7) -> list[tuple[int, dict[str, float]]]:
    """(global_step, logs) of each `on_log` call: every training row, then the end-of-training summary."""
    noise = random.Random(seed)
    rows = []
    tokens = 0.0
    for step in range(LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS):
        tokens += 8 * 8 * LOGGING_STEPS * 520  # prompts x generations x steps x tokens per completion
        rows.append((step, training_row(step, noise, tokens)))
    summary = {"train_runtime": 29117.4, "train_samples_per_second": 0.22, "train_steps_per_second": 0.027,
               "total_flos": 0.0, "train_loss": 0.0071, "epoch": MAX_STEPS / STEPS_PER_EPOCH}
    rows.append((MAX_STEPS, summary))
    return rows


def replay(rows: Sequence[tuple[int, dict[str, float]]], args: Any, callbacks: Iterable[Any],
           on_row: Callable[[int, dict[str, float]], None] | None = None) -> Any:
    """Call the callbacks' hooks in the Trainer's order with a real TrainerState and TrainerControl.

    As `Trainer.train()` does: `on_train_begin`, then for each logged row the state's
    `global_step` set, the row appended to `state.log_history` and `on_log` called with a
    copy (the Trainer's printer deletes keys from the dict it gets), stopping early when a
    callback sets `control.should_training_stop`; then `on_train_end`. Returns the state.
    """
    from transformers import TrainerControl, TrainerState

    callbacks = list(callbacks)
    state = TrainerState(max_steps=MAX_STEPS, logging_steps=LOGGING_STEPS)
    control = TrainerControl()
    for callback in callbacks:
        callback.on_train_begin(args, state, control)
    for step, logs in rows:
        state.global_step = step
        state.epoch = logs.get("epoch")
        state.log_history.append({**logs, "step": step})
        if on_row is not None:
            on_row(step, logs)
        shared = dict(logs)  # one dict for every callback, as the Trainer passes it
        for callback in callbacks:
            callback.on_log(args, state, control, logs=shared)
        if control.should_training_stop:
            break
    for callback in callbacks:
        callback.on_train_end(args, state, control)
    return state
