"""Groups of sampled completions, per step: what GRPO-style trainers score and log.

Each step draws `prompts` fresh prompts of random difficulty and `generations` completions of each.
A reward function scores a completion 0/1 (binary: correctness, format) or on a continuous scale;
the chance of success is sigmoid(skill + ease - difficulty), and skill grows with learning. From
that sample come the logged keys, computed as grpo_trainer.py does: `rewards/<f>/mean|std` over
the batch, `reward`/`reward_std` of the weighted sum, and `frac_reward_zero_std`, the fraction of
groups whose rewards are all equal (no advantage, no gradient). Completion lengths are lognormal
and cut at `max_completion_length`, which gives `completions/clipped_ratio` and the terminated
lengths (0 when nothing terminated: trl_failure_modes.md G2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .sim import Sim


@dataclass(frozen=True)
class RewardFunc:
    name: str
    binary: bool = True
    ease: float = 0.0  # added to the logit of success: a format reward is easier than correctness
    weight: float = 1.0
    dead_from: int | None = None  # from this step the function returns one constant (a failure)


@dataclass
class GroupSpec:
    prompts: int
    generations: int
    funcs: tuple[RewardFunc, ...]
    skill: np.ndarray  # logit of success on an average prompt, per step
    difficulty_sd: float
    length_mean: np.ndarray  # tokens, per step
    max_len: int
    length_sd: float = 0.45  # lognormal sigma of one completion's length
    identical: np.ndarray | None = None  # per step, the chance that a group's completions are all the same
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class GroupStats:
    func_mean: dict[str, np.ndarray]
    func_std: dict[str, np.ndarray]
    reward: np.ndarray
    reward_std: np.ndarray
    frac_zero_std: np.ndarray
    group_std: np.ndarray  # mean over groups of the (population) std of a group's rewards
    frac_solved: np.ndarray  # groups with at least one completion scoring the full weight (SDPO's success)
    lengths: dict[str, np.ndarray]  # mean_length, min_length, ... as GRPO names them


def simulate(sim: Sim, spec: GroupSpec) -> GroupStats:
    n, p, g = sim.n, spec.prompts, spec.generations
    rng = sim.rng
    difficulty = rng.normal(0.0, spec.difficulty_sd, (n, p, 1))
    same = np.zeros((n, p, 1), dtype=bool)
    if spec.identical is not None:  # a collapsed policy answers a prompt one way
        same = rng.random((n, p, 1)) < spec.identical[:, None, None]
    total = np.zeros((n, p, g))
    func_mean, func_std = {}, {}
    for func in spec.funcs:
        chance = 1.0 / (1.0 + np.exp(-(spec.skill[:, None, None] + func.ease - difficulty)))
        draws = rng.random((n, p, g))
        draws = np.where(same, draws[:, :, :1], draws)
        if func.binary:
            scores = (draws < chance).astype(float)
        else:
            scores = np.clip(chance + 0.25 * (draws - 0.5), 0.0, 1.0)
        if func.dead_from is not None:
            scores[func.dead_from - 1:] = 0.0
        func_mean[func.name] = scores.mean(axis=(1, 2))
        func_std[func.name] = scores.reshape(n, -1).std(axis=1, ddof=1)
        total += func.weight * scores
    flat = total.reshape(n, -1)
    group_std = total.std(axis=2)
    full = sum(func.weight for func in spec.funcs)
    return GroupStats(func_mean=func_mean, func_std=func_std, reward=flat.mean(axis=1),
                      reward_std=flat.std(axis=1, ddof=1), frac_zero_std=(group_std < 1e-8).mean(axis=1),
                      group_std=group_std.mean(axis=1), frac_solved=(total >= full - 1e-9).any(axis=2).mean(axis=1),
                      lengths=_lengths(sim, spec, same))


def _lengths(sim: Sim, spec: GroupSpec, same: np.ndarray) -> dict[str, np.ndarray]:
    n, p, g = sim.n, spec.prompts, spec.generations
    z = sim.rng.normal(0.0, 1.0, (n, p, g))
    z = np.where(same, z[:, :, :1], z)
    raw = np.exp(np.log(spec.length_mean)[:, None, None] + spec.length_sd * z)
    lengths = np.clip(np.round(raw), 1, spec.max_len).reshape(n, -1)
    clipped = lengths >= spec.max_len
    ended = np.where(clipped, np.nan, lengths)
    some_ended = (~clipped).any(axis=1)
    with warnings.catch_warnings():  # a step where nothing terminated: nanmean of nothing, set to 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        term_mean = np.where(some_ended, np.nanmean(ended, axis=1), 0.0)
        term_min = np.where(some_ended, np.nanmin(ended, axis=1), 0.0)
        term_max = np.where(some_ended, np.nanmax(ended, axis=1), 0.0)
    return {"completions/mean_length": lengths.mean(axis=1), "completions/min_length": lengths.min(axis=1),
            "completions/max_length": lengths.max(axis=1), "completions/clipped_ratio": clipped.mean(axis=1),
            "completions/mean_terminated_length": term_mean, "completions/min_terminated_length": term_min,
            "completions/max_terminated_length": term_max}
