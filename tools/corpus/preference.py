"""Healthy models of the preference trainers: dpo, tpo, cpo, orpo, kto, reward, online_dpo.

Magnitudes and facts:
- real_trl_logs/dpo.jsonl: at step 1 the policy is the reference, so loss is ln 2 = 0.6931 and
  rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies are exactly 0.0 (the
  accuracy counts margins > 0 strictly); logps are per-sequence sums.
- real_trl_logs/kto.jsonl: KTO's loss starts at exactly 0.5 and its `kl` at 0.0 (1 - sigmoid(0) for
  both halves: trl_failure_modes.md K1).
- real_trl_logs/reward.jsonl: the reward model's loss starts near ln 2 (0.6928: a random score head).
- real_trl_logs/orpo.jsonl, cpo.jsonl: loss = nll_loss + the preference term; ORPO's logps are
  per-token means and its log_odds_ratio starts near -ln 2.
- examples/runs/dpo_healthy (a 1200-step DPO): logps/chosen ~ -253, logps/rejected ~ -282,
  logits ~ -0.9, entropy ~1.42, mean_token_accuracy ~0.61, ~14k tokens per step, grad_norm 6-10.
- Margins of a healthy DPO run at beta 0.1 reach 1-2 and accuracies 0.8-0.9 [heuristic]; on noisy
  preference data accuracy plateaus at 0.6-0.65 (about a third of the labels disagree with the
  model's eventual preference) [heuristic].

`knobs` hooks (used by failures.py) reshape the margin centre, the target accuracy and the
chosen-reward drift after the healthy curves are computed.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from . import noise, pairs
from .curves import approach, grad_norms, put_common_head, token_counter
from .sim import LAST, MEAN_4DP, Sim
from .supervised import eval_shift, smooth

LN2 = math.log(2.0)


def _hook(knobs: dict, name: str, sim: Sim, values: np.ndarray) -> np.ndarray:
    hook = knobs.get(name)
    return hook(sim, values) if hook is not None else values


def preference_curves(sim: Sim, knobs: dict, margin_max: float, accuracy_max: float, margin_rate: float = 2.5,
                      spread_rate: float = 1.4, spread_start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The mean margin of a batch and the spread of the pairs' margins around it, both 0 at
    policy = reference (plus `spread_start`: a reward model's random score head).

    The spread grows `spread_rate` times as fast as the margin towards margin_max / z(accuracy_max),
    so the accuracy Phi(margin / spread) jumps early (most pairs move the right way by a hair:
    examples/runs/dpo_healthy has accuracy 0.79 with margins of 0.08 at step 20) and then settles
    at accuracy_max. Failures reshape the centre (`center` hook) and the accuracy (`accuracy` hook:
    the spread then follows from it)."""
    grown = 1.0 - np.exp(-margin_rate * sim.progress)
    # the margin builds slowly at first (a slow warm-up at a small learning rate leaves the loss at
    # ~ln 2 for ~100 steps): `margin_delay` is the progress by which it has taken off
    delay = 1.0 - np.exp(-(sim.progress / knobs.get("margin_delay", 0.05)) ** 4)
    center = margin_max * grown * delay
    spread_max = margin_max / NormalDist().inv_cdf(accuracy_max)
    spread = spread_max * (1.0 - np.exp(-spread_rate * margin_rate * sim.progress)) * delay + spread_start
    hooked = _hook(knobs, "center", sim, center)
    if "accuracy" in knobs:
        healthy_accuracy = np.vectorize(NormalDist().cdf)(np.divide(center, np.maximum(spread, 1e-12)))
        spread = spread_for(hooked, _hook(knobs, "accuracy", sim, healthy_accuracy))
    if "spread_floor" in knobs:  # margins that stay small but never exactly 0 once the policy has moved
        spread = np.where(sim.steps > 1, np.maximum(spread, knobs["spread_floor"]), spread)
    return hooked, spread


def spread_for(center: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """The spread of normal margins centred on `center` that gives `accuracy` (below chance too:
    a negative centre)."""
    z = np.vectorize(NormalDist().inv_cdf)(np.clip(accuracy, 0.02, 0.98))
    return np.abs(center) / np.maximum(np.abs(z), 0.05)


def dpo_pairs(sim: Sim, cfg: dict, knobs: dict, batch: int = 32) -> pairs.PairStats:
    beta = cfg.get("beta", 0.1)
    loss_type = cfg.get("loss_type", ["sigmoid"])[0]
    center, spread = preference_curves(sim, knobs, knobs.get("margin_max", 1.6), knobs.get("accuracy_max", 0.88))
    # both implicit rewards drift down slowly as training goes on (chosen less than rejected): mild
    # in a healthy run, the whole story in likelihood displacement (trl_failure_modes.md D3)
    shift = _hook(knobs, "chosen_shift", sim, -0.25 * center * sim.progress)
    loss_fn = pairs.ipo_loss(beta) if loss_type == "ipo" else pairs.sigmoid_loss
    return pairs.sample(sim, batch, center, spread, np.full(sim.n, 0.3), shift, loss_fn)


def put_logps(sim: Sim, stats: pairs.PairStats, beta: float, chosen_level: float, gap: float) -> None:
    """logps/* are per-sequence sums: the reference's log-likelihood of the batch (which varies a lot
    from batch to batch) plus the implicit reward over beta."""
    reference = chosen_level + noise.gauss(sim.rng, sim.n, 22.0)
    sim.put("logps/chosen", reference + stats.chosen / beta)
    sim.put("logps/rejected", reference - gap + noise.gauss(sim.rng, sim.n, 9.0) + stats.rejected / beta)


def put_rewards(sim: Sim, stats: pairs.PairStats, order: tuple[str, ...]) -> None:
    values = {"rewards/chosen": stats.chosen, "rewards/rejected": stats.rejected,
              "rewards/accuracies": stats.accuracy, "rewards/margins": stats.margins}
    for key in order:
        sim.put(key, values[key])


DPO_REWARD_ORDER = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def dpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """Key order of real_trl_logs/dpo.jsonl."""
    beta = cfg.get("beta", 0.1)
    stats = dpo_pairs(sim, cfg, knobs)
    grad = grad_norms(sim, knobs.get("grad_start", 9.0), knobs.get("grad_end", 4.0), rate=2.5)
    if knobs.get("grad_follows_loss"):  # sigmoid(-margin) weights the gradient: it fades as the loss goes to 0
        grad = grad * np.clip(stats.loss / 0.3, 0.03, 1.0)
    put_common_head(sim, stats.loss, grad)
    sim.put("entropy", 1.42 - 0.05 * sim.progress + sim.noise(0.01))
    sim.put("num_tokens", token_counter(sim, 14_000), LAST)
    sim.put("logits/chosen", -0.93 + 0.02 * sim.progress + sim.noise(0.02))
    sim.put("logits/rejected", -0.88 + sim.noise(0.02))
    sim.put("mean_token_accuracy", 0.613 + 0.01 * sim.progress + sim.noise(0.005))
    put_rewards(sim, stats, DPO_REWARD_ORDER)
    put_logps(sim, stats, beta, -255.0, 28.0)
    if sim.eval_every:
        _preference_eval(sim, knobs)


def _preference_eval(sim: Sim, knobs: dict) -> None:
    """eval_ keys: the training curves averaged over a held-out set (smoothed), plus what a
    failure shifts (overfitting: `eval_loss_shift`, `eval_accuracy_shift`)."""
    loss_shift = eval_shift(sim, knobs)
    accuracy_shift = -0.5 * loss_shift
    sim.put_eval("eval_loss", smooth(sim.series["loss"], 41) + 0.02 + loss_shift + sim.noise(0.003))
    for key in ("entropy", "num_tokens", "logits/chosen", "logits/rejected", "mean_token_accuracy"):
        if key in sim.series:
            sim.put_eval(f"eval_{key}", sim.series[key] if key == "num_tokens" else smooth(sim.series[key], 41))
    margins = smooth(sim.series["rewards/margins"], 41) - 0.1 * loss_shift
    sim.put_eval("eval_rewards/chosen", smooth(sim.series["rewards/chosen"], 41))
    sim.put_eval("eval_rewards/rejected", smooth(sim.series["rewards/chosen"], 41) - margins)
    sim.put_eval("eval_rewards/accuracies",
                 np.clip(smooth(sim.series["rewards/accuracies"], 41) - 0.03 + accuracy_shift, 0.0, 1.0))
    sim.put_eval("eval_rewards/margins", margins)
    sim.put_eval("eval_logps/chosen", smooth(sim.series["logps/chosen"], 41))
    sim.put_eval("eval_logps/rejected", smooth(sim.series["logps/rejected"], 41))


def tpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/tpo: reference-free (rewards = beta * summed logps, beta 0.01 by default), and the
    loss adds the NLL of the gold response to the sigmoid term (tpo_trainer.py)."""
    beta = cfg.get("beta", 0.01)
    chosen_level = -250.0 + 15.0 * sim.progress
    rejected_level = -280.0 - 20.0 * sim.progress
    center = beta * (chosen_level - rejected_level)
    accuracy = 0.62 + 0.12 * (1 - np.exp(-3 * sim.progress))
    stats = pairs.sample(sim, 32, center, spread_for(center, accuracy), np.ones(sim.n), beta * rejected_level)
    nll = approach(sim.progress, 1.05, 0.86, 3.0) + sim.noise(0.03)
    put_common_head(sim, stats.loss + cfg.get("tpo_alpha", 1.0) * nll, grad_norms(sim, 4.0, 2.0))
    sim.put("entropy", 1.3 - 0.1 * sim.progress + sim.noise(0.01))
    sim.put("num_tokens", token_counter(sim, 21_000), LAST)
    sim.put("logits/chosen", -0.9 + sim.noise(0.02))
    sim.put("logits/rejected", -0.86 + sim.noise(0.02))
    sim.put("mean_token_accuracy", 0.6 + 0.06 * sim.progress + sim.noise(0.005))
    put_rewards(sim, stats, DPO_REWARD_ORDER)
    sim.put("logps/chosen", stats.chosen / beta)
    sim.put("logps/rejected", stats.rejected / beta)


def cpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/cpo, key order of real_trl_logs/cpo.jsonl: no reference model, rewards are beta
    times the summed logps, so margins start where the base model's likelihoods put them (positive
    on most data), and loss = preference term + nll_loss."""
    beta = cfg.get("beta", 0.1)
    chosen_level = -250.0 + 12.0 * sim.progress
    rejected_level = -258.0 - 25.0 * sim.progress
    center = _hook(knobs, "center", sim, beta * (chosen_level - rejected_level))
    accuracy = _hook(knobs, "accuracy", sim, 0.6 + 0.2 * (1 - np.exp(-3 * sim.progress)))
    stats = pairs.sample(sim, 32, center, spread_for(center, accuracy), np.ones(sim.n),
                         beta * rejected_level + noise.gauss(sim.rng, sim.n, 2.0))
    nll = _hook(knobs, "nll", sim, approach(sim.progress, 1.25, 0.95, 3.0)) + sim.noise(0.03)
    put_common_head(sim, stats.loss + nll, grad_norms(sim, 5.0, 2.2))
    put_rewards(sim, stats, DPO_REWARD_ORDER)
    _put_cpo_tail(sim, stats, beta, nll)


def _put_cpo_tail(sim: Sim, stats: pairs.PairStats, beta: float, nll: np.ndarray) -> None:
    sim.put("logps/rejected", stats.rejected / beta)
    sim.put("logps/chosen", stats.chosen / beta)
    sim.put("logits/rejected", -0.86 + sim.noise(0.02))
    sim.put("logits/chosen", -0.9 + sim.noise(0.02))
    sim.put("nll_loss", nll)


def orpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/orpo, key order of real_trl_logs/orpo.jsonl. logps are per-token means, rewards
    beta times them; log_odds_chosen = log odds(chosen) - log odds(rejected) and
    log_odds_ratio = mean log sigmoid(log_odds_chosen) (-ln 2 = -0.693 where they are equal);
    loss = nll_loss - beta * log_odds_ratio (real: 5.9818 = 5.9166 + 0.1 * 0.6529)."""
    beta = cfg.get("beta", 0.1)
    chosen_mean = _hook(knobs, "chosen_logp", sim, -1.25 + 0.25 * (1 - np.exp(-3 * sim.progress)))
    rejected_mean = -1.4 - 0.15 * (1 - np.exp(-3 * sim.progress))
    # per-token mean log-probs of a completion: always below 0
    chosen = np.minimum(chosen_mean[:, None] + sim.rng.normal(0, 0.3, (sim.n, 32)), -0.05)
    rejected = np.minimum(rejected_mean[:, None] + sim.rng.normal(0, 0.3, (sim.n, 32)), -0.05)

    def log_odds(logp: np.ndarray) -> np.ndarray:
        return logp - np.log1p(-np.exp(logp))

    chosen_odds = log_odds(chosen) - log_odds(rejected)
    ratio = -pairs.softplus(-chosen_odds)
    nll = -chosen.mean(axis=1)
    loss = nll - beta * ratio.mean(axis=1)
    put_common_head(sim, loss, grad_norms(sim, 3.5, 1.6))
    stats = pairs.PairStats(margins=beta * (chosen - rejected).mean(axis=1),
                            accuracy=(chosen > rejected).mean(axis=1), loss=loss,
                            chosen=beta * chosen.mean(axis=1), rejected=beta * rejected.mean(axis=1))
    put_rewards(sim, stats, DPO_REWARD_ORDER)
    _put_cpo_tail(sim, stats, beta, nll)
    sim.put("log_odds_ratio", ratio.mean(axis=1))
    sim.put("log_odds_chosen", chosen_odds.mean(axis=1))


def kto(sim: Sim, cfg: dict, knobs: dict) -> None:
    """KTO, key order of real_trl_logs/kto.jsonl. Per step a batch of `batch` examples, each desirable
    with probability `desirable`; the chosen keys are logged only when the batch held a desirable
    example, the rejected ones only with an undesirable one, and the margin only with both
    (kto_trainer.py). `kl` is the batch's KL reference point, clamped at 0: exactly 0.0 for long
    stretches of a healthy run (trl_failure_modes.md K2)."""
    batch, desirable = knobs.get("batch", 16), knobs.get("desirable", 0.5)
    rate = 2.5 * knobs.get("learning", 1.0)
    chosen_center = approach(sim.progress, 0.0, 0.9, rate)
    rejected_center = approach(sim.progress, 0.0, -1.6, rate)
    kl_level = -0.12 + 0.5 * (1.0 - np.exp(-rate * sim.progress))
    kl = np.maximum(0.0, kl_level + sim.noise(0.15) * np.minimum(1.0, 20 * sim.progress))
    kl = _hook(knobs, "kl", sim, kl)
    is_desirable = sim.rng.random((sim.n, batch)) < desirable
    spread = 0.9 * np.minimum(1.0, 20 * sim.progress)[:, None]
    chosen = chosen_center[:, None] + spread * sim.rng.normal(0, 1, (sim.n, batch))
    rejected = rejected_center[:, None] + spread * sim.rng.normal(0, 1, (sim.n, batch))
    sig = 1.0 / (1.0 + np.exp(-(chosen - kl[:, None])))
    sig_r = 1.0 / (1.0 + np.exp(-(kl[:, None] - rejected)))
    loss = np.where(is_desirable, 1.0 - sig, 1.0 - sig_r).mean(axis=1)
    put_common_head(sim, loss, grad_norms(sim, 3.0, 1.4))
    sim.put("kl", kl)
    sim.put("entropy", 1.3 - 0.08 * sim.progress + sim.noise(0.01))
    sim.put("num_tokens", token_counter(sim, 9_000), LAST)
    n_chosen = is_desirable.sum(axis=1)
    n_rejected = batch - n_chosen
    with np.errstate(invalid="ignore", divide="ignore"):
        chosen_mean = np.where(is_desirable, chosen, 0.0).sum(axis=1) / n_chosen
        rejected_mean = np.where(is_desirable, 0.0, rejected).sum(axis=1) / n_rejected
    beta = cfg.get("beta", 0.1)
    sim.put("logits/chosen", -0.52 + sim.noise(0.02))
    sim.put("logits/rejected", -0.47 + sim.noise(0.02))
    sim.put("rewards/chosen", chosen_mean)
    sim.put("logps/chosen", -180.0 + noise.gauss(sim.rng, sim.n, 20.0) + chosen_mean / beta)
    sim.put("rewards/rejected", rejected_mean)
    sim.put("logps/rejected", -205.0 + noise.gauss(sim.rng, sim.n, 20.0) + rejected_mean / beta)
    sim.put("rewards/margins", chosen_mean - rejected_mean)
    for key in ("logits/chosen", "rewards/chosen", "logps/chosen"):
        sim.hide(key, n_chosen == 0)
    for key in ("logits/rejected", "rewards/rejected", "logps/rejected"):
        sim.hide(key, n_rejected == 0)
    sim.hide("rewards/margins", (n_chosen == 0) | (n_rejected == 0))


def reward(sim: Sim, cfg: dict, knobs: dict) -> None:
    """RewardTrainer, key order of real_trl_logs/reward.jsonl. Per pair a score difference
    d ~ N(margin, spread); loss = mean softplus(-d), accuracy = mean(d > 0), `margin` = mean d.
    Scores carry an unconstrained offset that wanders (trl_failure_modes.md R2) unless
    center_rewards_coefficient pulls it to 0."""
    batch = 32
    # a random score head is not exactly neutral: real_trl_logs/reward.jsonl starts at 0.6928, not ln 2
    center, spread = preference_curves(sim, knobs, knobs.get("margin_max", 1.5), knobs.get("accuracy_max", 0.74),
                                       margin_rate=3.0, spread_start=0.05)
    d = center[:, None] + spread[:, None] * sim.rng.normal(0, 1, (sim.n, batch))
    offset = noise.wander(sim.rng, sim.n, 0.6, memory=0.995)
    if cfg.get("center_rewards_coefficient"):
        offset *= 0.1
    prompt_level = (0.05 + 1.2 * sim.progress)[:, None] * sim.rng.normal(0, 1, (sim.n, batch))
    chosen = offset[:, None] + prompt_level + d / 2
    rejected = offset[:, None] + prompt_level - d / 2
    scores = np.concatenate([chosen, rejected], axis=1)
    put_common_head(sim, pairs.softplus(-d).mean(axis=1), grad_norms(sim, 12.0, 3.0, rate=3.0))
    sim.put("num_tokens", token_counter(sim, 30_000), LAST)
    sim.put("min_reward", scores.min(axis=1))
    sim.put("mean_reward", scores.mean(axis=1))
    sim.put("max_reward", scores.max(axis=1))
    sim.put("accuracy", (d > 0).mean(axis=1))
    sim.put("margin", d.mean(axis=1))
    if sim.eval_every:
        loss_shift = eval_shift(sim, knobs)
        sim.put_eval("eval_loss", smooth(sim.series["loss"], 41) + 0.02 + loss_shift + sim.noise(0.003))
        sim.put_eval("eval_num_tokens", sim.series["num_tokens"])
        for key in ("min_reward", "mean_reward", "max_reward"):
            sim.put_eval(f"eval_{key}", smooth(sim.series[key], 41))
        sim.put_eval("eval_accuracy", np.clip(smooth(sim.series["accuracy"], 41) - 0.02
                                              - 0.25 * loss_shift, 0.0, 1.0))
        sim.put_eval("eval_margin", smooth(sim.series["margin"], 41) - 0.5 * loss_shift)


def online_dpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/online_dpo: its own `_maybe_log_save_evaluate` logs loss rounded to 4 decimals,
    then the mean of each `stats` list in their order (online_dpo_trainer.py). objective/kl and
    objective/entropy are per-sequence sums (trl_failure_modes.md caveats); with a reward model
    the objective/scores keys follow. val/contain_eos_token: the fraction of completions that end
    with EOS [healthy ~0.95 at max_new_tokens 64 for chat models: heuristic]."""
    beta = cfg.get("beta", [0.1])[0]
    center, spread = preference_curves(sim, knobs, 0.9, 0.7, margin_rate=2.0)
    stats = pairs.sample(sim, 16, center, spread, np.full(sim.n, 0.4),
                         -0.2 * center * sim.progress)
    kl = approach(sim.progress, 0.0, 9.0, 1.5) * noise.lognormal(sim.rng, sim.n, 0.15)
    put_common_head(sim, stats.loss, grad_norms(sim, 6.0, 3.0))
    sim.series["loss"] = stats.loss  # rounded by the trainer: see MEAN_4DP
    sim.reducers["loss"] = MEAN_4DP
    eos = _hook(knobs, "eos", sim, np.clip(0.95 + sim.noise(0.02), 0, 1))
    scores = approach(sim.progress, 0.2, 1.6, 2.0) + sim.noise(0.15)
    sim.put("objective/kl", kl)
    sim.put("objective/entropy", approach(sim.progress, 42.0, 33.0, 2.0) + sim.noise(1.5))
    sim.put("objective/non_score_reward", -beta * kl)
    put_rewards(sim, stats, DPO_REWARD_ORDER)
    sim.put("logps/chosen", -60.0 + sim.noise(6.0) + stats.chosen / beta)
    sim.put("logps/rejected", -66.0 + sim.noise(6.0) + stats.rejected / beta)
    sim.put("val/contain_eos_token", eos)
    sim.put("beta", np.full(sim.n, beta))
    sim.put("objective/rlhf_reward", scores - beta * kl)
    sim.put("objective/scores_margin", approach(sim.progress, 0.3, 1.1, 2.0) + sim.noise(0.2))
    sim.put("objective/scores", scores)
