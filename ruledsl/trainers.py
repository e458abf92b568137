"""Which trainer a run comes from (spec §8): said, written by the callback, or guessed.

Precedence, per run: `--trainer`; else the `trainer` the callback wrote in
`diagnostics/run.json`; else a guess from the run's metric keys; else unknown
(every rule runs). The guess compares the run's keys with the keys each trainer
is known to log (schemas/trainer_keys.yaml) and names a trainer only when the
keys leave one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from .resources import data_dir

KEYS_FILE = "trainer_keys.yaml"
EVAL_PREFIX = "eval_"
GENERIC_KEYS = {"loss"}  # logged by the Trainer itself whatever the TRL trainer


@dataclass(frozen=True)
class TrainerChoice:
    trainer: str | None
    origin: str  # "option", "metadata", "guess", "unknown"
    detail: str = ""  # the metadata file, or how the guess was made


@functools.cache
def _table() -> dict[str, dict]:
    data = yaml.safe_load((data_dir("schemas") / KEYS_FILE).read_text(encoding="utf-8")) or {}
    return data.get("trainers", {})


def normalize(name: str) -> str:
    """A trainer id from an id or a TRL config class name (`GRPOConfig` → `grpo`)."""
    cleaned = name.strip()
    for trainer, entry in _table().items():
        if cleaned == entry.get("config_class"):
            return trainer
    return cleaned.lower()


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
    return normalize(trainer), None


def guess(keys: Iterable[str]) -> tuple[str | None, str]:
    """The one trainer the run's keys are consistent with, or None (and why).

    A trainer is consistent when it may log every key of the run that some
    trainer is known for, and the run has every key it always logs. `loss` and
    evaluation keys say nothing (every Trainer logs them). Where several are
    consistent, a single stable one wins; otherwise the guess is left open (real
    GRPO and RLOO logs, for one, carry the very same keys).
    """
    table = _table()
    logged = set(keys) - GENERIC_KEYS
    known = {k for entry in table.values() for k in entry.get("keys", [])}
    seen = {k for k in logged if not k.startswith(EVAL_PREFIX)} & known
    if not seen:
        return None, "no key that a known trainer logs"
    consistent = [t for t, entry in table.items()
                  if entry.get("keys") and seen <= set(entry["keys"])
                  and set(entry.get("always", [])) - GENERIC_KEYS <= logged]
    stable = [t for t in consistent if table[t].get("stable")]
    chosen = consistent if len(consistent) == 1 else stable if len(stable) == 1 else []
    if chosen:
        return chosen[0], "guessed from its metric keys"
    if not consistent:
        return None, "its keys match no single trainer"
    return None, f"its keys fit several trainers ({', '.join(consistent)})"


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
    trainer, how = guess(keys)
    return TrainerChoice(trainer, "guess", how) if trainer else TrainerChoice(None, "unknown", how)
