"""Healthy models of the supervised trainers: SFT, and the token-level distillation trainers that
log no completion statistics of their own (GKD, GOLD).

Magnitudes: real_trl_logs/sft.jsonl gives the keys and their order (loss, grad_norm,
learning_rate, entropy, mean_token_accuracy, num_tokens, epoch); its values come from a random
31k-parameter model (loss 5.96 = ln 384). The levels below are those of instruction tuning a
1-8B model [heuristic: loss ~1.8 falling to ~1.0, token accuracy ~0.6 rising to ~0.75].

`knobs` (a dict) carries what a failure changes in the model before it is built; see failures.py.
"""

from __future__ import annotations

import numpy as np

from . import noise
from .curves import approach, grad_norms, put_common_head, token_counter
from .sim import MEAN_4DP, Sim


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average (edges shrink the window): an evaluation pass averages over many
    batches, so eval curves are the smooth version of the training ones."""
    kernel = np.ones(window)
    total = np.convolve(values, kernel, mode="same")
    count = np.convolve(np.ones_like(values), kernel, mode="same")
    return total / count


def eval_shift(sim: Sim, knobs: dict) -> np.ndarray:
    """What a failure adds to the eval loss (overfitting), 0 in a healthy run."""
    shift = knobs.get("eval_shift_fn")
    return shift(sim) if shift is not None else np.zeros(sim.n)


def epoch_index(sim: Sim) -> np.ndarray:
    """The 0-based epoch each step is in."""
    return np.floor((sim.steps - 1) / sim.steps_per_epoch)


def sft_loss_curve(sim: Sim, start: float, floor: float, knobs: dict) -> np.ndarray:
    """The loss of the data the model is fed, without batch noise.

    From the second epoch on the training loss drops sharply at each epoch boundary (the batches
    are ones the model has seen: memorisation), while the eval loss does not: a benign staircase
    that a "sudden loss drop" rule must not flag."""
    curve = approach(sim.progress, start, floor, knobs.get("loss_rate", 3.0))
    return curve - knobs.get("epoch_drop", 0.12) * epoch_index(sim)


def sft(sim: Sim, cfg: dict, knobs: dict) -> None:
    start, floor = knobs.get("loss_start", 1.85), knobs.get("loss_floor", 1.05)
    clean = sft_loss_curve(sim, start, floor, knobs)
    loss = clean * (1.0 + noise.gauss(sim.rng, sim.n, 0.05)) + noise.wander(sim.rng, sim.n, 0.015)
    put_common_head(sim, loss, grad_norms(sim, knobs.get("grad_start", 2.2), knobs.get("grad_end", 0.75)))
    # per-token entropy of the predictive distribution follows the loss; real_trl_logs/sft.jsonl logs it
    # right after learning_rate
    sim.put("entropy", 0.85 * clean + 0.22 + sim.noise(0.02))
    sim.put("mean_token_accuracy", np.clip(0.925 - 0.175 * clean + sim.noise(0.008), 0.0, 1.0))
    sim.put("num_tokens", token_counter(sim, knobs.get("tokens_per_step", 65_000)), "last")
    if sim.eval_every:
        eval_clean = approach(sim.progress, start, floor, knobs.get("loss_rate", 3.0)) + 0.04
        eval_loss = eval_clean + eval_shift(sim, knobs) + sim.noise(0.004)
        sim.put_eval("eval_loss", eval_loss)
        sim.put_eval("eval_entropy", 0.85 * eval_clean + 0.22)
        sim.put_eval("eval_mean_token_accuracy", 0.925 - 0.175 * eval_loss)
        sim.put_eval("eval_num_tokens", sim.series["num_tokens"])


def gkd(sim: Sim, cfg: dict, knobs: dict) -> None:
    """GKD logs only the Trainer's keys (gkd_trainer.py overrides compute_loss and appends no metric).
    Its loss is the generalized JSD between student and teacher per token (beta 0.5), which is
    bounded by ln 2 [derived]; it starts near 0.3 for a student of the teacher's family [heuristic]."""
    clean = approach(sim.progress, knobs.get("loss_start", 0.32), knobs.get("loss_floor", 0.11), 3.0)
    loss = clean * (1.0 + noise.gauss(sim.rng, sim.n, 0.06))
    put_common_head(sim, loss, grad_norms(sim, 1.4, 0.45))
    if sim.eval_every:
        sim.put_eval("eval_loss", smooth(clean, 25) + 0.01)


def gold(sim: Sim, cfg: dict, knobs: dict) -> None:
    """GOLD logs, besides the Trainer's keys, `on_policy_loss` and `off_policy_loss`: the mean loss of
    the steps of each kind since the last log, rounded to 4 decimals (gold_trainer.py `log`). Each
    step is on-policy with probability lmbda (0.5), so with logging_steps=1 a row holds one of the
    two, never both."""
    clean = approach(sim.progress, 0.42, 0.16, 3.0)
    on_policy = sim.rng.random(sim.n) < cfg.get("lmbda", 0.5)
    on_loss = clean * 1.08 * (1.0 + noise.gauss(sim.rng, sim.n, 0.07))
    off_loss = clean * 0.92 * (1.0 + noise.gauss(sim.rng, sim.n, 0.07))
    loss = np.where(on_policy, on_loss, off_loss)
    put_common_head(sim, loss, grad_norms(sim, 1.6, 0.5))
    sim.put("on_policy_loss", on_loss, MEAN_4DP)
    sim.hide("on_policy_loss", ~on_policy)
    sim.put("off_policy_loss", off_loss, MEAN_4DP)
    sim.hide("off_policy_loss", on_policy)
