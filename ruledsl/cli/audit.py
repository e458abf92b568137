"""`ruledsl audit`: stored training logs → alert episodes, and the rules never evaluated.

Nothing is silent (docs/language.md §4): the report ends with the rules that could never fire
on a run (`--coverage FILE` writes them as JSON records, `--strict-coverage` fails on them),
an input skipped or only partly read is a warning and exit status 3 (`--strict-inputs` fails
on it), and what cannot be what the user meant is a usage error (exit 2): a PATH that does not
exist (unless `--allow-missing`), a `--rules` path holding no rule file, an unknown `--trainer`,
two `--alert`s of one name, an `--output` or `--coverage` file that the audit would read.

The files it writes are written whole or not at all (a temporary file beside them, renamed
over them), and what it spills to disk while reading lives in a temporary folder of its own,
removed however the audit ends: done, failed, Ctrl-C or SIGTERM (docs/report.md).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import typer

from ruledsl.alerts import SEVERITIES, CoverageRecord, at_least, json_safe
from ruledsl.cli.app import (
    CHECK_FAILED,
    INPUTS_INCOMPLETE,
    INTERRUPTED,
    Terminated,
    app,
    check_rule_paths,
    fail,
    sigterm_unwinds,
)
from ruledsl.cli.progress import ProgressLine
from ruledsl.cli.readable_help import choices
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.integrations.diagnostics_files import callback_rules
from ruledsl.integrations.notify import QUEUE_SIZE, Notifier, webhook_urls
from ruledsl.lang.errors import FrameError, RuleSyntaxError
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.config import ConfigError, looks_like_config_file, parse_override, read_config_file
from ruledsl.model.loader import RULE_SUFFIXES, RuleLoadError, discover, load_rules
from ruledsl.model.rule import Rule, rule_from_inline
from ruledsl.readers import Archive, ReadProblem, discovery, read_archive
from ruledsl.readers.common import Source
from ruledsl.report import Format, ReportContext, choose_format, described, render
from ruledsl.report.coverage import counts_text
from ruledsl.report.text import printable

# Shown under the options of `ruledsl audit --help` (\b: as written, not rewrapped).
EXIT_STATUS = """\b
Exit status, the first that applies:
  130  interrupted (Ctrl-C); its temporary files are removed.
  143  terminated (SIGTERM); its temporary files are removed.
  2    nothing audited, or no report to trust: a usage error, no readable
       run, an --output or --coverage file that the audit would read, or
       one that cannot be written (it is left as it was).
  1    a check failed: an alert at or above --fail-on, a rule never
       evaluated (--strict-coverage), an input skipped or only partly read
       (--strict-inputs).
  3    audited, but an input was skipped or only partly read (the warnings
       say which and why): the report lacks what it held.
  0    every input read in full, and no check failed.
"""


REPORT_FORMATS = choices(Format)  # `--format table|json|…` in --help
NOTIFY_WAIT = 30.0  # seconds `--notify` waits at most for its posts after the report


@app.command(epilog=EXIT_STATUS)
def audit(
    paths: list[Path] = typer.Argument(..., metavar="PATH…", help="Log files or directories: *.jsonl (metrics.jsonl), "
                                       "trainer_state.json (newest checkpoint), *.csv, *.parquet, TensorBoard "
                                       "event files, MLflow stores (mlruns/). Each run is found once."),
    rules: list[Path] = typer.Option([], "--rules", metavar="PATH", help="A rule file or directory (repeatable)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Leave out the builtin rule library."),
    trainer: str | None = typer.Option(None, "--trainer", metavar="ID", help="Trainer id of every run (sft, dpo, grpo, "
                                          "…). Without it: the run's diagnostics/run.json, else a guess from its "
                                          "metric keys, else unknown: the rules of every trainer its keys fit, "
                                          "or every rule."),
    alert: list[str] = typer.Option([], "--alert", metavar="[NAME=]TEXT", help="An inline alert, e.g. "
                                    "\"grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed\" "
                                    "(repeatable). With a leading NAME= (lowercase letters, digits, _) its "
                                    "records carry that rule name instead of a generated one."),
    output_format: Format | None = typer.Option(None, "--format", metavar=REPORT_FORMATS,
                                                help="table (default), json (one array of "
                                                   "records, docs/language.md §4), jsonl, csv, markdown or "
                                                   "html (with charts); "
                                                   "without it, the --output suffix chooses (.json, .md, …)."),
    output: Path | None = typer.Option(None, "--output", metavar="FILE", help="Write the report here instead of stdout "
                                       "(whole or not at all). Not a file the audit reads, nor one it would read as "
                                       "a log next time (a .jsonl, .csv or .parquet inside an audited folder)."),
    max_charts: int = typer.Option(100, "--max-charts", min=0, metavar="N", help="Charts in a markdown or html report "
                                   "at most: those of the most severe alerts; the report says how many it left "
                                   "out (every alert stays in its table)."),
    fail_on: str | None = typer.Option(None, "--fail-on", metavar="SEVERITY", help="Exit 1 when an alert of this "
                                          "severity or worse is found (low, medium, high, critical)."),
    coverage_file: Path | None = typer.Option(None, "--coverage", metavar="FILE", help="Write the coverage "
                                              "here as JSON records (run, rule, metric, reason, detail): "
                                              "the rules never evaluated on a run, and why "
                                              "(docs/language.md §4)."),
    strict_coverage: bool = typer.Option(False, "--strict-coverage", help="Exit 1 when a rule was never "
                                         "evaluated on a run, for any reason but a `when` that is false "
                                         "(for CI on a known-good archive)."),
    strict_inputs: bool = typer.Option(False, "--strict-inputs", help="Exit 1 when an input was skipped or "
                                       "only partly read (a damaged line or row, an unreadable file), naming "
                                       "them; without it, such an audit exits 3."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="A PATH that does not exist is a "
                                       "warning, not a usage error (nor a skipped input)."),
    streaming: bool | None = typer.Option(None, "--streaming/--no-streaming", help="Run the query on polars' "
                                             "streaming engine (bounded memory). Default: only for archives "
                                             "larger than a quarter of the machine's memory."),
    config: list[str] = typer.Option([], "--config", metavar="KEY=VALUE|FILE", help="Set a key of every "
                                     "run's configuration, which rules read as config.KEY and in `when` "
                                     "(repeatable; later ones win, and all win over what the logs keep: "
                                     "run.json, MLflow params, W&B's config, TensorBoard's args). KEY=VALUE "
                                     "types VALUE as JSON or YAML: beta=0.1, use_vllm=true, loss_type=sigmoid, "
                                     "report_to=[wandb] (report_to.0); KEY=null removes the key. FILE: a "
                                     "YAML or JSON file of keys (nested keys join with '.'; W&B's "
                                     "config.yaml works too), any existing file or a name ending in .yaml, "
                                     ".yml or .json."),
    notify: list[str] = typer.Option([], "--notify", metavar="URL", help="POST each alert episode found to "
                                     "this webhook as JSON, once per episode (repeatable): a Slack or "
                                     "Mattermost incoming-webhook URL, Discord's with /slack at the end, or "
                                     "your own endpoint (the JSON's `ruledsl` object holds the record). "
                                     f"Sent after the report, waiting {NOTIFY_WAIT:g} s at most; a failed "
                                     "post is said on stderr and leaves the exit status as it is."),
    engine: str = typer.Option("polars", "--engine", metavar="polars|spark|ray", help="Where the audit runs: "
                               "polars (in this process), or spark or ray (extras ruledsl[spark], ruledsl[ray]), "
                               "which read PATH themselves (Parquet, or JSON Lines: *.jsonl; any URI they read: "
                               "s3://, hdfs://, file://) and audit each run as polars would."),
    spark_master: str | None = typer.Option(None, "--spark-master", metavar="URL", help="--engine spark: the "
                                            "cluster to join (default: local[N] on every core)."),
    ray_address: str | None = typer.Option(None, "--ray-address", metavar="ADDRESS", help="--engine ray: the "
                                           "cluster to join (default: a local one, ray.init())."),
    output_dataset: str | None = typer.Option(None, "--output-dataset", metavar="URI", help="--engine spark|ray: "
                                              "the engine writes the records there as Parquet (for archives "
                                              "whose records are too many to collect); nothing on stdout."),
) -> None:
    """Audit stored training logs with the builtin rules and your own."""
    _check_choices(fail_on, trainer)
    if engine != "polars" or output_dataset is not None:
        _audit_distributed(engine, paths, rules, no_builtin, trainer, alert, output_format, output, output_dataset,
                           fail_on, coverage_file, strict_coverage, strict_inputs, config, spark_master,
                           ray_address, streaming=streaming, notify=notify)
        return
    _check_paths(paths, allow_missing)
    check_rule_paths(rules)
    _check_outputs(paths, output, coverage_file)
    overrides = config_options(config)
    webhooks = _webhooks(notify)
    rule_set = _rules(rules, trainer, no_builtin, alert)
    missing = {path for path in paths if not path.exists()}  # --allow-missing let them be
    with _stops_cleanly(), _scratch_folder():
        archive, audited = _read_and_audit(paths, rule_set, trainer, streaming, overrides, no_builtin)
        records = audited.records
        chosen, mismatch = choose_format(output_format, output)
        if mismatch:
            _warn(mismatch)
        context = ReportContext(audited.frame, rule_set, n_runs=len(audited.runs), trainer=trainer,
                                terminal=output is None and sys.stdout.isatty(), max_charts=max_charts,
                                coverage=audited.coverage)
        context = described(context, chosen, archive.sources, audited.runs, inputs=paths, rule_paths=rules,
                            builtin=not no_builtin, inline_alerts=len(alert))
        report = render(records, chosen, context)
        if output is not None:
            _write_report(output, report, f"{records.height} alert episode(s) as {chosen.value}")
        else:
            typer.echo(report, nl=False)
        if coverage_file is not None:
            _write_coverage(coverage_file, audited.coverage)
        if webhooks:
            _notify(webhooks, records)
    failed = fail_on is not None and any(at_least(s, fail_on) for s in records["severity"])
    never = [r for r in audited.coverage if r.reason != "when_false"]
    if strict_coverage and never:
        typer.echo(f"--strict-coverage: {len({r.rule for r in never})} rule(s) never evaluated on "
                   f"{len({r.run for r in never})} run(s) ({counts_text(never)})", err=True)
    incomplete = _incomplete(archive, missing)
    _say_incomplete(incomplete, strict_inputs)
    if failed or (strict_coverage and never) or (strict_inputs and incomplete):
        raise typer.Exit(CHECK_FAILED)
    if incomplete:
        raise typer.Exit(INPUTS_INCOMPLETE)


def _audit_distributed(engine: str, paths: list[Path], rules: list[Path], no_builtin: bool, trainer: str | None,
                       alerts: list[str], output_format: Format | None, output: Path | None,
                       output_dataset: str | None, fail_on: str | None, coverage_file: Path | None,
                       strict_coverage: bool, strict_inputs: bool, config: list[str], spark_master: str | None,
                       ray_address: str | None, *, streaming: bool | None, notify: list[str]) -> None:
    """--engine spark|ray: ruledsl/distributed/cli_support.py (imported only then)."""
    if engine not in ("polars", "spark", "ray"):
        fail(f"--engine takes polars, spark or ray, not {engine!r}")
    if engine == "polars":
        fail("--output-dataset is for --engine spark or ray (which write it themselves); with polars, use --output")
    for option, given in (("--streaming", streaming is not None), ("--notify", bool(notify))):
        if given:
            fail(f"{option} goes with --engine polars only")
    check_rule_paths(rules)
    from ruledsl.distributed import cli_support

    _inline_alerts(alerts, [])  # a malformed or twice-named --alert is a usage error here, as in process
    source = cli_support.cli_rule_source(rules, no_builtin, trainer, [_alert_name(text) for text in alerts])
    cli_support.audit_distributed(cli_support.Options(
        engine, paths, source, trainer, config_options(config), output_format, output, output_dataset, fail_on,
        coverage_file, strict_coverage, strict_inputs, spark_master, ray_address))


def _check_choices(fail_on: str | None, trainer: str | None) -> None:
    if fail_on is not None and fail_on not in SEVERITIES:
        fail(f"--fail-on takes one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    if trainer is not None:
        unknown = builtin_catalog().unknown_trainer(trainer)
        if unknown is not None:
            fail(f"--trainer: {unknown.message}")


def _rules(paths: list[Path], trainer: str | None, no_builtin: bool, alerts: list[str]) -> list[Rule]:
    """The rule files (and the builtin library) and the --alert options, as one list."""
    try:
        rule_set = load_rules(paths, trainer=trainer, include_builtin=not no_builtin)
    except RuleLoadError as exc:
        fail(str(exc))
    return rule_set + _inline_alerts(alerts, rule_set)


def _read_and_audit(paths: list[Path], rule_set: list[Rule], trainer: str | None, streaming: bool | None,
                    overrides: dict[str, Any], no_builtin: bool) -> tuple[Archive, Any]:
    """The logs read (what cannot be read is a warning) and audited; a table damaged past
    what reading it checked is salvaged, and the audit run again."""
    progress = ProgressLine("reading logs")
    archive = read_archive(list(paths), progress=progress)
    progress.close()
    for problem in archive.problems:
        _warn(problem)
    for note in archive.notes:
        _note(note)
    _hint_rules_given_as_logs(paths, archive)
    if not archive.sources:
        fail("no readable run under the given paths")

    def run() -> Any:
        return audit_archive(archive, rule_set, trainer=trainer, streaming=streaming, config=overrides,
                             rules_of=None if no_builtin else _callback_rules)

    try:
        try:
            audited = run()
        except pl.exceptions.PolarsError:
            # A table damaged past the rows checked up front (a Parquet column that does not decode):
            # read each source through once, keep what decodes, say what was lost, audit again.
            for problem in archive.salvage():
                _warn(problem)
            if not archive.sources:
                fail("no readable run under the given paths")
            audited = run()
    except FrameError as exc:
        fail(str(exc))
    except pl.exceptions.PolarsError as exc:
        fail(f"reading the logs failed: {str(exc).strip().splitlines()[0]}")
    for note in audited.notes:
        _note(note)
    return archive, audited


def _warn(what: object) -> None:
    """A warning on stderr, one line: paths and run ids may hold control characters."""
    typer.echo(f"warning: {printable(what)}", err=True)


def _note(what: object) -> None:
    typer.echo(f"note: {printable(what)}", err=True)


# ---------------------------------------------------------------- --notify


def _webhooks(notify: list[str]) -> list[str]:
    """The --notify URLs, checked before anything is read (a usage error names a bad one)."""
    if not notify:
        return []
    try:
        return webhook_urls(notify)
    except ValueError as exc:
        fail(f"--notify: {exc}")


def _notify(webhooks: list[str], records: pl.DataFrame) -> None:
    """One POST per episode to each webhook, then one line on stderr. Waits NOTIFY_WAIT seconds
    at most; what failed or was not sent by then the notifier says on stderr. The exit status
    is the audit's: a chat webhook being down says nothing about the runs."""
    notifier = Notifier(webhooks, queue_size=max(QUEUE_SIZE, records.height))  # every episode fits
    for record in records.iter_rows(named=True):
        notifier.episode(record)
    counts = notifier.close(NOTIFY_WAIT)
    typer.echo(f"notify: {counts.queued} episode(s), {counts.delivered} of {counts.queued * len(webhooks)} "
               f"post(s) delivered to {len(webhooks)} webhook(s)", err=True)


# ---------------------------------------------------------------- inputs skipped or partly read

SHOWN_INPUTS = 5  # inputs named in the closing line at most


def _incomplete(archive: Archive, missing: set[Path]) -> list[ReadProblem]:
    """The problems that cost the audit data (`Archive.incomplete`: a run or rows not read),
    but for the PATHs that --allow-missing let be missing: their absence was expected."""
    return [p for p in archive.incomplete if p.path not in missing]


def _say_incomplete(incomplete: list[ReadProblem], strict: bool) -> None:
    """One closing line naming the inputs skipped or only partly read (the warnings above
    say why), so that a CI log shows why the status is 3 (or 1 with --strict-inputs)."""
    inputs = list(dict.fromkeys(p.path for p in incomplete))
    if not inputs:
        return
    named = ", ".join(map(str, inputs[:SHOWN_INPUTS]))
    if len(inputs) > SHOWN_INPUTS:
        named += f" and {len(inputs) - SHOWN_INPUTS} more"
    what = f"{len(inputs)} input(s) skipped or only partly read: {named}"
    if strict:
        typer.echo(printable(f"--strict-inputs: {what}"), err=True)
    else:
        typer.echo(printable(f"warning: {what} (exit status {INPUTS_INCOMPLETE}; --strict-inputs fails "
                             f"instead)"), err=True)


# ---------------------------------------------------------------- stopping, and temporary files


@contextlib.contextmanager
def _stops_cleanly() -> Iterator[None]:
    """Ctrl-C and SIGTERM end the audit with their own exit status (130, 143) and one line
    on stderr, once the `with` blocks inside them have removed the temporary files; without
    this, SIGTERM killed the process and left what it had spilled (hundreds of MB)."""
    with sigterm_unwinds():
        try:
            yield
        except KeyboardInterrupt:
            _stopped("interrupted (Ctrl-C)")
            raise typer.Exit(INTERRUPTED) from None
        except Terminated:
            _stopped("terminated (SIGTERM)")
            raise


def _stopped(how: str) -> None:
    with contextlib.suppress(OSError):  # stderr may be gone with whoever stopped us
        typer.echo(f"error: {how}: the audit stopped, its temporary files are removed", err=True)


SCRATCH_PREFIX = "ruledsl-audit-"


@contextlib.contextmanager
def _scratch_folder() -> Iterator[Path]:
    """A temporary folder of this audit's own (in TMPDIR), where the readers spill what they
    parse of a large log (`readers.common.Spill` makes its folders with tempfile, whose
    default folder this is while the audit runs), removed when the audit ends, however it
    ends. The reports read those files, so the folder lasts until they are written. polars'
    own spills go to the process's folder meanwhile (`_polars_spill_folder`)."""
    polars_folder = _polars_spill_folder()
    try:
        folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    except OSError as exc:
        fail(f"cannot make a temporary folder in {tempfile.gettempdir()}: {exc.strerror or exc} "
             "(TMPDIR chooses where)")
    before, polars_before = tempfile.tempdir, os.environ.get(POLARS_SPILLS)
    tempfile.tempdir = str(folder)
    if polars_folder is not None:
        os.environ[POLARS_SPILLS] = str(polars_folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = before
        _restore_variable(POLARS_SPILLS, polars_before)  # not handed down to what this process starts later
        with _sigterm_held():
            _remove(folder)


def _remove(folder: Path) -> None:
    try:
        folder.rmdir()  # the common case: nothing was spilled
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


def _restore_variable(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """SIGTERM held back (delivered on the way out): a clean-up is not cut short half way."""
    held = {signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


POLARS_SPILLS = "POLARS_OOC_SPILL_DIR"
_polars_spills: list[Path] = []  # the process's folder for polars' spills, once made


def _polars_spill_folder() -> Path | None:
    """Where polars spills during the audits of this process. Past its memory budget, polars'
    streaming engine spills to disk: by default under /var/tmp/polars-$USER/spill/PID, a
    folder it never removes. polars (2.1) reads POLARS_OOC_SPILL_DIR once a process and
    panics should that folder go, so this folder is the process's rather than one audit's:
    made in the temporary folder (or inside the user's own POLARS_OOC_SPILL_DIR, keeping
    the disk they chose) before the first query, removed at exit, which Ctrl-C and SIGTERM
    (`sigterm_unwinds`) reach too. None: it cannot be made (polars spills where it would)."""
    if not _polars_spills:
        chosen = os.environ.get(POLARS_SPILLS) or None
        try:
            if chosen is not None:
                os.makedirs(chosen, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="ruledsl-polars-", dir=chosen))
        except OSError:
            return None  # the audit's own folder, made next, says why when it cannot be made either
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _polars_spills.append(folder)
    return _polars_spills[0]


# ---------------------------------------------------------------- rules and paths


def _callback_rules(source: Source) -> list[Rule] | None:
    """The rules a DiagnosticsCallback ran on this run (its run.json keeps them: the builtin
    library, its rule folders, rules given in code, named custom alerts), so that an audit of
    its output directory re-runs exactly those; None for other logs. A run.json that no longer
    loads is a warning, and the run gets the audit's rules."""
    if source.metadata is None:
        return None
    try:
        return callback_rules(json.loads(source.metadata.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:  # RuleLoadError and RuleSyntaxError are ValueErrors
        _warn(f"{source.metadata}: the callback's rules cannot be read back ({exc}); the audit's rules run on it")
        return None


def _hint_rules_given_as_logs(paths: list[Path], archive: Archive) -> None:
    """A PATH of rule files (a *.yaml file, or a folder of them with no log in it) was meant
    for --rules: say so, since reading it as logs found only "not a log", or nothing at all."""
    for path in paths:
        if path.is_file() and path.suffix in RULE_SUFFIXES:
            what, other = "is YAML, not a log", " (a run's configuration goes with --config)"
        elif path.is_dir() and not any(_inside(source.path, path) for source in archive.sources) \
                and discover([path]):
            what, other = "holds rule files and no log", ""
        else:
            continue
        typer.echo(printable(f"hint: {path} {what}: did you mean --rules {path}?{other}"), err=True)


def _inside(path: Path, folder: Path) -> bool:
    return _real(path).is_relative_to(_real(folder))


def _check_paths(paths: list[Path], allow_missing: bool) -> None:
    """A PATH that does not exist is a usage error, unless --allow-missing (then a warning,
    when the logs are read)."""
    missing = [path for path in paths if not path.exists()]
    if missing and not allow_missing:
        fail(f"{', '.join(map(str, missing))}: no such file or directory (--allow-missing audits "
             "the other paths)")


# `NAME=TEXT`: a rule name, then `=` (an inline alert has none before its `TRAINERS:` prefix;
# its condition may hold `==`, but only after that `:`). A word of other characters before a
# lone `=` was meant as a name too, and is said to be no rule name.
_RULE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NAMED = re.compile(r"(?P<name>[^\s:=]+)=(?!=)")


def _inline_alerts(texts: list[str], loaded: list[Rule]) -> list[Rule]:
    """The --alert options as rules; a `NAME=` prefix names the rule. Two rules of one name
    (two alerts, or an alert and a loaded rule) are a usage error."""
    names = {rule.name: "a loaded rule" for rule in loaded}
    found: list[Rule] = []
    for text in texts:
        name, body = _alert_name(text)
        try:
            rule = rule_from_inline(body)
        except RuleSyntaxError as exc:
            fail(f"in --alert{' ' + name if name else ''}:\n{exc}")
        if name is not None:
            rule = replace(rule, name=name)
        if rule.name in names:
            fail(f"--alert {text!r}: the rule name {rule.name!r} is already used by {names[rule.name]}")
        names[rule.name] = f"--alert {text!r}"
        found.append(rule)
    return found


def _alert_name(text: str) -> tuple[str | None, str]:
    """(NAME, TEXT) of `NAME=TEXT`, or (None, text): only an `=` before the first `:` names."""
    named = _NAMED.match(text)
    if named is None or ":" in named["name"]:
        return None, text
    if not _RULE_NAME.fullmatch(named["name"]):
        fail(f"--alert {text!r}: {named['name']!r} before '=' is not a rule name (a lowercase letter, then "
             "lowercase letters, digits or _)")
    return named["name"], text[named.end():]


# ---------------------------------------------------------------- the files the audit writes


def _check_outputs(paths: list[Path], output: Path | None, coverage: Path | None) -> None:
    """Before anything is read or written: a file the audit writes is none it reads, now or
    the next time (a report inside an audited folder under a log's name would be audited as
    a run), and --output and --coverage are two files."""
    for option, target in (("--output", output), ("--coverage", coverage)):
        if target is None:
            continue
        for path in paths:
            clash = _clash(target, path)
            if clash:
                fail(f"{option} {target} {clash}; write it elsewhere or under another name")
    if output is not None and coverage is not None and _same_file(output, coverage):
        fail(f"--output and --coverage both name {output}; give each a file of its own")


def _clash(target: Path, path: Path) -> str | None:
    """How writing `target` would overwrite or feed the audited PATH `path`, or None."""
    if not path.exists():  # --allow-missing
        return None
    if _same_file(target, path):
        return f"is the audited input {path}"
    if path.is_dir() and _read_as_log(target, path):
        return f"is inside the audited folder {path}, where it would be read as a log (now or the next time)"
    return None


def _same_file(one: Path, other: Path) -> bool:
    """The same file: through links, hard links, `./a` and `a`; a file not made yet by its path."""
    try:
        return os.path.samefile(one, other)
    except OSError:
        return _real(one) == _real(other)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _read_as_log(target: Path, folder: Path) -> bool:
    """Whether reading `folder` reads `target` (readers/discovery.py): a log's name (or the
    callback's run.json, which configures the run beside it) in no hidden folder below it."""
    try:
        relative = _real(target).relative_to(_real(folder))
    except ValueError:
        return False
    if any(part.startswith(".") for part in relative.parts[:-1]):  # the walk skips hidden folders
        return False
    name = relative.name
    if name == discovery.RUN_META_FILE:
        return True
    return discovery.is_log_file(Path(name)) and name != discovery.ALERTS_FILE


def _write_report(path: Path, report: str, what: str) -> None:
    """The report in `path`, and on stderr where it went (as for --coverage): without that
    line, an audit with --output printed nothing at all when the runs were clean."""
    try:
        _write_atomically(path, report)
    except OSError as exc:
        fail(f"cannot write the report to {path}: {_why(exc)} ({path} is left as it was)")
    typer.echo(printable(f"report: {what} written to {path}"), err=True)


def _write_coverage(path: Path, coverage: list[CoverageRecord]) -> None:
    """The coverage as a JSON array of records, written as the report is."""
    text = json.dumps([json_safe(r.as_dict()) for r in coverage], indent=2) + "\n"
    try:
        _write_atomically(path, text)
    except OSError as exc:
        fail(f"cannot write the coverage to {path}: {_why(exc)} ({path} is left as it was)")
    typer.echo(printable(f"coverage: {len(coverage)} record(s) written to {path}"), err=True)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _write_atomically(path: Path, text: str) -> None:
    """`text` in `path`, whole or not at all: written to a temporary file in the same folder,
    flushed to disk, then renamed over `path`. A reader never sees half a file, and a write
    that fails (a full disk, a file size limit, Ctrl-C) leaves the previous file as it was
    and no temporary file behind. Through a link, the file it names is replaced."""
    target = _real(path)
    mode = _mode_for(target)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".tmp")
    try:
        # backslashreplace: a lone surrogate (an undecodable file name) cannot fail the write
        with os.fdopen(descriptor, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _mode_for(target: Path) -> int:
    """The permissions a plain open() would leave: the file's own, or the default for a new one."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _sync_folder(folder: Path) -> None:
    """The rename made durable (where the file system lets a folder be synced)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def config_options(values: list[str]) -> dict[str, Any]:
    """The --config options as one set of keys, later ones winning; a null is kept (it removes
    the key from what the logs keep). A malformed one is a usage error naming it."""
    overrides: dict[str, Any] = {}
    for value in values:
        if looks_like_config_file(value):
            try:
                overrides.update(read_config_file(value))
            except ConfigError as exc:
                fail(f"--config: {exc}")
            continue
        try:
            overrides.update(parse_override(value))
        except ValueError as exc:
            fail(f"--config: {exc}")
    return overrides
