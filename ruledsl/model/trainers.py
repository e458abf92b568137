"""Which TRL trainer a run uses (docs/language.md §8): from its config class, said, written by the callback, or guessed.

Live, the callback knows the TrainingArguments: `trainer_id(args)` walks the
class hierarchy, so `class MyGRPO(GRPOConfig)` is GRPO. In a batch audit the
precedence per run is: `--trainer`; else the `trainer` the callback wrote in
`diagnostics/run.json`; else a guess from the run's metric keys; else unknown
(every rule runs; when the keys fit a few trainers, the rules of any of
them). Config classes and keys come from the metric catalog
(schemas/metric_catalog.yaml), which keeps the trainers TRL removed (PPO, BCO,
…) with their last keys; nothing here imports transformers or trl.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruledsl.model.catalog import EVAL_PREFIX, builtin_catalog

GENERIC_KEYS = {"loss"}  # logged by the Trainer itself whatever the TRL trainer


@dataclass(frozen=True)
class TrainerChoice:
    trainer: str | None
    origin: str  # "option", "metadata", "guess", "unknown"
    detail: str = ""  # the metadata file, or how the guess was made
    # Unknown, but only these trainers fit the run's keys: the rules of any of them run.
    # Empty: nothing is known, and every rule runs (docs/language.md §8).
    candidates: tuple[str, ...] = ()

    def selects(self, rule) -> bool:
        """Whether `rule` (a ruledsl Rule) runs on the run."""
        if self.trainer is not None or not self.candidates:
            return True  # the engine selects by the trainer itself (or runs every rule)
        return any(rule.applies_to(trainer) for trainer in self.candidates)


@functools.cache
def config_classes() -> Mapping[str, str]:
    """Config class name → trainer id, as shipped with ruledsl."""
    return {cls: trainer for trainer, cls in builtin_catalog().config_classes.items()}


def trainer_id(args: Any) -> str | None:
    """The trainer id of `args` (a TrainingArguments instance or class), or None when unknown."""
    cls = args if isinstance(args, type) else type(args)
    known = config_classes()
    for ancestor in cls.__mro__:
        if ancestor.__name__ in known:
            return known[ancestor.__name__]
    return None


def normalize(name: str) -> str:
    """A trainer id from an id or a TRL config class name (`GRPOConfig` → `grpo`)."""
    cleaned = name.strip()
    return config_classes().get(cleaned, cleaned.lower())


def from_metadata(path: Path) -> tuple[str | None, str | None]:
    """(trainer, problem) from a callback's run.json: a problem is said, never raised."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable run metadata ({exc}); trainer not taken from it"
    trainer = data.get("trainer") if isinstance(data, dict) else None
    if trainer is None:
        return None, None
    if not isinstance(trainer, str) or not trainer.strip():
        return None, f"'trainer' should be a trainer id, not {trainer!r}; ignored"
    unknown = builtin_catalog().unknown_trainer(normalize(trainer))
    if unknown is not None:  # docs/language.md §8: the run's trainer is unknown, with a warning
        return None, f"{path}: {unknown.message}; the run's trainer is unknown"
    return normalize(trainer), None


def guess(keys: Iterable[str]) -> tuple[str | None, str, tuple[str, ...]]:
    """The one trainer the run's keys are consistent with, or None (and why), and
    every trainer they are consistent with.

    A trainer is consistent when it may log every key of the run that some
    trainer is known for (a placeholder key such as `rewards/{reward_func_name}/mean`
    matches any name), and the run has every key it always logs. `loss` and
    evaluation keys say nothing (every Trainer logs them). Ties are broken in
    order: a trainer TRL still ships beats one it removed (a TRL 1.16 log fits
    GRPOWithReplayBuffer's old keys as well as GRPO's), then a single stable one
    wins; otherwise the guess is left open.

    What the keys cannot tell: GRPO, RLOO and GMPO log the same keys under default
    settings (the guess stays open); TPO logs exactly DPO's keys, so a TPO run is
    taken for `dpo` unless its run.json (or `--trainer`) says `tpo`. Distillation
    (which logs `entropy`) and ServerDistillation (which does not) are told apart.
    """
    catalog = builtin_catalog()
    logged = set(keys) - GENERIC_KEYS
    infos = [catalog.trainer(t) for t in sorted(catalog.trainer_ids)]
    seen = {k for k in logged if not k.startswith(EVAL_PREFIX) and any(info.logs(k) for info in infos)}
    if not seen:
        return None, "no key that a known trainer logs", ()
    consistent = [info.id for info in infos
                  if all(info.logs(k) for k in seen) and set(info.always) - GENERIC_KEYS <= logged]
    if not consistent:
        return None, "its keys match no single trainer", ()
    fitting = [t for t in consistent if catalog.removed_in(t) is None] or consistent
    stable = [t for t in fitting if t in catalog.stable_trainers]
    chosen = fitting if len(fitting) == 1 else stable if len(stable) == 1 else []
    if chosen:
        return chosen[0], _guessed(chosen[0]), (chosen[0],)
    return None, f"its keys fit several trainers ({', '.join(fitting)})", tuple(fitting)


def _guessed(trainer: str) -> str:
    removed_in = builtin_catalog().removed_in(trainer)
    return "guessed from its metric keys" + (f" (a trainer TRL removed in {removed_in})" if removed_in else "")


def choose(option: str | None, metadata: Path | None, keys: Iterable[str],
           problems: list[str]) -> TrainerChoice:
    if option:
        return TrainerChoice(normalize(option), "option")
    if metadata is not None:
        trainer, problem = from_metadata(metadata)
        if problem:
            problems.append(f"{metadata}: {problem}")
        if trainer:
            return TrainerChoice(trainer, "metadata", str(metadata))
    trainer, how, fitting = guess(keys)
    return TrainerChoice(trainer, "guess", how) if trainer else TrainerChoice(None, "unknown", how, fitting)
