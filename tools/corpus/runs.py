"""A corpus run: its scenario (trainer, schedule, configuration, failure) and how it is simulated."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from . import schedules
from .failures import Failure
from .sim import Sim
from .trainers import TRAINERS, TRAINING_ARGUMENTS

HEALTHY, FAILURE = "healthy", "failure"


@dataclass
class Scenario:
    kind: str  # healthy | failure
    trainer: str
    name: str
    description: str
    max_steps: int
    logging_steps: int = 10
    schedule: str = "linear"
    warmup: float = 0  # steps, or a ratio of the run when < 1 (transformers 5's warmup_steps)
    learning_rate: float | None = None  # the trainer's default when None
    epochs: float = 1.0  # passes over the data within max_steps (for the fractional `epoch` key)
    eval_every: int | None = None
    config: dict = field(default_factory=dict)
    knobs: dict = field(default_factory=dict)
    failure: Failure | None = None
    # the builtin rules that must fire on this failure run by detect_by: filled in by the rule writers
    expect_rules: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.kind}/{self.trainer}/{self.name}"

    @property
    def seed(self) -> int:
        """Fixed by the run's path: adding or reordering runs never changes another run."""
        return zlib.crc32(self.path.encode())

    @property
    def warmup_steps(self) -> int:
        return schedules.warmup_steps_of(self.warmup, self.max_steps)

    def run_config(self) -> dict:
        """The configuration the callback would keep in run.json: TrainingArguments, the trainer's
        config defaults, this run's settings, and what the failure changed."""
        trainer = TRAINERS[self.trainer]
        config = {**TRAINING_ARGUMENTS, **trainer.defaults}
        config.update({"max_steps": self.max_steps, "logging_steps": self.logging_steps,
                       "lr_scheduler_type": self.schedule, "warmup_steps": self.warmup})
        if self.learning_rate is not None:
            config["learning_rate"] = self.learning_rate
        config["eval_strategy"] = "steps" if self.eval_every else "no"
        if self.eval_every:
            config["eval_steps"] = self.eval_every
        config.update(self.config)
        if self.failure is not None:
            config.update(self.failure.config)
        return config

    def simulate(self) -> tuple[list[dict], dict]:
        """The rows `on_log` would have received, and the run's configuration."""
        config = self.run_config()
        trainer = TRAINERS[self.trainer]
        sim = Sim(trainer=self.trainer, max_steps=self.max_steps, logging_steps=self.logging_steps,
                  peak_lr=config["learning_rate"], warmup=self.warmup_steps, schedule=self.schedule, seed=self.seed,
                  steps_per_epoch=self.max_steps / self.epochs, eval_every=self.eval_every,
                  null_for_nan=trainer.null_for_nan, loss_nan_filter=config["logging_nan_inf_filter"],
                  samples_per_step=config["per_device_train_batch_size"] * config["gradient_accumulation_steps"])
        knobs = dict(self.knobs)
        if self.failure is not None:
            knobs.update(self.failure.knobs)
            if self.failure.before is not None:
                self.failure.before(sim)
        trainer.model(sim, config, knobs)
        if self.failure is not None and self.failure.after is not None:
            self.failure.after(sim)
        return sim.rows(), config
