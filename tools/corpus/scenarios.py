"""Every run of the corpus: the healthy runs (with the benign noise that makes naive rules cry wolf)
and the failure runs (a healthy run plus a failure from an onset step after warm-up).

Rule writers: list in `expect` the builtin rules that must fire on a failure run by its
detect_by, then run `python tools/make_corpus.py` to rewrite the manifest.
"""

from __future__ import annotations

from . import failures as f
from .online_rl import ACCURACY, FORMAT, LENGTH
from .runs import FAILURE, HEALTHY, Scenario


def healthy(trainer: str, name: str, description: str, **settings) -> Scenario:
    return Scenario(HEALTHY, trainer, name, description, **settings)


def failing(trainer: str, name: str, description: str, failure: f.Failure, expect: tuple[str, ...] = (),
            **settings) -> Scenario:
    return Scenario(FAILURE, trainer, name, description, failure=failure, expect_rules=expect, **settings)


THREE_REWARDS = (ACCURACY, FORMAT, LENGTH)
GRPO_NAN_KEYS = ("kl", "entropy", "sampling/sampling_logp_difference/mean", "sampling/sampling_logp_difference/max",
                 "sampling/importance_sampling_ratio/min", "sampling/importance_sampling_ratio/mean",
                 "sampling/importance_sampling_ratio/max")
GRPO_NAN_FILL = {"reward": 0.0, "reward_std": 0.0, "frac_reward_zero_std": 1.0,
                 **{f"rewards/{name}/{stat}": 0.0 for name in ("accuracy_reward", "think_format_reward")
                    for stat in ("mean", "std")},
                 **{f"completions/{stat}_length": 512.0 for stat in ("mean", "min", "max")},
                 "completions/clipped_ratio": 1.0,
                 **{f"completions/{stat}_terminated_length": 0.0 for stat in ("mean", "min", "max")}}

HEALTHY_RUNS = [
    # ---------------------------------------------------------------- sft
    healthy("sft", "default", "SFT, 2000 steps, cosine with a 3% warm-up (warmup_steps 0.03), logging every 10 "
            "steps, evals every 200: loss 1.85 -> ~1.05 with batch noise, honest 3-5x grad-norm spikes",
            max_steps=2000, schedule="cosine", warmup=0.03, eval_every=200),
    healthy("sft", "log1_no_warmup", "SFT, 600 steps logged every step, linear decay, no warm-up: every "
            "batch's loss and grad norm visible, spikes included", max_steps=600, logging_steps=1),
    healthy("sft", "three_epochs", "SFT, 3 epochs of 500 steps, 100-step warm-up, evals every 50: the training "
            "loss drops sharply at each epoch boundary (memorisation) while the eval loss stays flat",
            max_steps=1500, schedule="cosine", warmup=100, epochs=3, eval_every=50),
    healthy("sft", "lora_constant", "SFT with LoRA at learning rate 2e-4, constant_with_warmup (100 steps), "
            "1000 steps: a fast early fall and a long flat tail", max_steps=1000, learning_rate=2e-4,
            schedule="constant_with_warmup", warmup=100, knobs={"loss_rate": 6.0, "grad_start": 1.2,
                                                                 "grad_end": 0.35}),
    # ---------------------------------------------------------------- dpo
    healthy("dpo", "default", "DPO, beta 0.1, 1200 steps, 100-step warm-up, linear decay, evals every 300: "
            "margins to ~1.7, accuracies to ~0.9", max_steps=1200, warmup=100, learning_rate=5e-7,
            eval_every=300),
    healthy("dpo", "log1_warmup", "DPO logged every step with a 100-step warm-up: accuracies and rewards exactly "
            "0.0 at step 1 (policy = reference), loss ~ln 2 through the warm-up (margins take off after it)",
            max_steps=800, logging_steps=1, warmup=100, schedule="cosine", learning_rate=5e-7,
            knobs={"margin_delay": 0.3}),
    healthy("dpo", "noisy_preferences", "DPO on noisy preference data: accuracy plateaus at 0.6-0.65 and margins "
            "stay small", max_steps=1500, warmup=0.1, schedule="cosine", learning_rate=5e-7,
            knobs={"accuracy_max": 0.63, "margin_max": 0.45}),
    healthy("dpo", "ipo", "DPO with loss_type ['ipo'] (beta 0.1): the loss starts at 1/(4 beta^2) = 25, not ln 2",
            max_steps=1000, warmup=50, learning_rate=5e-7, config={"loss_type": ["ipo"]}, knobs={"margin_max": 0.45}),
    healthy("dpo", "no_warmup_log1", "DPO logged every step with no warm-up and a constant learning rate: the "
            "rate stops rising at step 2, while margins are still ~0 and accuracy still 0.0 at step 1",
            max_steps=600, logging_steps=1, schedule="constant", learning_rate=5e-7),
    # ---------------------------------------------------------------- grpo
    healthy("grpo", "default", "GRPO, beta 0 (no kl key), accuracy and format rewards, 1000 steps logged every "
            "10: reward ~1.2 -> ~1.5 (of 2), frac_reward_zero_std 0.1-0.4 and moving", max_steps=1000),
    healthy("grpo", "kl_beta", "GRPO with beta 0.04: kl 0 at step 1, ~1e-4 growing to ~1e-3 with isolated 5x "
            "spikes; cosine with a 5% warm-up", max_steps=1500, schedule="cosine", warmup=0.05,
            config={"beta": 0.04}),
    healthy("grpo", "sparse_reward", "GRPO on a hard task (4 prompts x 8 completions per step, beta 0.01), logged "
            "every step: early on most steps have every group all-wrong (frac_reward_zero_std 1.0, reward 0, "
            "grad_norm ~0.01 from the KL term alone) and a step with one solved group has grad_norm ~0.3; the "
            "solved fraction grows as the model learns", max_steps=500, logging_steps=1, config={"beta": 0.01},
            knobs={"skill": (-5.8, -2.6), "difficulty_sd": 1.3, "prompts": 4, "funcs": (ACCURACY,),
                   "grad_signal": 1.0, "grad_floor": 0.01}),
    healthy("grpo", "vllm", "GRPO generating with vLLM (use_vllm, sequence_mask correction): "
            "sampling/importance_sampling_ratio/mean ~0.976, logp difference ~0.012, small clip ratios",
            max_steps=800, config={"use_vllm": True, "vllm_importance_sampling_mode": "sequence_mask"}),
    healthy("grpo", "three_rewards_log1", "GRPO with three reward functions (accuracy, format, a continuous "
            "length reward), num_iterations 2 (clip ratios non-zero), logged every step: reward std varies a "
            "lot from step to step", max_steps=400, logging_steps=1, config={"num_iterations": 2},
            knobs={"funcs": THREE_REWARDS}),
    # ---------------------------------------------------------------- rloo
    healthy("rloo", "default", "RLOO with its defaults (beta 0.05, 2 generations): k1 kl that can be negative, "
            "frac_reward_zero_std ~0 once the KL penalty enters the rewards", max_steps=1000),
    healthy("rloo", "beta0_g8", "RLOO with beta 0 and 8 generations: no kl key, frac_reward_zero_std 0.2-0.5",
            max_steps=800, warmup=0.05, config={"beta": 0.0, "num_generations": 8}),
    healthy("rloo", "log1", "RLOO logged every step (beta 0.05, 4 generations)", max_steps=400, logging_steps=1,
            config={"num_generations": 4}),
    # ---------------------------------------------------------------- kto
    healthy("kto", "default", "KTO, 1000 steps, 10% warm-up: loss 0.5 at step 1 -> ~0.3, kl clamped at 0 early",
            max_steps=1000, warmup=0.1, learning_rate=5e-7),
    healthy("kto", "log1", "KTO logged every step: kl exactly 0.0 on many early rows (the clamp), batch noise "
            "in every key", max_steps=500, logging_steps=1, warmup=50, learning_rate=5e-7),
    healthy("kto", "imbalanced_log1", "KTO with 90% desirable examples and batches of 8, logged every step: "
            "rewards/rejected, logps/rejected and rewards/margins are missing on ~40% of the rows",
            max_steps=400, logging_steps=1, warmup=40, learning_rate=5e-7, knobs={"desirable": 0.9, "batch": 8},
            config={"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}),
    # ---------------------------------------------------------------- reward
    healthy("reward", "default", "Reward model, full fine-tuning at 1e-5, 1000 steps, evals every 250: loss "
            "~0.69 -> ~0.5, accuracy -> ~0.74, the score offset wandering", max_steps=1000, learning_rate=1e-5,
            warmup=0.03, eval_every=250),
    healthy("reward", "log1", "Reward model logged every step: accuracy quantised to 1/32, large per-batch noise",
            max_steps=400, logging_steps=1, learning_rate=1e-5),
    healthy("reward", "noisy_centered", "Reward model on noisy preferences with center_rewards_coefficient 0.01: "
            "accuracy plateaus at ~0.66", max_steps=800, learning_rate=1e-5,
            knobs={"accuracy_max": 0.66, "margin_max": 0.7}, config={"center_rewards_coefficient": 0.01}),
    # ---------------------------------------------------------------- the other TRL 1.16 trainers
    healthy("distillation", "default", "On-policy distillation (stable in TRL 1.16): divergence ~0.5 -> ~0.15, "
            "completions well under max_completion_length", max_steps=800, warmup=0.05),
    healthy("distillation", "log1", "Distillation logged every step", max_steps=300, logging_steps=1),
    healthy("gkd", "default", "GKD: only the Trainer's keys; generalized JSD ~0.32 -> ~0.11", max_steps=800,
            schedule="cosine", warmup=0.05, eval_every=200),
    healthy("gold", "log1", "GOLD logged every step: each row has on_policy_loss or off_policy_loss, never both "
            "(lmbda 0.5)", max_steps=300, logging_steps=1, learning_rate=1e-6),
    healthy("a2po", "default", "A*-PO: reward 0.34 -> 0.6 against a fixed v_star, implicit reward tracking the "
            "advantage", max_steps=600),
    healthy("async_distillation", "default", "Async distillation (vLLM rollouts, teacher server), logged every "
            "step, constant rate: staleness 1-2 of max 4", max_steps=300, logging_steps=1, schedule="constant"),
    healthy("async_grpo", "default", "Async GRPO with its defaults (logging every step, constant rate, 8 "
            "generations): ratio ~1, staleness ~1.3 of max 4", max_steps=400, logging_steps=1,
            schedule="constant"),
    healthy("cpo", "default", "CPO (reference-free): margins start positive, loss = preference term + nll_loss",
            max_steps=800, warmup=0.1),
    healthy("gmpo", "default", "GMPO (GRPO keys, epsilon 0.4), beta 0", max_steps=600),
    healthy("iw_opd", "default", "IW-OPD: importance weights in [1, 1.5], every completion on-policy",
            max_steps=600, warmup=0.05),
    healthy("online_dpo", "default", "Online DPO with a reward model: per-sequence objective/kl 0 -> ~9, "
            "val/contain_eos_token ~0.95, loss rounded to 4 decimals", max_steps=600, warmup=0.05),
    healthy("orpo", "default", "ORPO: log_odds_ratio from ~-0.6 up, log_odds_chosen positive and growing",
            max_steps=800, warmup=0.1),
    healthy("orpo", "rejected_more_likely", "ORPO on data whose rejected answers are per token more likely than "
            "the chosen ones under the base model: log_odds_chosen starts at ~-0.5 (log_odds_ratio ~-0.95, below "
            "-ln 2) and climbs past 0 as training goes on", max_steps=800, warmup=0.1,
            knobs={"chosen_logp": lambda sim, c: c - 0.3}),
    healthy("sdft", "default", "SDFT: distillation loss logged under self_distillation/ and sdft/", max_steps=400),
    healthy("sdpo", "default", "SDPO: success fractions rising, flat groups ~0.3-0.5", max_steps=500),
    healthy("server_distillation", "default", "Server distillation (the distillation keys, teacher served)",
            max_steps=500, warmup=0.05),
    healthy("tpo", "default", "TPO (reference-free, beta 0.01): loss = sigmoid term + gold NLL", max_steps=600,
            warmup=0.1),
]


FAILURE_RUNS = [
    # ---------------------------------------------------------------- gradients (generic)
    failing("sft", "grad_norm_nonfinite", "SFT diverges from step 897: grad_norm 6x, 25x, 140x, inf at 900, then NaN; "
            "with the default NaN filter the logged loss becomes exactly 0.0, entropy NaN, token accuracy 0",
            f.grad_norm_nonfinite(897, 10, nan_keys=("entropy",), zero_keys=("mean_token_accuracy",)),
            max_steps=1500, schedule="cosine", warmup=0.03, expect=("grad_norm_nonfinite",)),
    failing("dpo", "grad_norm_nonfinite", "DPO diverges from step 497 with logging_nan_inf_filter=False: grad_norm "
            "6x, 25x, 140x, inf at 500, then NaN, loss, rewards and logps NaN, accuracy 0",
            f.grad_norm_nonfinite(497, 1, keep_loss_filter=False,
                                  nan_keys=("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
                                            "logps/rejected", "entropy", "logits/chosen", "logits/rejected"),
                                  zero_keys=("rewards/accuracies", "mean_token_accuracy")),
            max_steps=700, logging_steps=1, warmup=100, learning_rate=5e-7,
            expect=("grad_norm_nonfinite", "loss_nonfinite", "grad_norm_spike")),
    failing("grpo", "grad_norm_nonfinite", "GRPO with vLLM diverges from step 597 (beta 0.04): grad_norm inf at "
            "600, then NaN; kl, entropy and the sampling/* keys logged as null (every value in the window NaN), "
            "loss 0.0 through the NaN filter; vLLM, synced with NaN weights, emits tokens that never end: every "
            "reward 0, every completion cut at 512",
            f.grad_norm_nonfinite(597, 10, nan_keys=GRPO_NAN_KEYS, fill=GRPO_NAN_FILL),
            max_steps=1000, config={"beta": 0.04, "use_vllm": True}, expect=("grad_norm_nonfinite",)),
    failing("sft", "grad_norm_zero", "SFT whose parameters are all frozen from step 700 (a freezing callback "
            "never unfreezes): grad_norm exactly 0, the loss stops improving", f.grad_norm_zero(700, 10),
            max_steps=1500, warmup=0.03, schedule="cosine", expect=("grad_norm_zero",)),
    failing("dpo", "grad_norm_zero", "DPO frozen from step 400, logged every step", f.grad_norm_zero(400, 1),
            max_steps=700, logging_steps=1, warmup=100, learning_rate=5e-7, expect=("grad_norm_zero",)),
    failing("kto", "grad_norm_zero", "KTO frozen from step 500", f.grad_norm_zero(500, 10), max_steps=1000,
            warmup=0.1, learning_rate=5e-7, expect=("grad_norm_zero",)),
    failing("sft", "grad_norm_spike", "SFT with a 20x grad-norm spike at step 1000 (then 8x, 3x) and a loss "
            "jump that takes ~100 steps to settle", f.grad_norm_spike(1000, 10), max_steps=2000,
            schedule="cosine", warmup=0.03, expect=("grad_norm_spike",)),
    failing("grpo", "grad_norm_spike", "GRPO with a 20x grad-norm spike at step 300, logged every step",
            f.grad_norm_spike(300, 1), max_steps=500, logging_steps=1, expect=("grad_norm_spike",)),
    failing("kto", "grad_norm_spike", "KTO with a 20x grad-norm spike at step 600", f.grad_norm_spike(600, 10),
            max_steps=1000, warmup=0.1, learning_rate=5e-7, expect=("grad_norm_spike",)),
    # ---------------------------------------------------------------- loss (generic)
    failing("sft", "loss_spike", "SFT loss jumps 3x at step 800 for ~10 steps, grad norm 5x, recovers over "
            "~150 steps", f.loss_spike(800, 10, along={"mean_token_accuracy": -0.1, "entropy": 0.3}),
            max_steps=1500, warmup=0.03, schedule="cosine", expect=("loss_spike",)),
    failing("dpo", "loss_spike", "DPO loss jumps 3x at step 450 (logged every step), accuracy and margins dip",
            f.loss_spike(450, 1, along={"rewards/accuracies": -0.35, "rewards/margins": -0.7}),
            max_steps=700, logging_steps=1, warmup=100, learning_rate=5e-7, expect=("loss_spike",)),
    failing("reward", "loss_spike", "Reward-model loss jumps 3x at step 500, accuracy and margin dip",
            f.loss_spike(500, 10, along={"accuracy": -0.3, "margin": -0.6}), max_steps=1000, learning_rate=1e-5,
            warmup=0.03, expect=("loss_spike",)),
    failing("dpo", "loss_zero", "DPO with loss_type ['hinge']: from step 700 every pair is past the hinge "
            "(margin > 1), so loss and gradient are exactly 0", f.loss_zero_from(700, 10), max_steps=1200,
            warmup=100, learning_rate=5e-7, config={"loss_type": ["hinge"]}, expect=("loss_zero",)),
    failing("gkd", "loss_zero", "GKD resumed at step 500 with the student's own checkpoint as the teacher: the "
            "JSD and the gradient are exactly 0", f.loss_zero_from(500, 10), max_steps=900, warmup=0.05,
            schedule="cosine", expect=("loss_zero",)),
    failing("sft", "all_labels_masked", "SFT reaches a shard of over-long prompts at step 600 (truncation keeps "
            "the start): no completion token left, loss/entropy/mean_token_accuracy/grad_norm exactly 0, "
            "num_tokens still growing", f.sft_all_labels_masked(600, 10), max_steps=1200, warmup=0.03,
            config={"completion_only_loss": True}, expect=("sft_all_labels_masked", "loss_zero")),
    failing("sft", "no_learning", "SFT with LoRA adapters never handed to the optimizer: learning rate normal, "
            "loss a noisy plateau at its initial ~1.85 (sigma 0.01)", f.no_learning(51, 10), max_steps=800,
            warmup=50, schedule="cosine", expect=("sft_loss_flat",)),
    failing("cpo", "no_learning", "CPO whose optimizer holds no trainable parameter: loss flat at its initial "
            "value", f.no_learning(81, 10), max_steps=800, warmup=0.1, expect=("no_learning",)),
    failing("gkd", "no_learning", "GKD with the student frozen by mistake (requires_grad False on the "
            "embeddings tied to every layer): loss flat at ~0.32", f.no_learning(41, 1), max_steps=400,
            logging_steps=1, warmup=40, expect=("no_learning",)),
    failing("sft", "overfitting", "SFT, 4 epochs of a small set, evals every 50: from step 600 the eval loss "
            "rises while the training loss keeps falling", f.overfitting(600, 50, 0.35), max_steps=1200,
            epochs=4, eval_every=50, warmup=50, schedule="cosine", expect=("overfitting",)),
    failing("dpo", "overfitting", "DPO, 3 epochs, evals every 50: eval loss rising and eval accuracy falling "
            "from step 500", f.overfitting(500, 50, 0.25), max_steps=1200, epochs=3, eval_every=50, warmup=100,
            learning_rate=5e-7, expect=("overfitting",)),
    failing("reward", "overfitting", "Reward model, evals every 50: eval loss rising from step 400",
            f.overfitting(400, 50, 0.3), max_steps=900, eval_every=50, learning_rate=1e-5, epochs=3,
            expect=("overfitting",)),
    # ---------------------------------------------------------------- learning rate, absent keys (generic)
    failing("sft", "lr_zero_early", "SFT whose scheduler was built for 600 steps of a 1500-step run: the rate "
            "is 0 from step 600", f.lr_zero_early(600, 10, 1500), max_steps=1500, warmup=0.03,
            expect=("lr_zero_early",)),
    failing("dpo", "lr_zero_early", "DPO whose linear schedule ends at step 400 of 1000",
            f.lr_zero_early(400, 10, 1000), max_steps=1000, warmup=100, learning_rate=5e-7, expect=("lr_zero_early",)),
    failing("grpo", "lr_zero_early", "GRPO whose schedule ends at step 250 of 600 (logged every step)",
            f.lr_zero_early(250, 1, 600), max_steps=600, logging_steps=1, expect=("lr_zero_early",)),
    failing("sft", "loss_absent", "SFT where a custom callback pops `loss` from the logs for 200 steps (from "
            "step 600) while every other key keeps arriving", f.key_absent("loss", 600, 10, 200), max_steps=1200,
            warmup=0.03, expect=("loss_absent",)),
    failing("grpo", "reward_null", "GRPO whose reward server is down from step 400 for 200 steps: reward and "
            "per-function keys logged as null, gradient 0",
            f.key_null(("reward", "reward_std", "rewards/accuracy_reward/mean", "rewards/accuracy_reward/std",
                        "rewards/think_format_reward/mean", "rewards/think_format_reward/std"), 400, 10, 200),
            max_steps=900, expect=("grad_norm_zero", "grpo_reward_missing", "grpo_no_learning_signal")),
    failing("kto", "undesirable_vanished", "KTO where a filtering bug drops every undesirable example from step "
            "500: the rejected keys and the margin stop arriving for good", f.kto_class_vanished(500, 10),
            max_steps=1000, warmup=0.1, learning_rate=5e-7, expect=("kto_undesirable_absent",)),
    failing("kto", "desirable_vanished", "KTO logged every step whose label mapping turns every label False from "
            "step 300 (a resumed run with a new data loader): the chosen keys and the margin stop arriving",
            f.kto_class_vanished(300, 1, side="chosen"), max_steps=600, logging_steps=1, warmup=50,
            learning_rate=5e-7, expect=("kto_desirable_absent",)),
    # ---------------------------------------------------------------- dpo
    failing("dpo", "no_preference_signal", "DPO (beta 0.1) syncing the reference to the policy every step: loss "
            "~ln 2 and margins 0 +- 0.005 after the 100-step warm-up", f.dpo_no_signal(101, 10), max_steps=800,
            warmup=100, learning_rate=5e-7, expect=("dpo_loss_stuck_ln2", "dpo_margin_near_zero")),
    failing("dpo", "margin_collapse", "DPO resumed at step 600 with the policy as reference (synced every step): "
            "margins fall from ~1.3 to 0.01 +- 0.005", f.dpo_margin_collapse(600, 10), max_steps=1200, warmup=100,
            learning_rate=5e-7, expect=("dpo_margin_collapse",)),
    failing("dpo", "likelihood_displacement", "DPO where from step 400 both logps/chosen and logps/rejected fall "
            "steadily while the margins keep growing", f.dpo_likelihood_displacement(400, 10), max_steps=1200,
            warmup=100, learning_rate=5e-7, expect=("dpo_likelihood_displacement",)),
    failing("dpo", "over_optimisation", "DPO on a small deterministic preference set: from the second epoch "
            "(step 400) margins grow without bound, accuracies pin at 1.0, rewards/chosen goes far below 0",
            f.dpo_over_optimisation(400, 10), max_steps=1200, epochs=3, warmup=100, learning_rate=5e-7,
            expect=("dpo_over_optimisation", "dpo_likelihood_displacement")),
    failing("dpo", "accuracy_below_chance", "DPO reaching a second data source with chosen and rejected swapped "
            "at step 500: accuracy ~0.3, loss above ln 2", f.dpo_below_chance(500, 1), max_steps=800,
            logging_steps=1, warmup=100, learning_rate=5e-7, expect=("dpo_accuracy_below_chance",)),
    failing("dpo", "completions_masked", "DPO reaching a shard of over-long prompts at step 500: logps exactly "
            "0, every reward 0, loss exactly ln 2", f.dpo_completions_masked(500, 10), max_steps=1000, warmup=100,
            learning_rate=5e-7, expect=("dpo_completions_fully_masked",)),
    # ---------------------------------------------------------------- kto, reward, orpo
    failing("kto", "loss_stuck", "KTO with learning_rate 5e-10 (a typo for 5e-7): loss flat at 0.5, kl 0",
            f.kto_stuck(101, 10), max_steps=800, warmup=100, expect=("kto_loss_stuck",)),
    failing("reward", "not_learning", "Reward model with LoRA and the score head not in modules_to_save: "
            "accuracy ~0.5, loss ~ln 2", f.reward_not_learning(31, 10), max_steps=800, learning_rate=1e-4,
            warmup=30, expect=("reward_model_not_learning",)),
    failing("reward", "accuracy_below_chance", "Reward model reaching a data source with swapped labels at "
            "step 500: accuracy ~0.3", f.reward_below_chance(500, 10), max_steps=1000, learning_rate=1e-5,
            expect=("reward_accuracy_below_chance",)),
    failing("cpo", "accuracy_below_chance", "CPO reaching a data source with chosen and rejected swapped at step "
            "400: margins negative, accuracy ~0.25 (the model's learned preference, mirrored)",
            f.reference_free_below_chance(400, 10), max_steps=800, warmup=0.1,
            expect=("cpo_accuracy_below_chance",)),
    failing("orpo", "log_odds_collapse", "ORPO where from step 500 the chosen likelihood falls below the "
            "rejected: log_odds_chosen negative, log_odds_ratio below -ln 2", f.orpo_log_odds_collapse(500, 10),
            max_steps=1000, warmup=0.1, expect=("orpo_log_odds_collapse", "orpo_nll_rising")),
    # ---------------------------------------------------------------- online RL
    failing("grpo", "no_learning_signal", "GRPO reaching a shard of far-too-hard prompts at step 500: every "
            "completion scores 0, frac_reward_zero_std -> 1.0, gradient 0 (beta 0)",
            f.rl_no_signal(500, 10, "too_hard"), max_steps=1000, knobs={"funcs": (ACCURACY,)},
            expect=("grpo_no_learning_signal", "grpo_reward_function_constant")),
    failing("rloo", "no_learning_signal", "RLOO (beta 0, 8 generations) reaching a shard of trivial prompts at "
            "step 400: every completion solves it, frac_reward_zero_std -> 1.0",
            f.rl_no_signal(400, 10, "too_easy"), max_steps=800, config={"beta": 0.0, "num_generations": 8},
            expect=("grpo_no_learning_signal", "rloo_no_reward_variation")),
    failing("gmpo", "no_learning_signal", "GMPO resumed at step 300 with greedy sampling: a group's completions "
            "are copies, frac_reward_zero_std exactly 1.0 (logged every step)",
            f.rl_no_signal(300, 1, "identical"), max_steps=500, logging_steps=1, expect=("grpo_no_learning_signal",)),
    failing("rloo", "no_learning_signal_kl", "RLOO with its default beta 0.05 reaching a shard of far-too-hard "
            "prompts at step 400: every completion scores 0 (reward and reward_std exactly 0), but the KL penalty "
            "enters the rewards before the group std, so frac_reward_zero_std stays ~0",
            f.rl_no_signal(400, 10, "too_hard"), max_steps=800, expect=("rloo_no_reward_variation",)),
    failing("async_grpo", "no_learning_signal", "Async GRPO reaching a shard of far-too-hard prompts at step 150: "
            "every completion scores 0, the per-group reward_std is exactly 0 (there is no frac_reward_zero_std); "
            "logging every 10 steps",
            f.rl_no_signal(150, 10, "too_hard"), max_steps=400, logging_steps=10, schedule="constant",
            expect=("async_grpo_no_learning_signal",)),
    failing("grpo", "completions_clipped", "GRPO whose completions outgrow max_completion_length 512 from step "
            "500: clipped_ratio -> ~0.9, mean_length at the limit", f.completions_clipped(500, 10, 512),
            max_steps=1000, expect=("grpo_completions_truncated", "grpo_completions_all_clipped")),
    failing("rloo", "completions_clipped", "RLOO (max_completion_length 256) with completions running to the "
            "limit from step 300, logged every step", f.completions_clipped(300, 1, 256), max_steps=500,
            logging_steps=1, config={"max_completion_length": 256, "num_generations": 4},
            expect=("grpo_completions_truncated", "grpo_completions_all_clipped")),
    failing("distillation", "completions_clipped", "Distillation whose student stops emitting EOS at step 400",
            f.completions_clipped(400, 10, 512), max_steps=800, expect=("distillation_completions_clipped",)),
    failing("grpo", "dead_reward_function", "GRPO with three reward functions: think_format_reward returns 0 "
            "for everything from step 400 (std exactly 0) while the others vary",
            f.dead_reward_function(400, 10, "think_format_reward"), max_steps=900, knobs={"funcs": THREE_REWARDS},
            expect=("grpo_reward_function_constant",)),
    failing("rloo", "dead_reward_function", "RLOO (beta 0, 8 generations) whose accuracy_reward parser breaks at "
            "step 300, logged every step", f.dead_reward_function(300, 1, "accuracy_reward"), max_steps=500,
            logging_steps=1, config={"beta": 0.0, "num_generations": 8}, expect=("grpo_reward_function_constant",)),
    failing("grpo", "entropy_collapse", "GRPO whose entropy collapses to 0.01 from step 500",
            f.entropy_collapse(500, 10), max_steps=1000, expect=("grpo_entropy_collapse", "grpo_entropy_near_zero")),
    failing("rloo", "entropy_collapse", "RLOO whose entropy collapses to 0.01 from step 400",
            f.entropy_collapse(400, 10), max_steps=800, config={"num_generations": 4},
            expect=("grpo_entropy_collapse", "grpo_entropy_near_zero")),
    failing("grpo", "entropy_explosion", "GRPO producing garbled text from step 600: entropy ~2.5, reward "
            "falling, completions at the limit", f.entropy_explosion(600, 10, 512), max_steps=1000,
            expect=("grpo_entropy_explosion", "grpo_completions_truncated")),
    failing("grpo", "kl_blowup", "GRPO (beta 0.04) whose kl explodes from ~1e-3 to 12 after step 700, the reward "
            "collapsing", f.kl_blowup(700, 10), max_steps=1200, config={"beta": 0.04}, expect=("grpo_kl_high",)),
    failing("rloo", "kl_blowup", "RLOO (beta 0.05) whose k1 kl blows up to ~10 after step 300 (logged every "
            "step)", f.kl_blowup(300, 1, to=10.0), max_steps=450, logging_steps=1, config={"num_generations": 4},
            expect=("rloo_kl_high",)),
    failing("grpo", "kl_creep", "GRPO (beta 0.01) whose kl climbs to 0.1 in 100 steps from step 500, then creeps "
            "to 0.5 over 500 steps", f.kl_creep(500, 10), max_steps=1200, config={"beta": 0.01},
            expect=("grpo_kl_rising", "grpo_kl_high")),
    failing("rloo", "kl_creep", "RLOO (beta 0.05) whose k1 kl climbs to 0.1 in 100 steps from step 400, then "
            "creeps to 0.5 over 500 steps", f.kl_creep(400, 10), max_steps=1000, config={"num_generations": 4},
            expect=("rloo_kl_rising", "rloo_kl_high")),
    failing("grpo", "clip_saturation", "GRPO with num_iterations 4 resumed at step 400 with learning_rate 1e-5 "
            "(10x): clip_ratio/region_mean 0.004 -> ~0.3", f.clip_saturation(400, 10), max_steps=900,
            config={"num_iterations": 4}, expect=("grpo_clip_ratio_saturated",)),
    failing("grpo", "reward_std_spike", "GRPO with a length bonus that explodes on degenerate outputs for 5 "
            "steps at step 300: reward_std 6x (logged every step)", f.reward_std_spike(300, 1), max_steps=500,
            logging_steps=1, knobs={"funcs": THREE_REWARDS}, expect=("grpo_reward_std_spike",)),
    failing("grpo", "vllm_weights_not_synced", "GRPO with vLLM whose weights stop syncing at step 400: logp "
            "difference 0.012 -> 0.3, importance_sampling_ratio/mean 0.976 -> 0.3", f.vllm_weights_not_synced(400, 10),
            max_steps=800, config={"use_vllm": True, "vllm_importance_sampling_mode": "sequence_mask"},
            expect=("grpo_vllm_logp_mismatch", "grpo_is_ratio_collapse")),
    failing("grpo", "vllm_logp_difference_high", "GRPO with vLLM resumed at step 250 with an fp8 KV cache: "
            "sampling logp difference 0.012 -> 0.09 (logged every step)", f.vllm_logp_drift(250, 1),
            max_steps=400, logging_steps=1, config={"use_vllm": True}, expect=("grpo_vllm_logp_mismatch",)),
    failing("async_grpo", "off_policy_drift", "Async GRPO whose generation outruns training from step 150: "
            "staleness at its cap 4, stale samples dropped, ratio drifting to ~1.25, kl and clipping up",
            f.async_staleness(150, 1), max_steps=300, logging_steps=1, schedule="constant",
            expect=("async_grpo_staleness_at_cap", "async_grpo_off_policy_ratio", "async_grpo_rollout_kl_high")),
    failing("online_dpo", "missing_eos", "Online DPO resumed at step 300 with a tokenizer that lost the EOS id: "
            "val/contain_eos_token 0.95 -> 0.1", f.online_dpo_missing_eos(300, 10), max_steps=600, warmup=0.05,
            expect=("online_dpo_missing_eos",)),
    failing("grpo", "reward_hacking", "GRPO with a length reward: from step 400 completions grow towards the "
            "limit while the reward keeps rising and accuracy stalls", f.reward_hacking(400, 10, 1024),
            max_steps=1000, config={"max_completion_length": 1024}, knobs={"funcs": (ACCURACY, LENGTH)},
            expect=("grpo_length_hacking",)),
    failing("a2po", "reward_collapse", "A*-PO resumed at step 300 with learning_rate 1e-5 (10x): the policy "
            "degrades below the reference (reward ~0.55 -> ~0.11), implicit_reward leaves the advantage",
            f.a2po_reward_collapse(300, 10), max_steps=600, expect=("a2po_reward_collapse",)),
    failing("sdpo", "no_successful_rollouts", "SDPO reaching far-too-hard prompts at step 250: no rollout "
            "succeeds, self-distillation inactive, every group flat", f.sdpo_no_success(250, 10), max_steps=500,
            expect=("sdpo_self_distillation_inactive", "grad_norm_zero")),
    # ---------------------------------------------------------------- sft and distillation family
    failing("sft", "grad_norm_absent", "SFT resumed at step 700 with a metrics-filtering callback that strips "
            "grad_norm from the logs for good while every other key keeps arriving",
            f.key_absent("grad_norm", 700, 10, None), max_steps=1200, warmup=0.03,
            expect=("grad_norm_absent",)),
    failing("gold", "on_policy_loss_blowup", "GOLD resumed at step 500 with temperature 2.0 instead of 0.9: "
            "on_policy_loss climbs 4x within 30 steps, off_policy_loss unchanged (logging every 10 steps, so "
            "the logged loss mixes both branches)", f.gold_on_policy_blowup(500, 10), max_steps=800,
            learning_rate=1e-6, expect=("gold_on_policy_loss_blowup", "loss_spike")),
    failing("distillation", "entropy_collapse", "On-policy distillation (reverse KL) resumed at step 400 with a "
            "10x learning rate: the student's entropy collapses from ~0.6 to ~0.03 nats",
            f.student_entropy_collapse(400, 10), max_steps=800, warmup=0.05,
            expect=("distillation_entropy_collapse",)),
    failing("async_distillation", "entropy_explosion", "Async distillation whose student starts producing "
            "garbled text at step 150 (logged every step): entropy 0.6 -> 2.4 nats, completions growing",
            f.student_entropy_explosion(150, 1, 2048), max_steps=300, logging_steps=1, schedule="constant",
            expect=("distillation_entropy_explosion",)),
    # ---------------------------------------------------------------- several processes (the callback's rank keys)
    failing("sft", "rank_straggler", "SFT on 8 GPUs whose rank 5 is throttled from step 600: its compute time per "
            "step rises to 1.8x the others' (gathered by the callback every 10 logged rows)",
            f.rank_straggler(600, 10, slow_rank=5), max_steps=1200, warmup=0.03, schedule="cosine",
            expect=("rank_straggler",)),
    failing("grpo", "rank_memory_imbalance", "GRPO on 8 GPUs whose rank 0 keeps gathered evaluation generations "
            "from step 500: its peak memory grows from ~18 to ~31 GiB while the others stay put",
            f.rank_memory_imbalance(500, 10), max_steps=1000, expect=("rank_memory_imbalance",)),
]

SCENARIOS = HEALTHY_RUNS + FAILURE_RUNS
