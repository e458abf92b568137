"""Writing the corpus: one run folder per scenario, as the ruledsl callback leaves it
(`diagnostics/metrics.jsonl` + `diagnostics/run.json`, ruledsl/integrations/diagnostics_files.py),
and `manifest.yaml` listing every run."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .runs import FAILURE, Scenario
from .trainers import TRAINERS

VERSIONS = {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.24.0", "trl": "1.16.0", "accelerate": "1.15.0",
            "datasets": "5.2.0"}  # those of real_trl_logs/README.md

MANIFEST_HEAD = """\
# The healthy and failure corpus: every run under tests/data/corpus/, written by tools/make_corpus.py
# (do not edit: change tools/corpus/scenarios.py and run `python tools/make_corpus.py`).
#
# path          run folder under tests/data/corpus/ (diagnostics/metrics.jsonl + diagnostics/run.json)
# trainer       the TRL 1.16 trainer id run.json names
# kind          healthy: must raise no alert of medium severity or above
#               failure: the rules of expect_rules must fire at or after onset_step and by detect_by
# config        run.json's configuration (rules read it as config.KEY); warmup_steps < 1 is a ratio of
#               max_steps (transformers 5 folded warmup_ratio into warmup_steps)
# onset_step    the first step at which the failure is in the logs
# detect_by     the last step by which a practitioner wants the alert (the comment above it says why)
# expect_rules  builtin rules that must fire on the run: filled in by the rule writers, in
#               tools/corpus/scenarios.py (then regenerate)
"""


def short(value: Any) -> Any:
    """Floats rounded to 6 significant digits (the corpus stays small); integral values, NaN,
    infinities and None as they are."""
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    if value.is_integer() and abs(value) < 1e15:
        return value + 0.0  # -0.0 (a rounded negative) as 0.0
    return float(f"{value:.6g}")


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The callback keeps the configuration flat: lists by index (`loss_type.0`), mappings by dots."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out.update(flat_config({str(i): v for i, v in enumerate(value)}, name + "."))
        elif value is not None:
            out[name] = short(value) if isinstance(value, float) else value
    return out


def write_run(root: Path, scenario: Scenario, rows: Iterable[dict], config: dict) -> None:
    folder = root / scenario.path / "diagnostics"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({key: short(value) for key, value in row.items()}) for row in rows]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    trainer = TRAINERS[scenario.trainer]
    run = {"trainer": scenario.trainer, "trainer_from": "config_class", "config_class": trainer.config_class,
           "config": flat_config(config), "versions": VERSIONS}
    (folder / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


def manifest_entry(scenario: Scenario, config: dict) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": scenario.path, "trainer": scenario.trainer, "kind": scenario.kind,
                             "scenario": scenario.description, "logging_steps": scenario.logging_steps,
                             "max_steps": scenario.max_steps, "config": config}
    failure = scenario.failure
    if scenario.kind == FAILURE and failure is not None:
        entry.update({"failure": failure.id, "onset_step": failure.onset, "detect_by": failure.detect_by,
                      "expect_rules": list(scenario.expect_rules)})
    return entry


def write_manifest(root: Path, scenarios: list[Scenario], configs: list[dict]) -> None:
    parts = [MANIFEST_HEAD, "runs:\n"]
    for scenario, config in zip(scenarios, configs):
        text = yaml.safe_dump([manifest_entry(scenario, flat_config(config))], sort_keys=False, width=110,
                              default_flow_style=False)
        if scenario.failure is not None:
            why = textwrap.wrap(f"detect_by: {scenario.failure.why}", 108)
            comment = "".join(f"  # {line}\n" if i == 0 else f"  #   {line}\n" for i, line in enumerate(why))
            text = text.replace("\n  detect_by:", "\n" + comment + "  detect_by:", 1)
        parts.append(text)
    (root / "manifest.yaml").write_text("".join(parts), encoding="utf-8")
