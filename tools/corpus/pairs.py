"""Preference pairs, sampled per step: the implicit-reward margin of each pair in the batch.

The offline preference trainers (DPO, TPO, CPO, ORPO, reward models, online DPO) log batch means
of per-pair quantities. Sampling the pairs and computing the loss, the accuracy and the mean
margin from the same sample keeps the logged keys consistent with each other: accuracy is the
fraction of pairs with a margin > 0 (strict, so a batch of zero margins scores 0.0, not 0.5:
trl_failure_modes.md D6), quantised to 1/batch as on a real batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sim import Sim


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid_loss(margins: np.ndarray) -> np.ndarray:
    """DPO's default loss (and the reward model's): -log sigmoid(margin); ln 2 at margin 0."""
    return softplus(-margins)


def ipo_loss(beta: float):
    """IPO: (margin/beta - 1/(2 beta))^2, 1/(4 beta^2) = 25 at margin 0 with beta 0.1
    (trl_failure_modes.md D1, [derived])."""
    def loss(margins: np.ndarray) -> np.ndarray:
        return (margins / beta - 1.0 / (2.0 * beta)) ** 2
    return loss


@dataclass
class PairStats:
    """Per-step batch means of a sampled batch of pairs."""

    margins: np.ndarray  # mean implicit-reward margin (chosen - rejected)
    accuracy: np.ndarray  # fraction of pairs with margin > 0
    loss: np.ndarray  # mean preference loss
    chosen: np.ndarray  # mean implicit reward of the chosen completions
    rejected: np.ndarray


def sample(sim: Sim, batch: int, center: np.ndarray, spread: np.ndarray, chosen_share: np.ndarray,
           chosen_shift: np.ndarray, loss_fn=sigmoid_loss) -> PairStats:
    """`batch` pairs per step with margins ~ N(center, spread); the chosen reward of a pair is
    `chosen_share` of its margin plus `chosen_shift` (where both likelihoods drift together)."""
    z = sim.rng.normal(0.0, 1.0, (sim.n, batch))
    margins = center[:, None] + spread[:, None] * z
    noise = sim.rng.normal(0.0, 1.0, (sim.n, batch)) * (0.3 * spread[:, None])
    chosen = chosen_share[:, None] * margins + chosen_shift[:, None] + noise
    rejected = chosen - margins
    return PairStats(margins=margins.mean(axis=1), accuracy=(margins > 0).mean(axis=1),
                     loss=loss_fn(margins).mean(axis=1), chosen=chosen.mean(axis=1), rejected=rejected.mean(axis=1))
