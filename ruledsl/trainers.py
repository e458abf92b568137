"""Which TRL trainer a run uses, from the class of its TrainingArguments (spec §8).

The config class names and their trainer ids come from the metric catalog
(schemas/metric_catalog.yaml).
The class hierarchy is walked, so `class MyGRPO(GRPOConfig)` is GRPO; a class
with no known ancestor gives None, which means "unknown: every rule runs".
Only class names are compared: nothing here imports transformers or trl.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from .catalog import builtin_catalog


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
