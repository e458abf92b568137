"""ruledsl: declarative rules that catch broken TRL post-training runs.

    >>> import ruledsl
    >>> ruledsl.parse_condition("drop(50%)").kind
    'shorthand'
"""

from .catalog import Catalog
from .engine import RuleSet, audit, compile_rules, evaluate
from .errors import Diagnostic, FrameError, RuleSyntaxError, RuleValidationError, Span
from .language import parse_condition
from .loader import load_rules
from .monitor import AlertEvent, Monitor
from .rule import Rule, rule_from_inline as parse_inline_alert

__version__ = "0.1.0"

__all__ = [
    "AlertEvent", "Catalog", "DiagnosticsCallback", "Diagnostic", "FrameError", "Monitor", "Rule", "RuleSet",
    "RuleSyntaxError", "RuleValidationError", "Span", "audit", "compile_rules", "evaluate", "load_rules",
    "parse_condition", "parse_inline_alert", "__version__",
]


def __getattr__(name: str):
    # The callback needs transformers; load it only when asked for, never at `import ruledsl`.
    if name == "DiagnosticsCallback":
        from .callback import DiagnosticsCallback

        return DiagnosticsCallback
    raise AttributeError(f"module 'ruledsl' has no attribute {name!r}")
