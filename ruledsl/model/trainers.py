"""Which TRL trainer a run uses (docs/language.md §8): from its config class, said, written by the callback, or guessed.

Live, the callback knows the TrainingArguments: `trainer_id(args)` walks the
class hierarchy, so `class MyGRPO(GRPOConfig)` is GRPO. In a batch audit the
precedence per run is: `--trainer`; else the `trainer` the callback wrote in
`diagnostics/run.json`; else a guess from the run's metric keys; else unknown
(every rule runs; when the keys fit a few trainers, the rules of any of
them). Config classes and keys come from the metric catalog
(schemas/metric_catalog.yaml); nothing here imports transformers or trl.
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
    trainer is known for, and the run has every key it always logs. `loss` and
    evaluation keys say nothing (every Trainer logs them). Where several are
    consistent, a single stable one wins; otherwise the guess is left open (real
    GRPO and RLOO logs, for one, carry the very same keys).
    """
    catalog = builtin_catalog()
    logged = set(keys) - GENERIC_KEYS
    known = {k for trainer_keys in catalog.trainer_keys.values() for k in trainer_keys}
    seen = {k for k in logged if not k.startswith(EVAL_PREFIX)} & known
    if not seen:
        return None, "no key that a known trainer logs", ()
    consistent = [t for t, trainer_keys in sorted(catalog.trainer_keys.items())
                  if seen <= set(trainer_keys) and set(catalog.always_keys.get(t, ())) - GENERIC_KEYS <= logged]
    stable = [t for t in consistent if t in catalog.stable_trainers]
    chosen = consistent if len(consistent) == 1 else stable if len(stable) == 1 else []
    if chosen:
        return chosen[0], "guessed from its metric keys", (chosen[0],)
    if not consistent:
        return None, "its keys match no single trainer", ()
    return None, f"its keys fit several trainers ({', '.join(consistent)})", tuple(consistent)


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
