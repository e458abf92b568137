"""What the callback leaves on disk: metrics.jsonl, alerts.jsonl and run.json.

Lines are appended and flushed one by one, so a crash loses at most the line
being written; a resumed run appends to the same files (docs/language.md §2: the later row
wins). `metrics.jsonl` is what `ruledsl audit` reads; `alerts.jsonl` holds every
live event; `run.json` describes the run (its trainer, rules and configuration:
`ruledsl audit` reads the trainer and the configuration back) and is replaced
atomically, in the JSON of docs/language.md §4 (non-finite numbers as "nan", "inf", "-inf").

run.json also keeps the rules the callback ran, so that an audit of the folder can
run exactly those again (`callback_rules` reads them back):

    "include_builtin": true,                      # the builtin library ran
    "rules_dirs": ["/abs/path/rules", ...],       # rule files and folders, resolved
    "code_rules": [{name, trainers, ...}, ...],   # rules given in code, as rule-file mappings
    "custom_alerts": {"name": "grpo: kl > 0.5 -> high: KL {value}", ...}   # inline alerts, by name

(a rule built in code that no rule-file mapping describes, such as one with a message
template object of its own, is named in `rules_not_kept` instead: an audit cannot run it),
and, at the end of training, its `coverage` (docs/language.md §4): the rules never
evaluated on the run, as records {run, rule, metric, reason, detail}.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruledsl.alerts import json_safe

if TYPE_CHECKING:  # read only when rules are read back (the model imports nothing from here)
    from ruledsl.model.rule import Rule

METRICS_FILE = "metrics.jsonl"
ALERTS_FILE = "alerts.jsonl"
RUN_FILE = "run.json"


def _log_value(value: Any) -> Any:
    # metrics.jsonl keeps NaN/Infinity as the tokens Python's json writes (like trainer_state.json)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class DiagnosticsFiles:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.directory / METRICS_FILE, "a", encoding="utf-8")
        self._alerts = open(self.directory / ALERTS_FILE, "a", encoding="utf-8")

    def write_metrics(self, step: int, logs: Mapping[str, Any]) -> None:
        row = {"step": step, **{k: _log_value(v) for k, v in logs.items() if k != "step"}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def write_event(self, event: Mapping[str, Any]) -> None:
        self._alerts.write(json.dumps(json_safe(event)) + "\n")
        self._alerts.flush()

    def write_run(self, info: Mapping[str, Any]) -> None:
        target = self.directory / RUN_FILE
        partial = target.with_name(RUN_FILE + ".partial")
        partial.write_text(json.dumps(json_safe(info), indent=2) + "\n", encoding="utf-8")
        os.replace(partial, target)

    def close(self) -> None:
        for handle in (self._metrics, self._alerts):
            if not handle.closed:
                handle.close()


# ---------------------------------------------------------------- the rules the callback ran

RULE_FIELDS = ("include_builtin", "rules_dirs", "code_rules", "custom_alerts")


def rules_kept(include_builtin: bool, rules_dirs: Sequence[Path], code_rules: Sequence[Mapping[str, Any]],
               custom_alerts: Mapping[str, str]) -> dict[str, Any]:
    """run.json's account of the rules the callback ran (read back by `callback_rules`)."""
    return {"include_builtin": include_builtin, "rules_dirs": [str(path) for path in rules_dirs],
            "code_rules": [dict(rule) for rule in code_rules], "custom_alerts": dict(custom_alerts)}


def callback_rules(run_json: Mapping[str, Any]) -> list[Rule] | None:
    """The rules a DiagnosticsCallback ran, from the run.json it wrote: the builtin library (unless
    it ran without), the rule files of `rules_dirs`, the rules given in code (`code_rules`) and
    the inline alerts of `custom_alerts` under their names, in that order. Every rule, whatever
    its trainers: compile them for the run's trainer (run.json's `trainer`; null: unknown, every
    rule ran) as the callback did.

    None when run.json keeps no account of its rules (written by an older callback, or by hand).
    The rules named in `rules_not_kept` ran but cannot be read back: they are not in the list.
    A malformed entry is a ValueError naming it; a rule folder no longer there, or a rule that
    no longer loads, raises the loader's RuleLoadError (a ValueError) naming the file.
    """
    from ruledsl.model.loader import load_rules
    from ruledsl.model.rule import NAME_PATTERN, Rule, rule_from_inline

    if not any(field in run_json for field in RULE_FIELDS):
        return None
    include_builtin = run_json.get("include_builtin", True)
    if not isinstance(include_builtin, bool):
        raise ValueError(f"run.json: 'include_builtin' should be true or false, not {include_builtin!r}")
    dirs = _texts(run_json.get("rules_dirs", []), "rules_dirs")
    rules = load_rules([Path(d) for d in dirs], trainer=None, include_builtin=include_builtin) \
        if dirs or include_builtin else []
    code = run_json.get("code_rules", [])
    if not isinstance(code, list) or not all(isinstance(m, Mapping) for m in code):
        raise ValueError("run.json: 'code_rules' should be a list of rule mappings")
    rules += [Rule.from_dict(mapping, origin="code") for mapping in code]
    alerts = run_json.get("custom_alerts", {})
    if not isinstance(alerts, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in alerts.items()):
        raise ValueError("run.json: 'custom_alerts' should map names to inline alerts (text)")
    for name, text in alerts.items():
        if not NAME_PATTERN.match(name):
            raise ValueError(f"run.json: custom alert name {name!r} is not a rule name")
        try:
            rule = rule_from_inline(text)
        except ValueError as exc:
            raise ValueError(f"run.json: custom alert {name!r}: {exc}") from None
        rules.append(rule if rule.name == name else dataclasses.replace(rule, name=name))
    return rules


def _texts(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"run.json: {field!r} should be a list of paths (text)")
    return value
