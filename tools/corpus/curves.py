"""Shapes shared by the trainer models: curves that move with learning progress, gradient norms,
token counters and step timings."""

from __future__ import annotations

import numpy as np

from . import noise
from .sim import LAST, Sim


def approach(progress: np.ndarray, start: float, end: float, rate: float) -> np.ndarray:
    """From `start` towards `end`, exponentially in learning progress: falls fast, then plateaus."""
    return end + (start - end) * np.exp(-rate * progress)


def grad_norms(sim: Sim, start: float, end: float, rate: float = 4.0, sigma: float = 0.25,
               spike_rate: float = 0.004) -> np.ndarray:
    """Pre-clip gradient norms: a level falling from `start` to `end` with learning, lognormal batch
    noise (heavy right tail) and honest 3-5x spikes on a few steps (none in the first 20)."""
    level = approach(sim.progress, start, end, rate)
    return level * noise.lognormal(sim.rng, sim.n, sigma) * noise.honest_spikes(sim.rng, sim.n, spike_rate, after=20)


def put_common_head(sim: Sim, loss: np.ndarray, grad: np.ndarray) -> None:
    """The Trainer's own keys, which open every training row: loss, grad_norm, learning_rate."""
    sim.put("loss", loss)
    sim.put("grad_norm", grad, LAST)
    sim.put("learning_rate", sim.lr, LAST)


def token_counter(sim: Sim, per_step: float, spread: float = 0.08) -> np.ndarray:
    """TRL's `num_tokens`: input tokens seen so far (a cumulative count, logged as its last value)."""
    tokens = np.round(per_step * (1.0 + noise.gauss(sim.rng, sim.n, spread)))
    return np.cumsum(np.maximum(tokens, 1.0))


def step_times(sim: Sim, seconds: float, spread: float = 0.06) -> np.ndarray:
    """Wall time of each step (GRPO's `step_time`): steady with a little jitter."""
    return seconds * noise.lognormal(sim.rng, sim.n, spread)
