"""Seeded noise for the simulated curves. Every function takes the run's numpy Generator, so a
run is the same whenever it is generated (tools/make_corpus.py --check depends on it)."""

from __future__ import annotations

import numpy as np


def gauss(rng: np.random.Generator, n: int, sigma: float | np.ndarray) -> np.ndarray:
    """Independent per-step noise: what one batch differs from the next."""
    return rng.normal(0.0, 1.0, n) * sigma


def wander(rng: np.random.Generator, n: int, sigma: float, memory: float = 0.98) -> np.ndarray:
    """Slow AR(1) drift of stationary standard deviation `sigma` (data order, curriculum effects):
    what makes a plateau wobble instead of sitting on a line."""
    shocks = rng.normal(0.0, sigma * np.sqrt(1.0 - memory ** 2), n)
    out = np.empty(n)
    level = rng.normal(0.0, sigma)
    for i in range(n):
        level = memory * level + shocks[i]
        out[i] = level
    return out


def lognormal(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Multiplicative noise with median 1 and a heavy right tail (gradient norms)."""
    return np.exp(rng.normal(0.0, sigma, n))


def honest_spikes(rng: np.random.Generator, n: int, rate: float, low: float = 3.0, high: float = 5.0,
                  after: int = 0) -> np.ndarray:
    """Multipliers of 1 except on a few steps (`rate` per step, none before `after`) of `low`..`high`:
    the isolated gradient spikes of a healthy run (an unlucky batch, a long sequence), which a
    spike rule must not confuse with divergence."""
    factor = np.ones(n)
    hit = rng.random(n) < rate
    hit[:after] = False
    factor[hit] = rng.uniform(low, high, int(hit.sum()))
    return factor


def binomial_fraction(rng: np.random.Generator, trials: int, p: np.ndarray) -> np.ndarray:
    """A per-step fraction measured on `trials` samples: quantised to 1/trials, like TRL's
    accuracies and ratios computed over one batch."""
    return rng.binomial(trials, np.clip(p, 0.0, 1.0)) / trials
