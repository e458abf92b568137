"""Metric aliases: the name a rule uses → the log keys TRL really writes (spec §2).

A catalog maps an alias to candidate keys per trainer; the builtin one is the
data file schemas/metric_catalog.yaml. The engines only ask `candidates(...)`,
whose answer starts with the name itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import yaml

from .resources import data_dir

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


    @classmethod
    def load(cls, path: Path | str) -> "Catalog":
        """A catalog file: `aliases: {alias: {trainer: [keys…]}}`."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls(data.get("aliases", {}))


CATALOG_FILE = "metric_catalog.yaml"


@functools.cache
def builtin_catalog() -> Catalog:
    """The catalog shipped with ruledsl (schemas/metric_catalog.yaml)."""
    return Catalog.load(data_dir("schemas") / CATALOG_FILE)
