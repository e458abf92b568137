"""Healthy models of the online RL trainers: grpo, rloo, gmpo, async_grpo, sdpo, a2po.

Facts and magnitudes:
- Key names and order: real_trl_logs/grpo.jsonl, grpo_kl.jsonl, rloo.jsonl; the sampling/* keys
  (only with use_vllm) sit after frac_reward_zero_std and before kl (grpo_trainer.py appends them
  in `_generate_and_score_completions`, kl and entropy in `_compute_loss`).
- GRPO's `loss` is not a progress signal: ~0 at num_iterations=1 (real: 2.98e-08 at step 1) and
  noisy around 0 after (trl_failure_modes.md G13).
- GRPO `kl` (only when beta > 0) is a per-token k3 estimate, exactly 0.0 at step 1
  (real_trl_logs/grpo_kl.jsonl), then ~1e-4 growing to ~1e-3 (trl_failure_modes.md G7) with
  isolated 5x spikes. RLOO's `kl` is a k1 estimate and can be negative (rloo.jsonl: -0.000277).
- clip_ratio/* are exactly 0.0 with num_iterations=1 and no vLLM correction (G9, [derived]).
- With vLLM: sampling/sampling_logp_difference/mean ~0.012, importance_sampling_ratio mean 0.976,
  min 0.93, max 1.31 (trl_failure_modes.md G8: issue #5312 log, #6789 comment).
- RLOO with beta > 0 puts the KL penalty into the reward before the group std, so
  frac_reward_zero_std stays ~0 once the policy has moved (rloo_trainer.py; G1).
- Entropy falls sharply early in RL and then levels off (Cui et al. 2505.22617, cited in G5): a
  40% drop is normal.
"""

from __future__ import annotations

import numpy as np

from . import async_keys, noise
from .curves import approach, grad_norms, put_common_head, step_times
from .groups import GroupSpec, GroupStats, RewardFunc, simulate
from .sim import LAST, MAX, MIN, Sim

ACCURACY = RewardFunc("accuracy_reward")
FORMAT = RewardFunc("think_format_reward", ease=3.2)
LENGTH = RewardFunc("reward_len", binary=False, ease=0.5)


def _hook(knobs: dict, name: str, sim: Sim, values: np.ndarray) -> np.ndarray:
    hook = knobs.get(name)
    return hook(sim, values) if hook is not None else values


def rollouts(sim: Sim, cfg: dict, knobs: dict, generations: int) -> GroupStats:
    funcs = knobs.get("funcs", (ACCURACY, FORMAT))
    if "dead_func" in knobs:
        name, step = knobs["dead_func"]
        funcs = tuple(RewardFunc(f.name, f.binary, f.ease, f.weight, step if f.name == name else None) for f in funcs)
    skill_start, skill_end = knobs.get("skill", (-1.0, 0.9))
    skill = approach(sim.progress, skill_start, skill_end, 2.5) + noise.wander(sim.rng, sim.n, 0.08)
    max_len = cfg["max_completion_length"]
    length = approach(sim.progress, knobs.get("length_start", 0.34 * max_len), knobs.get("length_end", 0.46 * max_len),
                      2.0)
    spec = GroupSpec(prompts=knobs.get("prompts", 8), generations=generations, funcs=funcs,
                     skill=_hook(knobs, "skill_hook", sim, skill), difficulty_sd=knobs.get("difficulty_sd", 2.4),
                     length_mean=_hook(knobs, "length_hook", sim, length), max_len=max_len,
                     identical=_hook(knobs, "identical", sim, np.zeros(sim.n)))
    return simulate(sim, spec)


def rl_grad_norms(sim: Sim, stats: GroupStats, knobs: dict) -> np.ndarray:
    """The gradient comes from the groups with a reward spread: ~`signal` when every group has
    one, ~`floor` (the KL or entropy terms, or nothing) when none has. With beta 0 and every group
    flat the gradient is exactly zero (issue #3857 log: frac_reward_zero_std 1, grad_norm 0)."""
    signal, floor = knobs.get("grad_signal", 0.3), knobs.get("grad_floor", 0.02)
    level = signal * (1.0 - stats.frac_zero_std) + floor
    grad = level * noise.lognormal(sim.rng, sim.n, 0.3) * noise.honest_spikes(sim.rng, sim.n, 0.004, after=20)
    if knobs.get("beta", 0.0) == 0.0:
        grad = np.where(stats.frac_zero_std >= 1.0, 0.0, grad)
    return grad


def grpo_kl(sim: Sim, knobs: dict) -> np.ndarray:
    level = 1e-4 + 9e-4 * sim.progress ** 1.2
    kl = level * noise.lognormal(sim.rng, sim.n, 0.3) * noise.honest_spikes(sim.rng, sim.n, 0.01, 4.5, 5.5, after=20)
    kl[0] = 0.0  # policy = reference at step 1
    return _hook(knobs, "kl", sim, kl)


def put_rewards(sim: Sim, stats: GroupStats) -> None:
    for name in stats.func_mean:
        sim.put(f"rewards/{name}/mean", stats.func_mean[name])
        sim.put(f"rewards/{name}/std", stats.func_std[name])
    sim.put("reward", stats.reward)
    sim.put("reward_std", stats.reward_std)
    sim.put("frac_reward_zero_std", stats.frac_zero_std)


def put_clip_ratios(sim: Sim, order: tuple[str, ...], level: np.ndarray | float = 0.0) -> None:
    """clip_ratio/*: exactly 0 with num_iterations=1 (level 0); else small fractions of tokens."""
    level = np.broadcast_to(np.asarray(level, dtype=float), (sim.n,))
    scale = {"clip_ratio/low_mean": 0.4, "clip_ratio/high_mean": 0.6, "clip_ratio/region_mean": 1.0,
             "clip_ratio/low_min": 0.0, "clip_ratio/high_max": 2.5}
    jitter = noise.lognormal(sim.rng, sim.n, 0.3)
    for key in order:
        sim.put(key, level * scale[key] * jitter)


GRPO_CLIP_ORDER = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "clip_ratio/low_min",
                   "clip_ratio/high_max")
RLOO_CLIP_ORDER = ("clip_ratio/low_mean", "clip_ratio/low_min", "clip_ratio/high_mean", "clip_ratio/high_max",
                   "clip_ratio/region_mean")


def vllm_sampling(sim: Sim, knobs: dict) -> dict[str, np.ndarray]:
    """The sampling/* keys: the per-token log-prob difference between vLLM and the trainer, and the
    importance-sampling ratio of the (default) sequence_mask correction, whose mean sits a little
    under 1 as the small per-token differences compound over a completion."""
    healthy = 0.012 * noise.lognormal(sim.rng, sim.n, 0.2)
    logp_diff = _hook(knobs, "logp_diff", sim, healthy)
    ratio_mean = _hook(knobs, "is_ratio", sim, np.clip(1.0 - 2.0 * logp_diff + sim.noise(0.006), 0.0, None))
    ratio_max = np.maximum(ratio_mean + 0.33 * noise.lognormal(sim.rng, sim.n, 0.2), 1.0 - 2.0 * healthy + 0.25)
    return {"sampling/sampling_logp_difference/mean": logp_diff,
            "sampling/sampling_logp_difference/max": logp_diff * 60.0 * noise.lognormal(sim.rng, sim.n, 0.3),
            "sampling/importance_sampling_ratio/min":
                np.clip(ratio_mean - 0.045 - 4 * np.abs(sim.noise(0.01)), 0.0, None),
            "sampling/importance_sampling_ratio/mean": ratio_mean,
            "sampling/importance_sampling_ratio/max": ratio_max}


def grpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    knobs = {"beta": cfg.get("beta", 0.0), **knobs}
    stats = rollouts(sim, cfg, knobs, cfg.get("num_generations", 8))
    kl = grpo_kl(sim, knobs) if knobs["beta"] else None
    policy_loss = sim.noise(0.012) * (1.0 - stats.frac_zero_std)
    loss = policy_loss + (knobs["beta"] * kl if kl is not None else 0.0)
    loss[0] = 2.98e-08  # real_trl_logs/grpo.jsonl step 1
    put_common_head(sim, loss, _hook(knobs, "grad", sim, rl_grad_norms(sim, stats, knobs)))
    prompt_tokens = 160.0
    per_step = (prompt_tokens + stats.lengths["completions/mean_length"]) * knobs.get("prompts", 8) * \
        cfg.get("num_generations", 8)
    sim.put("num_tokens", np.cumsum(np.round(per_step)), LAST)
    for key, values in stats.lengths.items():
        sim.put(key, values)
    put_rewards(sim, stats)
    if cfg.get("use_vllm"):
        for key, values in vllm_sampling(sim, knobs).items():
            sim.put(key, values)
    if kl is not None:
        sim.put("kl", kl)
    entropy = approach(sim.progress, knobs.get("entropy_start", 0.68), knobs.get("entropy_end", 0.41), 3.0)
    sim.put("entropy", _hook(knobs, "entropy", sim, entropy * (1.0 + noise.gauss(sim.rng, sim.n, 0.03))))
    clip_level = 0.004 if cfg.get("num_iterations", 1) > 1 or cfg.get("use_vllm") else 0.0
    put_clip_ratios(sim, GRPO_CLIP_ORDER, _hook(knobs, "clip", sim, np.full(sim.n, clip_level)))
    sim.put("step_time", step_times(sim, knobs.get("step_seconds", 42.0)))


def gmpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """GMPOTrainer subclasses GRPOTrainer (geometric-mean policy optimisation): the same keys."""
    grpo(sim, cfg, knobs)


def rloo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """Key order of real_trl_logs/rloo.jsonl: completions/*, kl (default beta 0.05), rewards, entropy,
    clip ratios (per sequence), step_time."""
    beta = cfg.get("beta", 0.05)
    knobs = {"beta": beta, **knobs}
    stats = rollouts(sim, cfg, knobs, cfg.get("num_generations", 2))
    if beta:
        # the KL penalty enters the reward before the group std: flat groups only at step 1 (policy = reference)
        stats.frac_zero_std = np.where(sim.steps == 1, stats.frac_zero_std, 0.0)
    loss = sim.noise(0.01) * (1.0 - stats.frac_zero_std)
    loss[0] = 3.725e-09  # real_trl_logs/rloo.jsonl step 1
    put_common_head(sim, loss, _hook(knobs, "grad", sim, rl_grad_norms(sim, stats, knobs)))
    per_step = (140.0 + stats.lengths["completions/mean_length"]) * knobs.get("prompts", 8) * \
        cfg.get("num_generations", 2)
    sim.put("num_tokens", np.cumsum(np.round(per_step)), LAST)
    for key, values in stats.lengths.items():
        sim.put(key, values)
    if beta:
        k1 = approach(sim.progress, 0.0, 0.004, 1.5) + sim.noise(4e-4) * np.minimum(1.0, 50 * sim.progress)
        k1[0] = 0.0
        sim.put("kl", _hook(knobs, "kl", sim, k1))
    put_rewards(sim, stats)
    entropy = approach(sim.progress, 0.7, 0.45, 3.0) * (1.0 + noise.gauss(sim.rng, sim.n, 0.03))
    sim.put("entropy", _hook(knobs, "entropy", sim, entropy))
    put_clip_ratios(sim, RLOO_CLIP_ORDER, 0.0)
    sim.put("step_time", step_times(sim, 30.0))


def async_grpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/async_grpo (defaults: logging_steps 1, constant learning rate, 8 generations).
    No reference model: `ratio` and `kl` compare the current policy with the (stale) vLLM sampler,
    so both move with sample/staleness_* (policy versions between generation and training, at most
    max_staleness 4). Per-function rewards are `rewards/<f>` (no /mean), `reward_std` is a per-group
    std, and there is no frac_reward_zero_std (inventory.md, async_grpo)."""
    stats = rollouts(sim, cfg, knobs, cfg.get("num_generations", 8))
    max_staleness = cfg.get("max_staleness", 4)
    staleness = _hook(knobs, "staleness", sim, np.clip(1.3 + sim.noise(0.5), 0.0, max_staleness))
    drift = _hook(knobs, "ratio_drift", sim, np.zeros(sim.n))
    completion_tokens = stats.lengths["completions/mean_length"]
    put_common_head(sim, sim.noise(0.01), _hook(knobs, "grad", sim, rl_grad_norms(sim, stats, knobs)))
    queue_time = _hook(knobs, "queue_time", sim, 8.0 * noise.lognormal(sim.rng, sim.n, 0.3))
    async_keys.put_sample_keys(sim, staleness, queue_time, completion_tokens, max_staleness, tree_packing=True)
    sim.put("reward", stats.reward)
    sim.put("reward_std", stats.group_std)  # the std within each sample's own group, averaged
    for name, values in stats.func_mean.items():
        sim.put(f"rewards/{name}", values)
    sim.put("ratio", 1.0 + drift + 0.004 * staleness * sim.rng.normal(0, 1, sim.n))
    sim.put("kl", (6e-4 * staleness + 2e-4) * noise.lognormal(sim.rng, sim.n, 0.3) * (1 + 40 * np.abs(drift)))
    sim.put("entropy", approach(sim.progress, 0.66, 0.45, 3.0) * (1.0 + noise.gauss(sim.rng, sim.n, 0.03)))
    put_clip_ratios(sim, GRPO_CLIP_ORDER, 0.002 * staleness + 0.5 * np.abs(drift))
    for key in ("clip_ratio/low_min", "clip_ratio/high_max"):  # window extremes here, by their last word
        sim.reducers[key] = MIN if key.endswith("min") else MAX
    async_keys.put_step_keys(sim, completion_tokens, groups=True)
    async_keys.put_rollout_keys(sim, stats.lengths, scoring_seconds=0.3, grpo=True)


def sdpo(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/sdpo (default distillation_weight 1.0: the loss is the distillation term alone):
    GRPO-style rollouts plus self-distillation from successful siblings. Its
    rewards are logged under self_distillation/* (reward_min/max are batch extremes), success_*
    count groups/samples reaching success_reward_threshold (1.0), reprompt_sample_fraction is the
    share of samples given a teacher context (the failed ones of a solved group) and
    flat_group_fraction the groups without reward spread (sdpo_trainer.py)."""
    stats = rollouts(sim, cfg, {**knobs, "funcs": (ACCURACY,)}, cfg.get("num_generations", 8))
    reprompt = np.clip(stats.frac_solved - stats.reward, 0.0, 1.0)
    distillation = approach(sim.progress, 0.3, 0.12, 3.0) * (reprompt / 0.3) * (1.0 + noise.gauss(sim.rng, sim.n, 0.08))
    put_common_head(sim, distillation, _hook(knobs, "grad", sim, rl_grad_norms(sim, stats, knobs)))
    for key, values in stats.lengths.items():
        sim.put(key, values)
    sim.put("self_distillation/success_group_fraction", stats.frac_solved)
    sim.put("self_distillation/success_sample_fraction", stats.reward)
    sim.put("self_distillation/feedback_available_fraction", np.zeros(sim.n))
    sim.put("self_distillation/feedback_used_fraction", np.zeros(sim.n))
    sim.put("self_distillation/reprompt_sample_fraction", reprompt)
    # self_distillation/policy_loss only when distillation_weight != 1.0 (default 1.0): not logged
    sim.put("self_distillation/distillation_loss", distillation)
    sim.put("sdpo/distillation_loss", distillation)
    sim.put("self_distillation/reward_mean", stats.reward)
    sim.put("self_distillation/reward_std", stats.reward_std)
    sim.put("self_distillation/reward_min", np.zeros(sim.n))
    sim.put("self_distillation/reward_max", (stats.reward > 0).astype(float))
    sim.put("self_distillation/group_reward_std_mean", stats.group_std)
    sim.put("self_distillation/flat_group_fraction", stats.frac_zero_std)
    sim.put("self_distillation/rewards/accuracy_reward", stats.func_mean["accuracy_reward"])


def a2po(sim: Sim, cfg: dict, knobs: dict) -> None:
    """experimental/a2po (A*-PO): v_star estimates the optimal value of a prompt from reference
    samples (fixed per prompt: it moves only with the batch), the advantage target is
    reward - v_star, implicit_reward is beta * log(pi/pi_ref) regressed onto it (a2po_trainer.py)."""
    reward = _hook(knobs, "reward", sim, approach(sim.progress, 0.34, 0.62, 2.5) + sim.noise(0.06))
    v_star = 0.55 + sim.noise(0.05)
    advantage = reward - v_star
    implicit = _hook(knobs, "implicit", sim, advantage * (1.0 - np.exp(-3.0 * sim.progress)) + sim.noise(0.03))
    loss = (implicit - advantage) ** 2 + 0.01 + sim.noise(0.002) ** 2
    put_common_head(sim, loss, grad_norms(sim, 0.9, 0.3))
    sim.put("reward", reward)
    sim.put("v_star", v_star)
    sim.put("implicit_reward", implicit)
    sim.put("advantage", advantage)

