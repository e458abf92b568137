"""Metric aliases: the name a rule uses → the log keys TRL really writes (spec §2).

A catalog maps an alias to candidate keys per trainer. The rule-files work
fills it from a data file; the engines only ask `candidates(...)`, whose
answer starts with the name itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

ANY_TRAINER = "all"


@dataclass(frozen=True)
class Catalog:
    # alias → trainer id (or "all") → keys in order of preference
    aliases: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)

    def candidates(self, name: str, trainers: Iterable[str] | None = None) -> tuple[str, ...]:
        """`name` itself, then the catalog's keys for it and these trainers, each once."""
        keys = [name]
        per_trainer = self.aliases.get(name, {})
        wanted = list(trainers) if trainers is not None else list(per_trainer)
        if ANY_TRAINER in wanted:
            wanted = list(per_trainer)
        for trainer in [*wanted, ANY_TRAINER]:
            keys.extend(per_trainer.get(trainer, ()))
        return tuple(dict.fromkeys(keys))


EMPTY_CATALOG = Catalog()
