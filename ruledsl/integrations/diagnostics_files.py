"""What the callback leaves on disk: metrics.jsonl, alerts.jsonl and run.json.

Lines are appended and flushed one by one, so a crash loses at most the line
being written; a resumed run appends to the same files (docs/language.md §2: the later row
wins). `metrics.jsonl` is what `ruledsl audit` reads; `alerts.jsonl` holds every
live event; `run.json` describes the run (its trainer, rules and configuration:
`ruledsl audit` reads the trainer and the configuration back) and is replaced
atomically, in the JSON of docs/language.md §4 (non-finite numbers as "nan", "inf", "-inf").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruledsl.alerts import json_safe

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
