"""ruledsl: declarative rules that catch broken TRL post-training runs.

    >>> import ruledsl
    >>> ruledsl.parse_condition("drop(50%)").kind
    'shorthand'

`import ruledsl` loads nothing but this table: each public name is imported
from its module when first used, so a training process that only wants the
callback never pays for polars or jsonschema (the batch engine's and the rule
files' dependencies).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name → the module that defines it (and the name there, when it differs)
_EXPORTS: dict[str, tuple[str, str]] = {
    "Catalog": ("ruledsl.model.catalog", "Catalog"),
    "Rule": ("ruledsl.model.rule", "Rule"),
    "load_rules": ("ruledsl.model.loader", "load_rules"),
    "parse_condition": ("ruledsl.lang.read", "parse_condition"),
    "parse_inline_alert": ("ruledsl.model.rule", "rule_from_inline"),
    "Diagnostic": ("ruledsl.lang.errors", "Diagnostic"),
    "FrameError": ("ruledsl.lang.errors", "FrameError"),
    "RuleSyntaxError": ("ruledsl.lang.errors", "RuleSyntaxError"),
    "RuleValidationError": ("ruledsl.lang.errors", "RuleValidationError"),
    "Span": ("ruledsl.lang.errors", "Span"),
    "RuleSet": ("ruledsl.compile", "RuleSet"),
    "compile_rules": ("ruledsl.compile", "compile_rules"),
    "AlertRecord": ("ruledsl.alerts", "AlertRecord"),
    "Severity": ("ruledsl.alerts", "Severity"),
    "audit": ("ruledsl.engines.batch.engine", "audit"),
    "evaluate": ("ruledsl.engines.batch.engine", "evaluate"),
    "AlertEvent": ("ruledsl.engines.live.events", "AlertEvent"),
    "Monitor": ("ruledsl.engines.live.monitor", "Monitor"),
    "DiagnosticsCallback": ("ruledsl.integrations.callback", "DiagnosticsCallback"),
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ruledsl' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return __all__
