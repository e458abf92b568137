"""The accounting keys of the asynchronous trainers (async_grpo, async_distillation): perf/*, batch/*,
sample/* and rollout/*, renamed to these in TRL 1.11.0 (inventory.md, async_grpo section).

Their window reduction follows the key's last word (async_grpo_trainer.py `_reduce_metric`): `max`
and `min` are window extremes, `total` counts are summed, everything else is a window mean. The
magnitudes are those of an 8-GPU run of a 7B model with 2k-token completions [heuristic]: ~11 s
per optimizer step, ~140k forwarded tokens per step, weight syncs of ~3 s.
"""

from __future__ import annotations

import numpy as np

from . import noise
from .curves import step_times
from .sim import MAX, Sim


def _jitter(sim: Sim, level: float | np.ndarray, sigma: float = 0.08) -> np.ndarray:
    return level * noise.lognormal(sim.rng, sim.n, sigma)


def put_sample_keys(sim: Sim, staleness: np.ndarray, queue_time: np.ndarray, completion_tokens: np.ndarray,
                    max_staleness: int, tree_packing: bool) -> None:
    """What the trainer's rollout dataset records as it consumes samples: their size, how long they
    waited and how many policy versions old they are."""
    prompt_tokens = 650.0
    sim.put("batch/masked_token_frac", prompt_tokens / (prompt_tokens + completion_tokens))
    sim.put("batch/samples_per_row", _jitter(sim, 8.0, 0.05))
    sim.put("batch/row_tokens_mean", _jitter(sim, 8.0 * (prompt_tokens + completion_tokens), 0.05))
    sim.put("batch/row_tokens_max", _jitter(sim, 9.5 * (prompt_tokens + completion_tokens), 0.05), MAX)
    sim.put("batch/row_imbalance", 1.0 + np.abs(sim.noise(0.08)))
    sim.put("batch/pad_frac", np.clip(0.04 + sim.noise(0.01), 0.0, 1.0))
    if tree_packing:  # async_grpo only
        sim.put("batch/packing_ratio", np.clip(0.97 + sim.noise(0.01), 0.0, 1.0))
    sim.put("sample/forwarded_tokens_mean", prompt_tokens + completion_tokens)
    sim.put("sample/forwarded_tokens_max", _jitter(sim, 2.6 * (prompt_tokens + completion_tokens), 0.1), MAX)
    sim.put("sample/trained_tokens_mean", completion_tokens)
    sim.put("sample/rollout_queue_size", np.round(np.clip(20 + sim.noise(4.0), 0, None)))
    sim.put("sample/time_in_queue_s", queue_time)
    sim.put("sample/staleness_mean", staleness)
    sim.put("sample/staleness_max", np.minimum(np.ceil(staleness + 1), max_staleness), MAX)


def put_step_keys(sim: Sim, completion_tokens: np.ndarray, groups: bool) -> None:
    """What the trainer records at the end of each optimizer step (`_log_step_metrics`) and at each
    weight sync (every step with the default weight_sync_steps=1)."""
    fwd_bwd = step_times(sim, 7.5)
    step = fwd_bwd + step_times(sim, 3.4, 0.2)
    samples = 64.0
    forwarded = samples * (650.0 + completion_tokens)
    sim.put("perf/fwd_bwd_s", fwd_bwd)
    sim.put("perf/fwd_s", fwd_bwd / 3.0)
    sim.put("perf/optimizer_s", _jitter(sim, 0.4))
    sim.put("batch/microbatches_per_step", np.full(sim.n, 8.0))
    sim.put("batch/forwarded_tokens_per_step", forwarded)
    sim.put("batch/trained_tokens_per_step", samples * completion_tokens)
    sim.put("batch/samples_per_step", np.full(sim.n, samples))
    sim.put("perf/step_s", step)
    sim.hide("perf/step_s", sim.steps == 1)  # measured between step ends: not on the first step
    sim.put("perf/rollout_wait_s", 0.6 * noise.lognormal(sim.rng, sim.n, 0.8))
    if groups:
        sim.put("batch/groups_per_step", np.full(sim.n, 8.0))
    sim.put("perf/forwarded_tok_s_fwd_bwd", forwarded / fwd_bwd)
    sim.put("perf/forwarded_tok_s_wall_clock", forwarded / step)
    sim.put("perf/trained_tok_s_wall_clock", samples * completion_tokens / step)
    for key in ("perf/forwarded_tok_s_wall_clock", "perf/trained_tok_s_wall_clock"):
        sim.hide(key, sim.steps == 1)
    sync = step_times(sim, 3.1, 0.1)
    sim.put("perf/weight_sync_s", sync)
    sim.put("perf/weight_sync_pause_s", 0.1 * sync)
    sim.put("perf/weight_sync_barrier_s", 0.05 * sync)
    sim.put("perf/weight_sync_transfer_s", 0.85 * sync)


def put_rollout_keys(sim: Sim, lengths: dict[str, np.ndarray], scoring_seconds: float, grpo: bool) -> None:
    """What the rollout worker pushes (drained into the row at log time): generation throughput,
    scoring time and the completion lengths (window min/max, not means of extremes)."""
    sim.put("rollout/inflight", np.round(np.clip(60 + sim.noise(6.0), 0, None)))
    sim.put("rollout/generated_tok_s", _jitter(sim, 5200.0))
    sim.put("rollout/score_s", _jitter(sim, scoring_seconds, 0.2))
    sim.put("rollout/duration_s", _jitter(sim, 24.0, 0.15))
    if grpo:
        sim.put("rollout/score_wait_s", 0.05 * noise.lognormal(sim.rng, sim.n, 0.5))
        sim.put("rollout/score_queue_size", np.round(np.clip(2 + sim.noise(1.0), 0, None)))
        sim.put("rollout/samples_per_rollout", np.ones(sim.n))
        sim.put("rollout/turns_mean", np.ones(sim.n))
        sim.put("rollout/turns_max", np.ones(sim.n), MAX)
        sim.put("rollout/drift_tokens_max", np.zeros(sim.n), MAX)  # 0 for single-turn rollouts
    sim.put("completions/mean_length", lengths["completions/mean_length"])
    sim.put("completions/min_length", lengths["completions/min_length"], "min")
    sim.put("completions/max_length", lengths["completions/max_length"], MAX)
    sim.put("completions/clipped_ratio", lengths["completions/clipped_ratio"])
