"""`DiagnosticsCallback`: ruledsl's rules, live, inside a transformers / TRL Trainer.

    from ruledsl.integrations.callback import DiagnosticsCallback
    trainer = GRPOTrainer(..., callbacks=[DiagnosticsCallback(stop_on="critical")])

At the first hook it detects the trainer from the class of the training
arguments and picks the rules for it, and takes the run's configuration (spec
§2: the arguments' `to_dict()`, flattened) for `config.KEY` and `when`; then
every `on_log` row goes through the incremental monitor, each alert episode is
announced when it starts, and the main process writes metrics.jsonl,
alerts.jsonl and run.json, the configuration included (readable by
`ruledsl audit`). Nothing in here may stop training except `stop_on`: each
part runs behind a fuse (ruledsl.fuse) and is switched off on its first fault.
This module imports transformers; `import ruledsl` does not import this module.
"""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("DiagnosticsCallback needs transformers: pip install 'ruledsl[trl]'") from exc

from ruledsl import __version__
from ruledsl.alerts import SEVERITIES, at_least
from ruledsl.compile import compile_rules
from ruledsl.engines.live.monitor import Monitor
from ruledsl.integrations.console import LOG_LEVELS, alert_text, is_plain, say
from ruledsl.integrations.diagnostics_files import DiagnosticsFiles
from ruledsl.integrations.fault_guard import Fuse, logger
from ruledsl.integrations.trackers import alerts_jsonl, make_tracker, wanted
from ruledsl.model.catalog import Catalog
from ruledsl.model.config import RunConfig, normalize
from ruledsl.model.loader import load_rules
from ruledsl.model.rule import Rule, rule_from_inline
from ruledsl.model.trainers import trainer_id

DIAGNOSTICS_DIR = "diagnostics"
VERSIONED = ("torch", "transformers", "trl", "accelerate", "datasets", "polars")

RULES, CALLBACK, CONFIG = "the rules", "the diagnostics callback", "the run's configuration"


class DiagnosticsCallback(TrainerCallback):
    """Watch a training run with the builtin rules and your own; see docs/callback.md."""

    def __init__(self, rules: Iterable[Rule | Mapping[str, Any] | str] | None = None,
                 rules_dir: str | Path | Sequence[str | Path] | None = None,
                 custom_alerts: Iterable[str] | None = None, trainer: str | None = None,
                 stop_on: str | None = None, output_dir: str | Path | None = None, *,
                 include_builtin: bool = True, catalog: Catalog | None = None,
                 trackers: bool = True, console: bool = True):
        if stop_on is not None and stop_on not in SEVERITIES:
            raise ValueError(f"stop_on takes one of {', '.join(SEVERITIES)} or None, not {stop_on!r}")
        self.rules = _collect_rules(rules, rules_dir, custom_alerts, include_builtin)
        compile_rules(self.rules, catalog=catalog)  # duplicate names and bad rules fail here, not mid-run
        self.stop_on = stop_on
        self.trainer_override = trainer
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.catalog = catalog
        self.use_trackers = trackers
        self.console = console
        self.fuse = Fuse()
        self._reset()

    def _reset(self) -> None:
        self.trainer: str | None = None
        self.config: RunConfig = {}
        self.active_rules: list[Rule] = []
        self.monitor = None
        self.files: DiagnosticsFiles | None = None
        self.trackers: list = []
        self.started: list[dict] = []  # every started episode's record, in order
        self.stopped: dict | None = None
        self._main = False
        self._watching = False
        self._faults_seen = 0
        self._notices_seen = 0

    # ------------------------------------------------------------ hooks (each fully guarded)

    def on_init_end(self, args, state, control, **kwargs):
        self.fuse.run(CALLBACK, self._begin, args, state)

    def on_train_begin(self, args, state, control, **kwargs):
        self.fuse.run(CALLBACK, self._begin, args, state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.fuse.run(CALLBACK, self._log, args, state, control, logs)

    def on_train_end(self, args, state, control, **kwargs):
        self.fuse.run(CALLBACK, self._end, args, state)

    # ------------------------------------------------------------ what the hooks do

    def _begin(self, args, state) -> None:
        if self._watching:
            return
        self._reset()
        self._watching = True
        self._main = bool(getattr(state, "is_world_process_zero", True))
        detected = trainer_id(args)
        self.trainer = self.trainer_override or detected
        self.active_rules = [r for r in self.rules if r.enabled and r.applies_to(self.trainer)]
        # without it (a fault), rules that read the configuration are not evaluated; the rest run
        self.config = self.fuse.run(CONFIG, trainer_config, args) or {}
        self.monitor = self.fuse.run(RULES, self._new_monitor, args)
        if not self._main:
            return
        self._announce_start(args, detected)
        self.files = self.fuse.run("the diagnostics files", self._open_files, args)
        if self.use_trackers:
            self.trackers = [t for t in (self.fuse.run(f"the {n} tracker", make_tracker, n, args)
                                         for n in wanted(args)) if t is not None]

    def _new_monitor(self, args):
        run = getattr(args, "run_name", None) or Path(str(args.output_dir)).name or "default"
        return Monitor(self.active_rules, trainer=self.trainer, catalog=self.catalog, run=run, config=self.config)

    def _announce_start(self, args, detected: str | None) -> None:
        config_class = type(args).__name__
        if self.trainer is None:
            what = f"trainer not recognised ({config_class}): all {len(self.active_rules)} rules run"
        elif self.trainer_override and self.trainer_override != detected:
            what = f"trainer {self.trainer} (given; {config_class}): {len(self.active_rules)} rules run"
        else:
            what = f"trainer {self.trainer} ({config_class}): {len(self.active_rules)} rules run"
        self._say(f"ruledsl: {what}", logging.INFO)

    def _say(self, text: str, level: int) -> None:
        if self.console:
            say(text, logger, level)
        else:
            logger.log(level, text)

    def _open_files(self, args) -> DiagnosticsFiles:
        directory = self.output_dir or Path(str(args.output_dir)) / DIAGNOSTICS_DIR
        files = DiagnosticsFiles(directory)
        files.write_run(self._run_info(args))
        return files

    def _run_info(self, args) -> dict[str, Any]:
        # `config` is what `ruledsl audit` gives the rules for this run (readers/run_config.py)
        info = {"trainer": self.trainer, "ruledsl_version": __version__,
                "rules": [r.name for r in self.active_rules], "config_class": type(args).__name__,
                "config": self.config, "versions": _versions(), "stop_on": self.stop_on}
        if self.stopped is not None:
            info["stopped"] = self.stopped
        return info

    def _log(self, args, state, control, logs) -> None:
        if not self._watching:
            self._begin(args, state)
        if not logs:
            return
        step = int(state.global_step)
        if self.files is not None:
            self.fuse.run("metrics.jsonl", self.files.write_metrics, step, logs)
        if self.monitor is None:
            return
        events = self.fuse.run(RULES, self.monitor.update, step, dict(logs)) or []
        self._report_monitor_news()
        for event in events:
            self._handle(event, args, control)

    def _report_monitor_news(self) -> None:
        """A rule the monitor switched off (it raised) or a row it skipped: said once each."""
        faults = getattr(self.monitor, "faults", [])
        for fault in faults[self._faults_seen:]:
            self.fuse.blow(f"the rule {fault.rule}", f"at step {fault.step}: {fault.error}")
            if self.files is not None:
                self.fuse.run("alerts.jsonl", self.files.write_event, {
                    "event": "rule_fault", "rule": fault.rule, "step": fault.step, "error": fault.error})
        self._faults_seen = len(faults)
        notices = getattr(self.monitor, "notices", [])
        for notice in notices[self._notices_seen:]:
            logger.warning("ruledsl: %s", notice)
        self._notices_seen = len(notices)

    def _handle(self, event, args, control) -> None:
        record = dict(event.record)
        if self.files is not None:
            self.fuse.run("alerts.jsonl", self.files.write_event, {"event": event.kind, **record})
        if event.kind == "withdrawn" and getattr(event, "withdraws", None) == "started":
            # a later row of the same step replaced a value: that start no longer holds (see ruledsl.monitor)
            withdrawn = (record["rule"], record["first_step"])
            self.started = [r for r in self.started if (r["rule"], r["first_step"]) != withdrawn]
            logger.info("ruledsl: withdrawn: %s", alert_text(record, plain=True))
        if event.kind != "started":
            return
        self.started.append(record)
        if self._main:
            self._announce(record)
            for tracker in self.trackers:
                self.fuse.run(f"the {tracker.name} tracker", tracker.alert, record)
        if self._stops(record):
            self._stop(record, args, control)

    def _announce(self, record: dict) -> None:
        level = LOG_LEVELS.get(str(record.get("severity")), logging.WARNING)
        if self.console:
            print(alert_text(record, plain=is_plain(sys.stdout)), flush=True)
        logger.log(level, "ruledsl alert: %s", alert_text(record, plain=True))

    def _stops(self, record: dict) -> bool:
        return (self.stop_on is not None and self.stopped is None
                and at_least(str(record.get("severity")), self.stop_on))

    def _stop(self, record: dict, args, control) -> None:
        control.should_training_stop = True
        reason = (f"stopped training at step {record['first_step']}: rule {record['rule']} "
                  f"({record['severity']}) fired and stop_on={self.stop_on!r}")
        self.stopped = {"step": record["first_step"], "rule": record["rule"],
                        "severity": record["severity"], "reason": reason}
        if not self._main:
            return
        self._say(f"ruledsl: {reason}", logging.WARNING)
        if self.files is not None:
            self.fuse.run("alerts.jsonl", self.files.write_event, {"event": "stop", **self.stopped})
            self.fuse.run("run.json", self.files.write_run, self._run_info(args))
        for tracker in self.trackers:
            self.fuse.run(f"the {tracker.name} tracker", tracker.stopped, reason)

    def _end(self, args, state) -> None:
        if not self._watching:
            return
        if self.monitor is not None:
            for event in self.fuse.run(RULES, self.monitor.finish) or []:
                self._handle(event, args, _NoControl())
            if self.files is not None:  # the final episodes, open ones included: what an audit reports
                for record in self.fuse.run(RULES, self.monitor.episodes) or []:
                    self.fuse.run("alerts.jsonl", self.files.write_event, {"event": "episode", **record})
        text = alerts_jsonl(self.started)
        for tracker in self.trackers:
            self.fuse.run(f"the {tracker.name} tracker", tracker.finish, text)
        if self.files is not None:
            self.fuse.run("the diagnostics files", self.files.close)
            self.files = None
        self._watching = False  # a later train() on the same trainer starts a new watch; results stay readable


class _NoControl:
    """Stands in for TrainerControl after training ended: a stop request has no effect then."""
    should_training_stop = False


def _collect_rules(rules, rules_dir, custom_alerts, include_builtin: bool) -> list[Rule]:
    """Builtin library + rule files + `rules` + inline `custom_alerts`, validated now."""
    dirs = [rules_dir] if isinstance(rules_dir, (str, Path)) else list(rules_dir or [])
    collected = load_rules(dirs, trainer=None, include_builtin=include_builtin) if dirs or include_builtin else []
    for item in rules or []:
        if isinstance(item, Rule):
            collected.append(item)
        elif isinstance(item, str):
            collected.append(rule_from_inline(item))
        elif isinstance(item, Mapping):
            collected.append(Rule.from_dict(item, origin="code"))
        else:
            raise TypeError(f"a rule must be a Rule, a mapping or an inline-alert string, not {type(item).__name__}")
    if isinstance(custom_alerts, str):
        custom_alerts = [custom_alerts]
    collected.extend(rule_from_inline(text) for text in custom_alerts or [])
    return collected


def trainer_config(args: Any) -> RunConfig:
    """The run's configuration (docs/language.md §2): the training arguments' `to_dict()` (enums as their
    values, tokens masked by transformers), flattened with `.`, nulls left out. Arguments
    without `to_dict` (not a TrainingArguments) give their public attributes."""
    to_dict = getattr(args, "to_dict", None)
    if callable(to_dict):
        fields = to_dict()
    else:
        fields = {k: v for k, v in getattr(args, "__dict__", {}).items() if not k.startswith("_")}
    return normalize(fields)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "ruledsl": __version__}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
