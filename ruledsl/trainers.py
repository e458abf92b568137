"""Which TRL trainer a run uses, from the class of its TrainingArguments (spec §8).

The config class names and their trainer ids are data (schemas/trainers.yaml).
The class hierarchy is walked, so `class MyGRPO(GRPOConfig)` is GRPO; a class
with no known ancestor gives None, which means "unknown: every rule runs".
Only class names are compared: nothing here imports transformers or trl.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import yaml

from .resources import data_dir

TRAINERS_FILE = "trainers.yaml"


@functools.cache
def config_classes() -> Mapping[str, str]:
    """Config class name → trainer id, as shipped with ruledsl."""
    data = yaml.safe_load((data_dir("schemas") / TRAINERS_FILE).read_text(encoding="utf-8")) or {}
    return dict(data.get("config_classes", {}))


def trainer_id(args: Any) -> str | None:
    """The trainer id of `args` (a TrainingArguments instance or class), or None when unknown."""
    cls = args if isinstance(args, type) else type(args)
    known = config_classes()
    for ancestor in cls.__mro__:
        if ancestor.__name__ in known:
            return known[ancestor.__name__]
    return None
