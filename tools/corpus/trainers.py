"""Every TRL 1.16 trainer: its healthy model, its config class and the defaults of its config.

Defaults are read from the TRL 1.16.0 source (trl/trainer/*_config.py, trl/experimental/*/*_config.py):
e.g. DPOConfig learning_rate 1e-6, beta 0.1, loss_type ["sigmoid"]; GRPOConfig beta 0.0,
num_generations 8, max_completion_length 512, loss_type "dapo"; RLOOConfig beta 0.05,
num_generations 2; AsyncGRPOConfig logging_steps 1, lr_scheduler_type "constant". `_BaseConfig`
(trl/trainer/base_config.py) sets logging_steps 10 for every trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import distill, online_rl, preference, supervised
from .sim import Sim

Model = Callable[[Sim, dict, dict], None]


@dataclass(frozen=True)
class Trainer:
    id: str
    config_class: str
    model: Model
    stable: bool
    defaults: dict = field(default_factory=dict)
    null_for_nan: bool = False  # logs None for a metric whose whole window was NaN (GRPO family)


def _rl(**extra) -> dict:
    return {"temperature": 1.0, "use_vllm": False, "num_iterations": 1, "epsilon": 0.2, **extra}


TRAINERS: dict[str, Trainer] = {t.id: t for t in (
    Trainer("sft", "SFTConfig", supervised.sft, True,
            {"learning_rate": 2e-5, "max_length": 1024, "loss_type": "nll", "packing": False}),
    Trainer("dpo", "DPOConfig", preference.dpo, True,
            {"learning_rate": 1e-6, "beta": 0.1, "loss_type": ["sigmoid"], "max_length": 1024}),
    Trainer("grpo", "GRPOConfig", online_rl.grpo, True,
            _rl(learning_rate=1e-6, beta=0.0, num_generations=8, max_completion_length=512, loss_type="dapo",
                scale_rewards="group", mask_truncated_completions=False), null_for_nan=True),
    Trainer("rloo", "RLOOConfig", online_rl.rloo, True,
            _rl(learning_rate=1e-6, beta=0.05, num_generations=2, max_completion_length=512), null_for_nan=True),
    Trainer("kto", "KTOConfig", preference.kto, True,
            {"learning_rate": 1e-6, "beta": 0.1, "loss_type": "kto", "desirable_weight": 1.0,
             "undesirable_weight": 1.0, "max_length": 1024}),
    Trainer("reward", "RewardConfig", preference.reward, True, {"learning_rate": 1e-4, "max_length": 1024}),
    Trainer("distillation", "DistillationConfig", distill.distillation, True,
            {"learning_rate": 1e-6, "beta": 1.0, "max_completion_length": 512, "temperature": 1.0, "use_vllm": False}),
    Trainer("a2po", "A2POConfig", online_rl.a2po, False,
            {"learning_rate": 1e-6, "max_completion_length": 256, "temperature": 1.0}),
    Trainer("async_distillation", "AsyncDistillationConfig", distill.async_distillation, False,
            {"learning_rate": 1e-6, "max_completion_length": 2048, "temperature": 1.0, "beta": 0.0,
             "max_staleness": 4}),
    Trainer("async_grpo", "AsyncGRPOConfig", online_rl.async_grpo, False,
            {"learning_rate": 1e-6, "lr_scheduler_type": "constant", "num_generations": 8,
             "max_completion_length": 2048, "temperature": 1.0, "epsilon": 0.2, "max_staleness": 4},
            null_for_nan=True),
    Trainer("cpo", "CPOConfig", preference.cpo, False,
            {"learning_rate": 1e-6, "beta": 0.1, "loss_type": "sigmoid", "max_length": 1024}),
    Trainer("gkd", "GKDConfig", supervised.gkd, False,
            {"learning_rate": 2e-5, "temperature": 0.9, "lmbda": 0.5, "beta": 0.5, "max_new_tokens": 128,
             "seq_kd": False}),
    Trainer("gmpo", "GMPOConfig", online_rl.gmpo, False,
            _rl(learning_rate=1e-6, beta=0.0, num_generations=8, max_completion_length=512, epsilon=0.4),
            null_for_nan=True),
    Trainer("gold", "GOLDConfig", supervised.gold, False,
            {"learning_rate": 1e-7, "temperature": 0.9, "lmbda": 0.5, "beta": 0.5, "max_completion_length": 128,
             "num_generations": 1, "use_vllm": False}),
    Trainer("iw_opd", "IWOPDConfig", distill.iw_opd, False,
            {"learning_rate": 1e-6, "max_length": 1024, "temperature": 1.0, "lmbda": 1.0, "beta": 1.0,
             "iw_opd_gamma": 0.5, "max_completion_length": 512, "num_generations": 1}),
    Trainer("online_dpo", "OnlineDPOConfig", preference.online_dpo, False,
            {"learning_rate": 5e-7, "max_new_tokens": 64, "max_length": 512, "temperature": 0.9,
             "beta": [0.1], "loss_type": "sigmoid", "use_vllm": False}),
    Trainer("orpo", "ORPOConfig", preference.orpo, False, {"learning_rate": 1e-6, "beta": 0.1, "max_length": 1024}),
    Trainer("sdft", "SDFTConfig", distill.sdft, False,
            {"learning_rate": 1e-6, "num_generations": 8, "max_completion_length": 256, "temperature": 1.0,
             "distillation_alpha": 0.5}),
    Trainer("sdpo", "SDPOConfig", online_rl.sdpo, False,
            _rl(learning_rate=1e-6, num_generations=8, max_completion_length=256, loss_type="dapo", beta=0.0,
                success_reward_threshold=1.0, distillation_alpha=1.0), null_for_nan=True),
    Trainer("server_distillation", "ServerDistillationConfig", distill.server_distillation, False,
            {"learning_rate": 1e-6, "beta": 1.0, "max_completion_length": 512, "temperature": 1.0}),
    Trainer("tpo", "TPOConfig", preference.tpo, False,
            {"learning_rate": 5e-7, "beta": 0.01, "loss_type": "sigmoid", "max_length": 1024}),
)}

# transformers TrainingArguments every run states (TRL's configs inherit them)
TRAINING_ARGUMENTS = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4, "max_grad_norm": 1.0,
                      "seed": 42, "bf16": True, "logging_nan_inf_filter": True, "report_to": ["none"],
                      "num_train_epochs": 3.0, "optim": "adamw_torch"}
