"""What the callback leaves on disk: metrics.jsonl, alerts.jsonl and run.json.

Lines are appended and flushed one by one, so a crash loses at most the line
being written; a resumed run appends to the same files (docs/language.md §2: the later row
wins). `metrics.jsonl` is what `ruledsl audit` reads; `alerts.jsonl` holds every
live event; `run.json` describes the run (its trainer, rules and configuration:
`ruledsl audit` reads the trainer and the configuration back) and is replaced
atomically, in the JSON of docs/language.md §4 (non-finite numbers as "nan", "inf", "-inf").

A line of metrics.jsonl is `{"step": global_step, key: value, …}` where every value is
a number (NaN and ±inf as the tokens Python's json writes) or null: the row as the live
rules read it (`metrics_row`, ruledsl/engines/live/values.py), so that `ruledsl audit`
of the file finds what the callback found. What a logged row holds besides (a text, a
boolean, an object whose float() fails, a key that is no text, a key named `step` or
`run`, which are the line's own fields) is left out of the line, and the callback says so.

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
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruledsl.alerts import json_safe
from ruledsl.engines.live.values import metric_value, shown, why_no_value

if TYPE_CHECKING:  # read only when rules are read back (the model imports nothing from here)
    from ruledsl.model.rule import Rule

METRICS_FILE = "metrics.jsonl"
ALERTS_FILE = "alerts.jsonl"
RUN_FILE = "run.json"
# A line's own fields: a JSON log reader takes `step` as the row's step and `run` as the name of
# one of several runs in the file, so a logged key of either name is not written as a metric.
LINE_FIELDS = ("step", "run")

Value = int | float | None
KEPT_TYPES = frozenset({float, type(None)})


class MetricsRow(dict[str, Value]):
    """A row `metrics_row` has read: the callback reads each row once, for the rules and the file."""


def metrics_row(logs: Mapping[Any, Any]) -> tuple[MetricsRow, list[tuple[Any, str]]]:
    """The logged row as metrics.jsonl keeps it and the live rules read it (one reading for both):
    text keys to numbers or null; and what it leaves out, as (key, why) pairs.

    An int stays an int (written exactly; every reader gives the float the rules get); a number
    past any float is ±inf (written as Python's json writes it: `Infinity`), as the readers read
    the integer itself; every other number is its float (NaN as `NaN`)."""
    if _as_kept(logs):
        return MetricsRow(logs), []
    row = MetricsRow()
    left_out: list[tuple[Any, str]] = []
    for key, raw in logs.items():
        if not isinstance(key, str):
            left_out.append((key, f"the key {shown(key)} is no text (no rule can name it)"))
        elif key in LINE_FIELDS:
            left_out.append((key, f"the key {key!r} is a field of metrics.jsonl's lines, not a metric"))
        else:
            value = metric_value(raw)
            if value is None and raw is not None:
                left_out.append((key, f"{shown(key)} is {why_no_value(raw)}, not a number"))
            else:
                row[key] = raw if type(raw) is int and value is not None and math.isfinite(value) else value
    return row, left_out


def _as_kept(logs: Mapping[Any, Any]) -> bool:
    """Whether the row is already as metrics.jsonl keeps it, as a Trainer's rows are: text keys,
    none of them a line's own field, floats and nulls. Checked with set operations that run in C:
    the callback reads every row."""
    return (set(map(type, logs.values())) <= KEPT_TYPES and set(map(type, logs)) <= {str}
            and logs.keys().isdisjoint(LINE_FIELDS))


class DiagnosticsFiles:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # a session killed while writing a line left it unfinished: appending to it would spoil the next line too
        self.cut: dict[str, int] = {name: cut for name in (METRICS_FILE, ALERTS_FILE)
                                    if (cut := _cut_unfinished_line(self.directory / name))}
        self._metrics = open(self.directory / METRICS_FILE, "a", encoding="utf-8")
        self._alerts = open(self.directory / ALERTS_FILE, "a", encoding="utf-8")

    def write_metrics(self, step: int, logs: Mapping[Any, Any]) -> None:
        """One line: the step and `metrics_row(logs)` (what it leaves out is the caller's to say)."""
        row = logs if isinstance(logs, MetricsRow) else metrics_row(logs)[0]
        self._metrics.write(json.dumps({"step": step, **row}) + "\n")
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


def _cut_unfinished_line(path: Path) -> int:
    """Remove the end of `path` after its last line break (a line the previous session did not
    finish writing: the callback writes each line whole, then a break); the bytes removed."""
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0 or _last_byte(handle, size) == b"\n":
                return 0
            keep = _after_last_break(handle, size)
            handle.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0


def _last_byte(handle: Any, size: int) -> bytes:
    handle.seek(size - 1)
    return handle.read(1)


def _after_last_break(handle: Any, size: int, chunk: int = 1 << 16) -> int:
    """The offset just past the last b"\n" of the file (0: none), read backwards in chunks."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


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
