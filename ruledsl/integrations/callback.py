"""`DiagnosticsCallback`: ruledsl's rules, live, inside a transformers / TRL Trainer.

    from ruledsl.integrations.callback import DiagnosticsCallback
    trainer = GRPOTrainer(..., callbacks=[DiagnosticsCallback(stop_on="critical")])

At the first hook it detects the trainer from the class of the training
arguments and picks the rules for it, and takes the run's configuration (spec
§2: the arguments' `to_dict()`, flattened) for `config.KEY` and `when`; then
every `on_log` row goes through the incremental monitor, each alert episode is
announced when it starts, and the main process writes metrics.jsonl,
alerts.jsonl and run.json, the configuration and the rules it ran included
(readable by `ruledsl audit`, see diagnostics_files.callback_rules).

Nothing is silent (docs/language.md §4, coverage): it says which trainer it took
and how, how many rules apply, after the first training row how many of them see
their keys (and which do not yet, and why), and at the end of training the rules
never evaluated on the run, with their reasons (also kept in run.json), within the
end-of-training summary (summary.py: the alerts per rule, on stderr like the alert blocks,
in diagnostics/summary.md and in the trackers).

For long runs (docs/production.md) each part has a module of its own and a switch: a resume
replays metrics.jsonl and compares the configuration (resume.py), an abnormal end leaves a
postmortem (postmortem.py), a multi-process run gathers each rank's compute time and memory
(ranks.py), and started episodes go to webhooks (notify.py).

Everything is checked in the constructor (the trainer id, each rule, each custom
alert and its name): a mistake fails there, never at the start of training.
Nothing in here may stop training except `stop_on` and `resume_policy="error"` (before the
first step): each part runs behind a fuse
(fault_guard.Fuse) and is switched off on its first fault. No logged value is a fault:
the row is read once (diagnostics_files.metrics_row) for the rules and metrics.jsonl
alike, and what is no number there is left out of both and said once per key, a row
whose step names no training step skipped and said once (docs/callback.md, "What the
callback does with odd values"). This module imports
transformers; `import ruledsl` does not import this module.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("DiagnosticsCallback needs transformers: pip install 'ruledsl[trl]'") from exc

from ruledsl import __version__
from ruledsl.alerts import SEVERITIES, CoverageRecord, at_least
from ruledsl.compile import compile_rules
from ruledsl.engines.live.monitor import Monitor
from ruledsl.engines.live.values import OnceEach, shown, training_step
from ruledsl.integrations import resume
from ruledsl.integrations.console import (
    COLOUR,
    LOG_LEVELS,
    alert_text,
    console_style,
    coverage_at_end,
    coverage_so_far,
    say,
    show,
    styled_alert,
)
from ruledsl.integrations.diagnostics_files import (
    METRICS_FILE,
    DiagnosticsFiles,
    MetricsRow,
    metrics_row,
    rules_kept,
)
from ruledsl.integrations.fault_guard import Fuse, logger
from ruledsl.integrations.notify import Notifier, webhook_urls
from ruledsl.integrations.postmortem import POSTMORTEM, STOP_ON, PostmortemGuard
from ruledsl.integrations.ranks import SYSTEM_METRICS, RankMetrics, SystemMetricsSettings
from ruledsl.integrations.resume import RESUME_POLICIES, ResumeConfigError, ranks_agree, resume_line
from ruledsl.integrations.summary import SUMMARY_FILE, RunSummary, build_summary, console_text, markdown, write_summary
from ruledsl.integrations.trackers import alerts_jsonl, make_tracker, wanted
from ruledsl.lang.errors import RuleSyntaxError
from ruledsl.model.catalog import Catalog, trainer_catalog
from ruledsl.model.config import RunConfig, normalize
from ruledsl.model.loader import load_rules
from ruledsl.model.rule import NAME_PATTERN, Rule, rule_from_inline
from ruledsl.model.trainers import trainer_id

DIAGNOSTICS_DIR = "diagnostics"
VERSIONED = ("torch", "transformers", "trl", "accelerate", "datasets", "polars")

RULES, CALLBACK, CONFIG = "the rules", "the diagnostics callback", "the run's configuration"
COVERAGE = "the coverage report"
NOTIFICATIONS = "notifications"
RESUME = "the resume check"
REPORT = "the HTML report"
SUMMARY = "the summary"
NOTIFY_CLOSE_SECONDS = 5.0  # what the end of training waits at most for the webhooks' last posts
# How the trainer was decided (run.json's `trainer_from`)
FROM_CONFIG_CLASS, GIVEN, UNKNOWN = "config_class", "given", "unknown"
# Keys of a Trainer row that are not training metrics: the evaluation and summary rows carry them
NOT_TRAINING = frozenset({"epoch", "train_runtime", "train_samples_per_second", "train_steps_per_second",
                          "total_flos", "train_loss"})


class DiagnosticsCallback(TrainerCallback):
    """Watch a training run with the builtin rules and your own; see docs/callback.md."""

    def __init__(self, rules: Iterable[Rule | Mapping[str, Any] | str] | None = None,
                 rules_dir: str | Path | Sequence[str | Path] | None = None,
                 custom_alerts: Mapping[str, str] | Iterable[str] | str | None = None, trainer: str | None = None,
                 stop_on: str | None = None, output_dir: str | Path | None = None, *,
                 include_builtin: bool = True, catalog: Catalog | None = None,
                 trackers: bool = True, console: bool = True,
                 resume_check: bool = True, resume_policy: str = "warn",
                 notify: str | Sequence[str] | None = None,
                 postmortem: bool = True, postmortem_rows: int = 50,
                 system_metrics: bool = True, system_metrics_every: int = 10,
                 straggler_factor: float = 1.5, memory_imbalance_factor: float = 1.5,
                 report: bool = False, summary: bool = True):
        if stop_on is not None and stop_on not in SEVERITIES:
            raise ValueError(f"stop_on takes one of {', '.join(SEVERITIES)} or None, not {stop_on!r}")
        if resume_policy not in RESUME_POLICIES:
            raise ValueError(f"resume_policy takes one of {', '.join(map(repr, RESUME_POLICIES))}, "
                             f"not {resume_policy!r}")
        self.resume_check = bool(resume_check)  # replay and drift at a resume, config.json at the first start
        self.resume_policy = resume_policy
        ids = trainer_catalog(catalog)
        if trainer is not None:
            if not isinstance(trainer, str):
                raise TypeError(f"trainer takes a trainer id (text), not {type(trainer).__name__}")
            ids.check_trainer(trainer)  # `dop`: ValueError, did you mean 'dpo'? (docs/language.md §8)
        self.include_builtin = include_builtin
        self.rules_dirs = _rule_paths(rules_dir)  # resolved: what run.json keeps
        collected = _collect_rules(rules, self.rules_dirs, custom_alerts, include_builtin, ids)
        self.rules = collected.rules
        self.custom_alerts = collected.custom_alerts  # name → inline text, every inline alert run
        self.code_rules = collected.code_rules  # the other rules given in code, as rule-file mappings
        self.rules_not_kept = collected.not_kept  # rules given in code that no mapping describes (run.json says so)
        compile_rules(self.rules, catalog=catalog)  # duplicate names and bad rules fail here, not mid-run
        self.stop_on = stop_on
        self.trainer_override = trainer
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.catalog = catalog
        self.use_trackers = trackers
        self.console = console
        # webhook URLs (integrations/notify.py), checked now: a bad one fails here, not mid-run
        self.notify_urls = _notify_urls(notify)
        self.postmortem_rows = _postmortem_rows(postmortem_rows)
        # per-rank step time and memory in the rows of a multi-process run (integrations/ranks.py), checked now
        self.system_metrics = SystemMetricsSettings(system_metrics, system_metrics_every, straggler_factor,
                                                    memory_imbalance_factor)
        self.fuse = Fuse()
        self.report = bool(report)  # diagnostics/report.html when training ends (ruledsl/report/standalone.py)
        self.summary = bool(summary)  # the end-of-training summary: console, summary.md, trackers (summary.py)
        # diagnostics/postmortem.json when training ends abnormally (integrations/postmortem.py)
        self.postmortem_guard = PostmortemGuard(self) if postmortem else None
        self._reset()

    def _reset(self) -> None:
        self.trainer: str | None = None
        self.trainer_from: str = UNKNOWN
        self.config: RunConfig = {}
        self.active_rules: list[Rule] = []
        self.monitor = None
        self.files: DiagnosticsFiles | None = None
        self.trackers: list = []
        self.notifier: Notifier | None = None  # the main process's, while watching with `notify`
        self.ranks: RankMetrics | None = None  # gathering across ranks, from train begin (multi-process only)
        self.started: list[dict] = []  # every started episode's record, in order
        self.stopped: dict | None = None
        self._main = False
        self._watching = False
        self._faults_seen = 0
        self._notices_seen = 0
        self._coverage_said = False  # the "N of M rules see their keys" line, after the first training row
        self.resumed: list[dict[str, Any]] = []  # each resume of this session: its step, what was replayed, drift
        self._left_out = OnceEach(self._warn)  # keys whose values were left out of a row: said once each
        self._rows_noted: set[str] = set()  # the kinds of rows skipped whole (no step, no mapping): said once each
        self.coverage: list[CoverageRecord] | None = None  # at the end of training: the rules never evaluated
        self.run_summary: RunSummary | None = None  # the end-of-training summary, once made (summary.py)
        # the last rows read, (step, row), for a postmortem
        self.recent_rows: deque[tuple[int, dict[str, Any]]] = deque(
            maxlen=self.postmortem_rows if self.postmortem_guard is not None else 0)

    # ------------------------------------------------------------ hooks (each fully guarded)

    def on_init_end(self, args, state, control, **kwargs):
        self.fuse.run(CALLBACK, self._begin, args, state)
        if self.postmortem_guard is not None:  # the trainer being built: its train() is wrapped
            self.fuse.run(POSTMORTEM, self.postmortem_guard.watch_trainer)

    def on_train_begin(self, args, state, control, **kwargs):
        self.fuse.run(CALLBACK, self._begin, args, state)
        if self.resume_check:  # a fault here is said and switches the check off; a refused resume is raised
            refused = self.fuse.run(RESUME, self._session_start, args, state, kwargs)
            if refused is not None:
                raise refused
        if self.postmortem_guard is not None:
            self.fuse.run(POSTMORTEM, self.postmortem_guard.arm, args)
        if self.system_metrics.on and self._watching and self.ranks is None:
            self.ranks = self.fuse.run(SYSTEM_METRICS, self._start_ranks, kwargs.get("model"))

    def on_step_begin(self, args, state, control, **kwargs):
        if self.ranks is not None:
            self.fuse.run(SYSTEM_METRICS, self.ranks.step_begin)

    def on_step_end(self, args, state, control, **kwargs):
        if self.ranks is not None:
            self.fuse.run(SYSTEM_METRICS, self.ranks.step_end)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.fuse.run(CALLBACK, self._log, args, state, control, logs)

    def on_train_end(self, args, state, control, **kwargs):
        self.fuse.run(CALLBACK, self._end, args, state)
        if self.postmortem_guard is not None:
            self.fuse.run(POSTMORTEM, self.postmortem_guard.disarm)

    # ------------------------------------------------------------ what the hooks do

    def _begin(self, args, state) -> None:
        if self._watching:
            return
        self._reset()
        self._watching = True
        self._main = bool(getattr(state, "is_world_process_zero", True))
        detected = trainer_id(args)
        self.trainer = self.trainer_override or detected
        self.trainer_from = GIVEN if self.trainer_override else FROM_CONFIG_CLASS if detected else UNKNOWN
        self.active_rules = [r for r in self.rules if r.enabled and r.applies_to(self.trainer)]
        # without it (a fault), rules that read the configuration are not evaluated; the rest run
        self.config = self.fuse.run(CONFIG, trainer_config, args) or {}
        # the world size and factors the rank rules read (rules/common/rank_*.yaml); run.json keeps them
        self.config.update(self.fuse.run(CONFIG, self.system_metrics.config, args) or {})
        self.monitor = self.fuse.run(RULES, self._new_monitor, args)
        if not self._main:
            return
        self._announce_start(args, detected)
        self.files = self.fuse.run("the diagnostics files", self._open_files, args)
        if self.use_trackers:
            self.trackers = [t for t in (self.fuse.run(f"the {n} tracker", make_tracker, n, args)
                                         for n in wanted(args)) if t is not None]
        if self.notify_urls:
            self.notifier = self.fuse.run(NOTIFICATIONS, Notifier, self.notify_urls)

    def _start_ranks(self, model) -> RankMetrics | None:
        """The gathering across ranks (None in a single process: nothing to compare), said once."""
        ranks = RankMetrics(self.system_metrics.every, self.system_metrics.timeout_s, say=self._warn)
        if not ranks.start(model):
            return None
        if self._main:
            self._say(f"ruledsl: every {self.system_metrics.every} logged rows, each of the {ranks.world_size} "
                      f"ranks' compute time per step and peak memory are gathered into the row "
                      f"(ruledsl/step_time/*, ruledsl/slowest_rank, ruledsl/memory/*)", logging.INFO)
        return ranks

    def _new_monitor(self, args):
        run = getattr(args, "run_name", None) or Path(str(args.output_dir)).name or "default"
        return Monitor(self.active_rules, trainer=self.trainer, catalog=self.catalog, run=run, config=self.config)

    def _announce_start(self, args, detected: str | None) -> None:
        """One line: the trainer, how it was decided, and how many rules apply to it."""
        config_class = type(args).__name__
        count = _rules(len(self.active_rules))
        if self.trainer_from == GIVEN:
            what = f"trainer {self.trainer} (given: trainer={self.trainer!r}; config class {config_class})"
        elif self.trainer_from == FROM_CONFIG_CLASS:
            what = f"trainer {self.trainer} (from the config class {config_class})"
        else:
            what = f"trainer unknown: every rule runs ({config_class} is not a TRL trainer's config class)"
        self._say(f"ruledsl: {what}; {count} appl{'ies' if len(self.active_rules) == 1 else 'y'}", logging.INFO)

    def _say(self, text: str, level: int) -> None:
        if self.console:
            say(text, logger, level)
        else:
            logger.log(level, text)

    def _warn(self, text: str) -> None:
        """Something skipped: a warning through `logging`, and on stderr (the main process, with
        `console`) like a fuse's, since an application that configures no logging sees no record."""
        logger.warning(text)
        if self.console and self._main:
            print(text, file=sys.stderr, flush=True)

    def _directory(self, args) -> Path:
        return self.output_dir or Path(str(args.output_dir)) / DIAGNOSTICS_DIR

    def _open_files(self, args) -> DiagnosticsFiles:
        files = DiagnosticsFiles(self._directory(args))
        for name, size in files.cut.items():
            self._warn(f"ruledsl: {files.directory / name} ended in a line cut short ({size} bytes, an earlier "
                       f"session stopped while writing it): the unfinished line is removed")
        files.write_run(self._run_info(args))
        return files

    def _run_info(self, args) -> dict[str, Any]:
        # `config` is what `ruledsl audit` gives the rules for this run (readers/run_config.py)
        # `include_builtin`, `rules_dirs`, `code_rules` and `custom_alerts`: the rules it ran, for an
        # audit to run them again (diagnostics_files.callback_rules reads them back)
        info = {"trainer": self.trainer, "trainer_from": self.trainer_from, "ruledsl_version": __version__,
                "rules": [r.name for r in self.active_rules], "config_class": type(args).__name__,
                "config": self.config, "versions": _versions(), "stop_on": self.stop_on,
                **rules_kept(self.include_builtin, self.rules_dirs, self.code_rules, self.custom_alerts)}
        if self.rules_not_kept:
            info["rules_not_kept"] = list(self.rules_not_kept)  # an audit cannot run them again
        if self.resumed:
            info["resumed"] = self.resumed
        if self.stopped is not None:
            info["stopped"] = self.stopped
        if self.coverage is not None:
            info["coverage"] = [record.as_dict() for record in self.coverage]
        return info

    # ------------------------------------------------------------ a resumed run (ruledsl/integrations/resume.py)

    def _session_start(self, args, state, hook_kwargs: Mapping[str, Any]) -> ResumeConfigError | None:
        """At train begin: the first start saves the configuration; a resume (the checkpoint's step > 0)
        replays the earlier rows into the rules and compares the configuration with the saved one.
        With `resume_policy="error"` and a change, the error to raise before the first step (on every
        rank: they all take the main process's findings)."""
        step = training_step(getattr(state, "global_step", 0)) or 0
        current = self.fuse.run(CONFIG, self._snapshot, args, hook_kwargs)
        directory = self._directory(args)
        if step == 0:
            if self._main and current is not None:
                self.fuse.run("config.json", resume.save_snapshot, directory, current, 0)
            return None
        found = self.fuse.run("the resume replay", self._replay, state, step, directory) if self._main else None
        changes = self.fuse.run("the configuration check", self._drift, directory, current, step) \
            if self._main else None
        # every rank takes the main process's findings: the same rules state and the same decision everywhere
        found, changes = ranks_agree((found, changes))
        if found is not None and not self._main:
            self.fuse.run("the resume replay", self._feed_replay, found)
        self.resumed.append({"step": step, "replayed_rows": len(found.rows) if found else 0,
                             "replayed_from": found.source if found else None,
                             "changes": [dataclasses.asdict(c) for c in changes or []]})
        if changes and self.resume_policy != "ignore":
            self._config_drift(changes, step, args)
        if not (changes and self.resume_policy == "error" and resume.stopping(changes)):
            return None
        listed = "; ".join(change.text() for change in resume.stopping(changes))
        return ResumeConfigError(
            f"ruledsl: resume_policy='error' and this resume at step {step} changes the configuration saved at "
            f"the first start ({directory / resume.CONFIG_FILE}): {listed}. Resume with the first configuration, "
            f"or pass resume_policy='warn' to train on and keep the change as an alert.")

    def _snapshot(self, args, hook_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return resume.snapshot(self.config, world_size=getattr(args, "world_size", None),
                               model=resume.model_name(hook_kwargs.get("model")),
                               dataset=resume.dataset_fingerprint(hook_kwargs.get("train_dataloader")),
                               versions=_versions())

    def _replay(self, state, step: int, directory: Path) -> resume.Replay | None:
        """The rows logged up to `step` fed to the rules (nothing announced again), and one line saying so."""
        found = resume.replay_rows(directory / METRICS_FILE, step) or \
            resume.log_history_rows(getattr(state, "log_history", None), step)
        if found is None:
            self._warn(f"ruledsl: resumed at step {step}, but neither {directory / METRICS_FILE} nor the checkpoint "
                       f"holds the earlier rows: the rules start afresh (streaks and baselines of the first "
                       f"{step} steps are not known to them)")
            return None
        opened = self._feed_replay(found)
        self._say(resume_line(found, step, opened), logging.INFO)
        return found

    def _feed_replay(self, found: resume.Replay) -> list[dict]:
        """The replayed rows through the rules: started episodes are remembered as announced (they
        were, in the earlier session); the ones still open at the end are returned."""
        if self.monitor is None:
            return []
        for step, row in resume.in_step_order(found.rows):
            for event in self.monitor.update(step, row):
                if event.kind == "started":
                    self.started.append(dict(event.record))
                elif getattr(event, "withdraws", None) == "started":
                    withdrawn = (event.record["rule"], event.record["first_step"])
                    self.started = [r for r in self.started if (r["rule"], r["first_step"]) != withdrawn]
        return self.monitor.open_episodes()

    def _drift(self, directory: Path, current: dict[str, Any] | None, step: int) -> list[resume.Change] | None:
        try:
            saved = resume.load_snapshot(directory)
        except ValueError as exc:
            self._warn(f"ruledsl: {exc}: the configuration is not compared on this resume")
            return None
        if saved is None or current is None:
            self._warn(f"ruledsl: resumed at step {step}, but no configuration was saved at the first start "
                       f"({directory / resume.CONFIG_FILE}): the configuration is not compared on this resume; "
                       f"this one is saved for the next")
            if current is not None:
                resume.save_snapshot(directory, current, step)
            return None
        return resume.drift(saved, current)

    def _config_drift(self, changes: list[resume.Change], step: int, args) -> None:
        """The changed configuration as one alert, where a rule's alert goes (it stops nothing:
        `resume_policy` decides that)."""
        record = resume.drift_record(changes, run=self.monitor.run if self.monitor else "default", step=step)
        self.started.append(record)
        if not self._main:
            return
        if self.files is not None:
            self.fuse.run("alerts.jsonl", self.files.write_event, {"event": "started", **record})
        self._spread(record)

    def _log(self, args, state, control, logs) -> None:
        if not self._watching:
            self._begin(args, state)
        read = self._read_row(state, logs)
        if read is None:
            return
        step, row = read
        if self.ranks is not None:  # every rank, every row: the gather is collective (integrations/ranks.py)
            gathered = self.fuse.run(SYSTEM_METRICS, self.ranks.on_row)
            if gathered:  # every N rows only; still a row as metrics_row reads it (numbers), not read again
                row = MetricsRow({**row, **gathered})
        self.recent_rows.append((step, row))
        if self.files is not None:
            self.fuse.run("metrics.jsonl", self.files.write_metrics, step, row)
        if self.monitor is None:
            return
        events = self.fuse.run(RULES, self.monitor.update, step, row) or []
        self._report_monitor_news()
        for event in events:
            self._handle(event, args, control)
        if self._main and not self._coverage_said and _is_training_row(row):
            self._coverage_said = True
            self.fuse.run(COVERAGE, self._announce_coverage_so_far)

    def _read_row(self, state, logs) -> tuple[int, dict[str, Any]] | None:
        """The step and the row as the rules and metrics.jsonl take them (None: nothing to read);
        what is left out is said once per key, a row skipped whole once per reason."""
        if logs is None:
            return None
        if not isinstance(logs, Mapping):
            self._skipped_row("no_mapping", f"on_log got {shown(logs)}, not a mapping of keys to values")
            return None
        if not logs:
            return None
        given = getattr(state, "global_step", None)
        step = training_step(given)
        if step is None:
            self._skipped_row("no_step", f"state.global_step is {shown(given)}, which names no training step")
            return None
        row, left_out = metrics_row(logs)
        for key, why in left_out:
            self._left_out.note(key, f"ruledsl: at step {step}, {why}: it is left out of the rules and "
                                     f"metrics.jsonl (said once per key)")
        return step, row

    def _skipped_row(self, kind: str, why: str) -> None:
        if kind not in self._rows_noted:
            self._rows_noted.add(kind)
            self._warn(f"ruledsl: {why}: the row is skipped, for the rules and metrics.jsonl (said once)")

    def _announce_coverage_so_far(self) -> None:
        """After the first training row: how many rules see their keys, and the others with why."""
        if self.monitor is None or not self.fuse.is_on(RULES):
            return
        self._say(coverage_so_far(self.monitor.coverage(), len(self.monitor.rules)), logging.INFO)

    def _coverage_at_end(self) -> list[CoverageRecord] | None:
        """The rules never evaluated on the run, said once with their reasons (None: not known)."""
        if self.monitor is None or not self.fuse.is_on(RULES):
            return None
        records = self.monitor.coverage()
        text = coverage_at_end(records, len(self.monitor.rules))
        if self.summary:  # the summary prints it, with the alerts (`_summarize`)
            logger.info(text)
        else:
            self._say(text, logging.INFO)
        return records

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
            self._warn(f"ruledsl: {notice}")
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
            self._spread(record)
        if self._stops(record):
            self._stop(record, args, control)

    def _spread(self, record: dict) -> None:
        """A started episode where people see it: the console and log, the trackers, the webhooks."""
        self._announce(record)
        for tracker in self.trackers:
            self.fuse.run(f"the {tracker.name} tracker", tracker.alert, record)
        if self.notifier is not None:  # queued only: the posting is on the notifier's own thread
            self.fuse.run(NOTIFICATIONS, self.notifier.episode, record)

    def _announce(self, record: dict) -> None:
        level = LOG_LEVELS.get(str(record.get("severity")), logging.WARNING)
        if self.console:  # on stderr, where the Trainer's warnings go (console.py says why)
            show(styled_alert(record, sys.stderr), sys.stderr)
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
            self.fuse.run(f"the {tracker.name} tracker", tracker.stopped, reason, record["first_step"])
        if self.postmortem_guard is not None:
            self.postmortem_guard.write(STOP_ON)  # behind the fuse itself

    def _end(self, args, state) -> None:
        if self.ranks is not None:  # its own part: the hooks come off even after the gathering was switched off
            self.fuse.run("the rank timing hooks", self.ranks.stop)
            self.ranks = None
        if not self._watching:
            return
        if self.monitor is not None:
            for event in self.fuse.run(RULES, self.monitor.finish) or []:
                self._handle(event, args, _NoControl())
            if self.files is not None:  # the final episodes, open ones included: what an audit reports
                for record in self.fuse.run(RULES, self.monitor.episodes) or []:
                    self.fuse.run("alerts.jsonl", self.files.write_event, {"event": "episode", **record})
            if self._main:
                self.coverage = self.fuse.run(COVERAGE, self._coverage_at_end)
                if self.files is not None and self.coverage is not None:
                    self.fuse.run("run.json", self.files.write_run, self._run_info(args))
        directory = Path(self.files.directory) if self.files is not None else None
        if self.files is not None:
            self.fuse.run("the diagnostics files", self.files.close)
            if self.report and self._main:  # from the files just closed: what `ruledsl report` would write
                self.fuse.run(REPORT, write_run_report, self.files.directory)
            self.files = None
        if self.summary and self._main:  # last of the files: it names them, the report included
            self.run_summary = self.fuse.run(SUMMARY, self._summarize, state, directory)
        text = alerts_jsonl(self.started)
        for tracker in self.trackers:
            self.fuse.run(f"the {tracker.name} tracker", tracker.finish, text)
        if self.notifier is not None:  # last: what is queued until now goes out, waiting a few seconds at most
            self.fuse.run(NOTIFICATIONS, self.notifier.close, NOTIFY_CLOSE_SECONDS)
        self._watching = False  # a later train() on the same trainer starts a new watch; results stay readable

    def _summarize(self, state, directory: Path | None) -> RunSummary:
        """The end-of-training summary: printed once (stderr, with the alerts), written to summary.md,
        given to the trackers. Only `on_train_end` makes one: an abnormal end has the postmortem."""
        episodes = self.fuse.run(RULES, self.monitor.episodes) if self.monitor is not None else None
        episodes = list(episodes if episodes is not None else self.started)  # started: no rules state (a fault)
        seen = {(r.get("rule"), r.get("first_step")) for r in episodes}
        # alerts of the callback's own (config_drift at a resume) are no rule's episodes: added as they started
        episodes += [r for r in self.started if (r.get("rule"), r.get("first_step")) not in seen
                     and r.get("rule") not in {rule.name for rule in self.active_rules}]
        summary = build_summary(episodes, run=self.monitor.run if self.monitor else "default", trainer=self.trainer,
                                last_step=training_step(getattr(state, "global_step", None)),
                                total_rules=len(self.monitor.rules) if self.monitor else len(self.active_rules),
                                coverage=self.coverage, stopped=self.stopped, directory=directory,
                                report=self.report, postmortem=self._postmortem_written())
        text = markdown(summary)
        written = self.fuse.run("summary.md", write_summary, directory / SUMMARY_FILE, text) \
            if directory is not None else None
        if written is None:  # the files line names only what is there
            summary = dataclasses.replace(summary, files=[name for name in summary.files if name != SUMMARY_FILE])
        if self.console:
            show(console_text(summary, colour=console_style(sys.stderr) == COLOUR), sys.stderr)
        logger.info("%s", console_text(summary, colour=False))
        for tracker in self.trackers:  # a tracker's fault is that tracker's, not the summary's
            self.fuse.run(f"the {tracker.name} tracker", _give_summary, tracker, summary, text)
        return summary

    def _postmortem_written(self) -> bool:
        return self.postmortem_guard is not None and self.postmortem_guard.written is not None


def _give_summary(tracker: Any, summary: RunSummary, text: str) -> None:
    tracker.summary(summary, text)


def write_run_report(directory: Path) -> None:
    """diagnostics/report.html of the run (report=True); imported here, when asked: polars and the batch engine."""
    from ruledsl.report.standalone import write_run_report as write

    logger.info("ruledsl: report written to %s", write(directory))


class _NoControl:
    """Stands in for TrainerControl after training ended: a stop request has no effect then."""
    should_training_stop = False


@dataclasses.dataclass
class _Collected:
    rules: list[Rule]
    custom_alerts: dict[str, str]  # name → inline text: every inline alert among the rules
    code_rules: list[dict[str, Any]]  # the other rules given in code, as rule-file mappings
    not_kept: list[str]  # the names of rules given in code that no mapping describes (a Template of your own…)


def _postmortem_rows(count: Any) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"postmortem_rows takes a whole number of rows (0 or more), not {count!r}")
    return count


def _notify_urls(notify: str | Sequence[str] | None) -> list[str]:
    """The webhook URLs of `notify`, checked (http or https); none for None or an empty list."""
    if notify is None or (not isinstance(notify, str) and isinstance(notify, Sequence) and not notify):
        return []
    try:
        return webhook_urls(notify)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"notify: {exc}") from None


def _rule_paths(rules_dir) -> list[Path]:
    dirs = [rules_dir] if isinstance(rules_dir, (str, Path)) else list(rules_dir or [])
    return [Path(d).expanduser().resolve() for d in dirs]


def _collect_rules(rules, dirs: list[Path], custom_alerts, include_builtin: bool, ids: Catalog) -> _Collected:
    """Builtin library + rule files + `rules` + inline `custom_alerts`, validated now."""
    loaded = load_rules(dirs, trainer=None, include_builtin=include_builtin) if dirs or include_builtin else []
    collected = _Collected(loaded, {}, [], [])
    for item in rules or []:
        if isinstance(item, str):
            _add_inline(collected, item, None, f"rule {item!r}", ids)
        elif isinstance(item, Rule):
            collected.rules.append(item)
            text = item.condition.source if item.origin == "inline" else None
            if text is not None and _same_rule(text, item):
                collected.custom_alerts[item.name] = text
            else:
                _keep_mapping(collected, item)
        elif isinstance(item, Mapping):
            rule = Rule.from_dict(item, origin="code")
            collected.rules.append(rule)
            _keep_mapping(collected, rule)
        else:
            raise TypeError(f"a rule must be a Rule, a mapping or an inline-alert string, not {type(item).__name__}")
    for name, text, label in _custom_alerts(custom_alerts):
        _add_inline(collected, text, name, label, ids)
    return collected


def _custom_alerts(custom_alerts) -> list[tuple[str | None, Any, str]]:
    """(name or None for a generated one, text, how errors name it) for each custom alert."""
    if custom_alerts is None:
        return []
    if isinstance(custom_alerts, str):
        return [(None, custom_alerts, "custom alert 1")]
    if isinstance(custom_alerts, Mapping):
        found: list[tuple[str | None, Any, str]] = []
        for name, text in custom_alerts.items():
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise ValueError(f"custom alert name {name!r}: a name is lower-case letters, digits and _, "
                                 f"starting with a letter (as a rule's name)")
            found.append((name, text, f"custom alert {name!r}"))
        return found
    if not isinstance(custom_alerts, Iterable):
        raise TypeError(f"custom_alerts takes a mapping of names to inline alerts, or a list of inline alerts, "
                        f"not {type(custom_alerts).__name__}")
    return [(None, text, f"custom alert {number}") for number, text in enumerate(custom_alerts, start=1)]


def _add_inline(collected: _Collected, text: Any, name: str | None, label: str, ids: Catalog) -> None:
    """One inline alert, checked now (text, trainer ids, name), under `name` if given."""
    if not isinstance(text, str):
        raise TypeError(f"{label}: an inline alert is text, not {type(text).__name__}")
    try:
        rule = rule_from_inline(text, catalog=ids)
    except RuleSyntaxError as exc:  # the same error (line, column, caret), naming the alert
        d = exc.diagnostic
        raise RuleSyntaxError(dataclasses.replace(d, message=f"{label}: {d.message}"), exc.source,
                              exc.expected) from None
    for trainer in rule.trainers:
        try:
            ids.check_trainer(trainer)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
    if name is not None:
        rule = dataclasses.replace(rule, name=name)
    clash = next((r for r in collected.rules if r.name == rule.name), None)
    if clash is not None:
        raise ValueError(f"{label}: a rule named {rule.name!r} is already loaded ({clash.origin or 'code'}); "
                         f"give the alert another name")
    collected.rules.append(rule)
    collected.custom_alerts[rule.name] = text


def _keep_mapping(collected: _Collected, rule: Rule) -> None:
    """The rule as the rule-file mapping that reads back to it, for run.json; its name among those
    not kept when there is none (a rule built in code with parts of its own)."""
    try:
        mapping = rule.to_dict()
        kept = Rule.from_dict(mapping, origin=rule.origin) == rule
    except Exception:  # whatever a hand-built rule holds: only run.json's account of it is at stake
        kept = False
    if kept:
        collected.code_rules.append(mapping)
    else:
        collected.not_kept.append(rule.name)


def _same_rule(text: str, rule: Rule) -> bool:
    """Whether the inline alert `text`, under the rule's name, is `rule` (not changed since it was read)."""
    try:
        return dataclasses.replace(rule_from_inline(text), name=rule.name) == rule
    except ValueError:
        return False


def _is_training_row(logs: Mapping[str, Any]) -> bool:  # keys are text: a row from metrics_row
    """A row of training metrics (not an evaluation row, not the summary row at the end)."""
    return any(key not in NOT_TRAINING and not key.startswith(("eval_", "test_")) for key in logs)


def _rules(count: int) -> str:
    return f"{count} rule" + ("" if count == 1 else "s")


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
