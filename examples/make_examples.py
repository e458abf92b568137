"""Write the example runs under examples/runs/ (deterministic: seeded `random`, stdlib only).

    python examples/make_examples.py

The runs are synthetic, but shaped like what TRL really logs: the same keys, in
the same order, as the real logs in the project's reference captures (TRL 1.16,
transformers 5.24), one `on_log` call per line with `step` first, evaluation and
end-of-training summary entries sharing the last step, and values rounded to
float32 as the trainers produce them. The GRPO run is written the way the
Trainer saves `trainer_state.json` (`json.dumps(..., indent=2, sort_keys=True)`).

Every run uses the TRL default `logging_steps=10`; the rules count logged values
(one per line), not optimizer steps.

Runs:
    dpo_healthy       DPO loss falls from ln 2 toward ~0.3, margins and accuracy rise
    dpo_stuck         learning rate 1000x too low: loss pinned at ln 2, margins ~0
    grpo_is_collapse  vLLM weights stop being synced at step ~400: importance-sampling
                      ratio collapses from ~1.0 to ~0.1 (trainer_state.json)
    sft_nan           SFT diverges near step 490 (grad_norm spikes), NaN from step 520;
                      logging_nan_inf_filter=False, so the loss shows NaN as well
"""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
LOGGING_STEPS = 10  # TRL configs' default


def f32(x: float) -> float:
    """x as a float32, then back: how tensor.item() values look in TRL logs."""
    if not math.isfinite(x):
        return x
    return struct.unpack("f", struct.pack("f", x))[0]


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def linear_lr(base: float, step: int, warmup: int, total: int) -> float:
    """The LR used for optimizer step `step` (1-based): linear warmup, then linear decay to 0."""
    done = step - 1  # the scheduler has been stepped `done` times before this step
    if done < warmup:
        return base * done / max(1, warmup)
    return base * max(0.0, (total - done) / max(1, total - warmup))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")  # NaN is written as the token NaN, as Python's json does


# ============================================================================ DPO


DPO_TOTAL, DPO_PAIRS, DPO_STEPS_PER_EPOCH, DPO_EVAL_STEPS, BETA = 1200, 16, 600, 300, 0.1


def dpo_run(seed: int, margin_at, spread_at, lr_base: float) -> list[dict]:
    """A DPO run simulated optimizer step by optimizer step, logged every 10 steps.

    margin_at(s) is the mean per-pair implicit margin after s-1 updates and
    spread_at(s) its per-pair spread; at step 1 the policy equals the reference,
    so every implicit reward is exactly 0 (loss ln 2, accuracy 0.0 with the strict '>').
    """
    rng = random.Random(seed)
    rows: list[dict] = []
    window: list[dict] = []
    num_tokens = 0.0
    all_losses = []
    for s in range(1, DPO_TOTAL + 1):
        m, sd = margin_at(s), spread_at(s)
        pairs = []
        for _ in range(DPO_PAIRS):
            mj = rng.gauss(m, sd) if sd > 0 else m
            cj = 0.2 * mj + (rng.gauss(0.0, 0.25 * sd) if sd > 0 else 0.0)
            pairs.append((mj, cj, cj - mj))
        ref_c = rng.gauss(-262.0, 20.0)
        ref_r = ref_c + rng.gauss(-28.0, 10.0)
        chosen = mean(p[1] for p in pairs)
        rejected = mean(p[2] for p in pairs)
        step = {
            "loss": mean(softplus(-p[0]) for p in pairs),
            "entropy": 1.42 - 0.05 * m + rng.gauss(0.0, 0.02),
            "logits/chosen": -0.92 - 0.05 * m + rng.gauss(0.0, 0.04),
            "logits/rejected": -0.88 + 0.03 * m + rng.gauss(0.0, 0.04),
            "mean_token_accuracy": 0.612 + 0.01 * m + rng.gauss(0.0, 0.008),
            "rewards/chosen": chosen,
            "rewards/rejected": rejected,
            "rewards/accuracies": mean(1.0 if p[1] > p[2] else 0.0 for p in pairs),
            "rewards/margins": mean(p[0] for p in pairs),
            "logps/chosen": ref_c + chosen / BETA,
            "logps/rejected": ref_r + rejected / BETA,
        }
        all_losses.append(f32(step["loss"]))
        num_tokens += float(round(rng.gauss(13440, 1500)))
        window.append(step)
        if s % LOGGING_STEPS == 0:
            grad_norm = (6.0 + 4.0 * math.exp(-s / 300)) * math.exp(rng.gauss(0.0, 0.18))
            avg = {k: f32(mean(w[k] for w in window)) for k in window[0]}
            rows.append({
                "step": s, "loss": avg["loss"], "grad_norm": f32(grad_norm),
                "learning_rate": linear_lr(lr_base, s, DPO_TOTAL // 10, DPO_TOTAL),
                "entropy": avg["entropy"], "num_tokens": num_tokens,
                "logits/chosen": avg["logits/chosen"], "logits/rejected": avg["logits/rejected"],
                "mean_token_accuracy": avg["mean_token_accuracy"],
                "rewards/chosen": avg["rewards/chosen"], "rewards/rejected": avg["rewards/rejected"],
                "rewards/accuracies": avg["rewards/accuracies"], "rewards/margins": avg["rewards/margins"],
                "logps/chosen": avg["logps/chosen"], "logps/rejected": avg["logps/rejected"],
                "epoch": s / DPO_STEPS_PER_EPOCH,
            })
            window = []
        if s % DPO_EVAL_STEPS == 0:
            rows.append(dpo_eval(rng, s, margin_at(s), spread_at(s), num_tokens))
    runtime = round(DPO_TOTAL * rng.uniform(3.0, 3.2), 4)
    rows.append({
        "step": DPO_TOTAL, "train_runtime": runtime,
        "train_samples_per_second": round(DPO_TOTAL * DPO_PAIRS / runtime, 3),
        "train_steps_per_second": round(DPO_TOTAL / runtime, 3),
        "total_flos": round(num_tokens * 2.9e9, -6),
        "train_loss": mean(all_losses), "epoch": DPO_TOTAL / DPO_STEPS_PER_EPOCH,
    })
    return rows


def dpo_eval(rng: random.Random, s: int, m: float, sd: float, num_tokens: float) -> dict:
    margins = [rng.gauss(m, sd) if sd > 0 else m for _ in range(500)]
    chosen = [0.2 * x + (rng.gauss(0.0, 0.25 * sd) if sd > 0 else 0.0) for x in margins]
    c, r = mean(chosen), mean(ch - x for ch, x in zip(chosen, margins))
    runtime = round(rng.uniform(40.0, 43.0), 4)
    return {
        "step": s, "eval_loss": f32(mean(softplus(-x) for x in margins)), "eval_runtime": runtime,
        "eval_samples_per_second": round(500 / runtime, 3), "eval_steps_per_second": round(63 / runtime, 3),
        "eval_entropy": f32(1.43 - 0.05 * m + rng.gauss(0.0, 0.005)), "eval_num_tokens": num_tokens,
        "eval_logits/chosen": f32(-0.92 - 0.05 * m), "eval_logits/rejected": f32(-0.88 + 0.03 * m),
        "eval_mean_token_accuracy": f32(0.61 + 0.01 * m),
        "eval_rewards/chosen": f32(c), "eval_rewards/rejected": f32(r),
        "eval_rewards/accuracies": f32(mean(1.0 if x > 0 else 0.0 for x in margins)),
        "eval_rewards/margins": f32(mean(margins)),
        "eval_logps/chosen": f32(-259.4 + c / BETA), "eval_logps/rejected": f32(-288.1 + r / BETA),
        "epoch": s / DPO_STEPS_PER_EPOCH,
    }


def dpo_healthy() -> list[dict]:
    margin = lambda s: 1.75 * (1.0 - math.exp(-(s - 1) / 350))  # noqa: E731
    spread = lambda s: 0.0 if s == 1 else 0.05 + 0.75 * margin(s)  # noqa: E731
    return dpo_run(101, margin, spread, 1e-6)


def dpo_stuck() -> list[dict]:
    # learning_rate=1e-9 instead of 1e-6: updates are too small to separate the pairs,
    # the implicit margins stay at the level of numerical noise.
    margin = lambda s: 0.0 if s == 1 else 0.0002 * s / DPO_TOTAL  # noqa: E731
    spread = lambda s: 0.0 if s == 1 else 0.004  # noqa: E731
    return dpo_run(202, margin, spread, 1e-9)


# ============================================================================ GRPO


GRPO_TOTAL, GRPO_STEPS_PER_EPOCH, GRPO_PROMPTS, GRPO_GENERATIONS, MAX_COMPLETION = 800, 500, 8, 8, 1024
COLLAPSE_STEP = 400  # from here on vLLM keeps sampling with stale weights


def grpo_is_collapse() -> dict:
    rng = random.Random(303)
    log_history: list[dict] = []
    num_tokens, runtime, losses = 0.0, 0.0, []
    for s in range(LOGGING_STEPS, GRPO_TOTAL + 1, LOGGING_STEPS):
        progress = min(s, COLLAPSE_STEP) / COLLAPSE_STEP
        stale = max(0, (s - COLLAPSE_STEP) // LOGGING_STEPS)  # logs since the sync broke: 0, 1, 2, ...
        ramp = min(1.0, stale / 4)

        correctness = 0.18 + 0.24 * progress - 0.02 * ramp + rng.gauss(0.0, 0.025)
        fmt = 0.55 + 0.38 * progress + rng.gauss(0.0, 0.02)
        correctness, fmt = min(max(correctness, 0.0), 1.0), min(max(fmt, 0.0), 1.0)
        std_c, std_f = math.sqrt(correctness * (1 - correctness)), math.sqrt(fmt * (1 - fmt))

        clipped = min(max(0.06 + rng.gauss(0.0, 0.012), 0.0), 1.0)
        mean_len = 310.0 + 50.0 * progress + rng.gauss(0.0, 8.0)
        terminated = (mean_len - clipped * MAX_COMPLETION) / (1.0 - clipped)
        min_len = 38.0 + rng.gauss(0.0, 6.0)

        logp_diff = 0.014 + rng.gauss(0.0, 0.0015) + ramp * (0.30 + rng.gauss(0.0, 0.02))
        is_mean = 0.975 + rng.gauss(0.0, 0.008) - ramp * (0.865 + rng.gauss(0.0, 0.02))
        is_min = 0.0 if ramp >= 0.5 else max(0.0, 0.34 + rng.gauss(0.0, 0.1))
        is_max = 1.9 + rng.gauss(0.0, 0.25) + ramp * 0.9 * (1.0 if rng.random() < 0.9 else 0.95)
        is_max = min(is_max, 3.0)

        low, high = abs(rng.gauss(2.0e-4, 0.8e-4)), abs(rng.gauss(3.0e-4, 1.0e-4))
        step_time = 38.0 + rng.gauss(0.0, 1.8)
        loss = rng.gauss(0.0, 0.01)
        losses.append(f32(loss))
        tokens_per_step = GRPO_PROMPTS * GRPO_GENERATIONS * (mean_len + 180.0)
        num_tokens += float(round(LOGGING_STEPS * tokens_per_step))
        runtime += LOGGING_STEPS * step_time
        grad_norm = (0.28 - 0.21 * ramp) * math.exp(rng.gauss(0.0, 0.2))

        log_history.append({
            "loss": f32(loss), "grad_norm": f32(grad_norm),
            "learning_rate": linear_lr(1e-6, s, GRPO_TOTAL // 20, GRPO_TOTAL),
            "num_tokens": num_tokens,
            "completions/mean_length": f32(mean_len), "completions/min_length": f32(min_len),
            "completions/max_length": float(MAX_COMPLETION),  # some completion is cut in every step
            "completions/clipped_ratio": f32(clipped),
            "completions/mean_terminated_length": f32(terminated),
            "completions/min_terminated_length": f32(min_len),
            "completions/max_terminated_length": f32(930.0 + rng.gauss(0.0, 30.0)),
            "rewards/correctness_reward/mean": f32(correctness), "rewards/correctness_reward/std": f32(std_c),
            "rewards/format_reward/mean": f32(fmt), "rewards/format_reward/std": f32(std_f),
            "reward": f32(correctness + fmt), "reward_std": f32(math.sqrt(std_c ** 2 + std_f ** 2)),
            "frac_reward_zero_std": f32(min(max(0.31 + rng.gauss(0.0, 0.05), 0.0), 1.0)),
            "entropy": f32(0.62 - 0.14 * progress + rng.gauss(0.0, 0.01)),
            "clip_ratio/low_mean": f32(low), "clip_ratio/high_mean": f32(high),
            "clip_ratio/region_mean": f32(low + high), "clip_ratio/low_min": 0.0,
            "clip_ratio/high_max": f32(abs(rng.gauss(0.003, 0.001))),
            "sampling/sampling_logp_difference/mean": f32(logp_diff),
            "sampling/sampling_logp_difference/max": f32(1.1 + rng.gauss(0.0, 0.25) + ramp * 6.0),
            "sampling/importance_sampling_ratio/mean": f32(max(is_mean, 0.0)),
            "sampling/importance_sampling_ratio/min": f32(is_min),
            "sampling/importance_sampling_ratio/max": f32(is_max),
            "step_time": step_time, "epoch": s / GRPO_STEPS_PER_EPOCH, "step": s,
        })
    runtime = round(runtime, 4)
    log_history.append({
        "epoch": GRPO_TOTAL / GRPO_STEPS_PER_EPOCH, "step": GRPO_TOTAL, "total_flos": 0.0,
        "train_loss": mean(losses), "train_runtime": runtime,
        "train_samples_per_second": round(GRPO_TOTAL * GRPO_PROMPTS / runtime, 3),
        "train_steps_per_second": round(GRPO_TOTAL / runtime, 3),
    })
    return {
        "best_global_step": None, "best_metric": None, "best_model_checkpoint": None,
        "epoch": GRPO_TOTAL / GRPO_STEPS_PER_EPOCH, "eval_steps": 500, "global_step": GRPO_TOTAL,
        "is_hyper_param_search": False, "is_local_process_zero": True, "is_world_process_zero": True,
        "log_history": log_history, "logging_steps": LOGGING_STEPS, "max_steps": GRPO_TOTAL,
        "num_input_tokens_seen": 0, "num_train_epochs": 2, "save_steps": 500,
        "stateful_callbacks": {"TrainerControl": {
            "args": {"should_epoch_stop": False, "should_evaluate": False, "should_log": False,
                     "should_save": False, "should_training_stop": False},
            "attributes": {}}},
        "total_flos": 0.0, "train_batch_size": GRPO_PROMPTS, "trial_name": None, "trial_params": None,
    }


# ============================================================================ SFT


SFT_TOTAL, SFT_STEPS_PER_EPOCH, SFT_EVAL_STEPS = 800, 400, 400
# the last logs before the NaN: step -> (loss, grad_norm, entropy, mean_token_accuracy)
SFT_BLOWUP = {490: (1.6187, 14.83, 1.5236, 0.6412), 500: (2.9064, 63.27, 2.6118, 0.4873),
              510: (7.3821, 411.62, 4.7935, 0.2094)}
SFT_NAN_FROM = 520


def sft_nan() -> list[dict]:
    rng = random.Random(404)
    rows: list[dict] = []
    num_tokens, losses = 0.0, []
    for s in range(LOGGING_STEPS, SFT_TOTAL + 1, LOGGING_STEPS):
        num_tokens += float(LOGGING_STEPS * round(rng.gauss(15200, 600)))
        if s >= SFT_NAN_FROM:
            # NaN weights: loss, norm and entropy are NaN; argmax over NaN logits hits no target
            loss, grad_norm, entropy, accuracy = math.nan, math.nan, math.nan, 0.0
        elif s in SFT_BLOWUP:
            loss, grad_norm, entropy, accuracy = SFT_BLOWUP[s]
        else:
            decay = math.exp(-s / 180)
            loss = 1.25 + 0.7 * decay + rng.gauss(0.0, 0.03)
            grad_norm = (0.9 + 0.5 * decay) * math.exp(rng.gauss(0.0, 0.15))
            entropy = 1.35 + 0.55 * decay + rng.gauss(0.0, 0.02)
            accuracy = 0.68 - 0.1 * decay + rng.gauss(0.0, 0.006)
        losses.append(loss)
        rows.append({
            "step": s, "loss": f32(loss), "grad_norm": f32(grad_norm),
            "learning_rate": linear_lr(2e-5, s, 24, SFT_TOTAL), "entropy": f32(entropy),
            "mean_token_accuracy": f32(accuracy), "num_tokens": num_tokens, "epoch": s / SFT_STEPS_PER_EPOCH,
        })
        if s % SFT_EVAL_STEPS == 0:
            broken = s >= SFT_NAN_FROM
            runtime = round(rng.uniform(21.0, 23.0), 4)
            rows.append({
                "step": s, "eval_loss": math.nan if broken else f32(1.31 + rng.gauss(0.0, 0.01)),
                "eval_runtime": runtime, "eval_samples_per_second": round(400 / runtime, 3),
                "eval_steps_per_second": round(50 / runtime, 3),
                "eval_entropy": math.nan if broken else f32(1.41 + rng.gauss(0.0, 0.01)),
                "eval_mean_token_accuracy": 0.0 if broken else f32(0.665 + rng.gauss(0.0, 0.003)),
                "eval_num_tokens": num_tokens, "epoch": s / SFT_STEPS_PER_EPOCH,
            })
    runtime = round(SFT_TOTAL * rng.uniform(1.9, 2.1), 4)
    rows.append({
        "step": SFT_TOTAL, "train_runtime": runtime,
        "train_samples_per_second": round(SFT_TOTAL * 16 / runtime, 3),
        "train_steps_per_second": round(SFT_TOTAL / runtime, 3),
        "total_flos": round(num_tokens * 2.9e9, -6), "train_loss": mean(losses),
        "epoch": SFT_TOTAL / SFT_STEPS_PER_EPOCH,
    })
    return rows


def main() -> None:
    write_jsonl(RUNS / "dpo_healthy" / "metrics.jsonl", dpo_healthy())
    write_jsonl(RUNS / "dpo_stuck" / "metrics.jsonl", dpo_stuck())
    state_path = RUNS / "grpo_is_collapse" / "trainer_state.json"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(grpo_is_collapse(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_jsonl(RUNS / "sft_nan" / "metrics.jsonl", sft_nan())
    for path in sorted(RUNS.rglob("*.json*")):
        print(path.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
