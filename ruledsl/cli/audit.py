"""`ruledsl audit`: stored training logs → alert episodes, and the rules never evaluated.

Nothing is silent (docs/language.md §4): the report ends with the rules that could never fire
on a run (`--coverage FILE` writes them as JSON records, `--strict-coverage` fails on them),
and what cannot be what the user meant is a usage error (exit 2): a PATH that does not exist
(unless `--allow-missing`), a `--rules` path holding no rule file, an unknown `--trainer`, two
`--alert`s of one name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import typer

from ruledsl.alerts import SEVERITIES, CoverageRecord, at_least, json_safe
from ruledsl.cli.app import app, fail
from ruledsl.cli.progress import ProgressLine
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.integrations.diagnostics_files import callback_rules
from ruledsl.lang.errors import FrameError, RuleSyntaxError
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.config import ConfigError, looks_like_config_file, parse_override, read_config_file
from ruledsl.model.loader import RULE_SUFFIXES, RuleLoadError, discover, load_rules
from ruledsl.model.rule import Rule, rule_from_inline
from ruledsl.readers import read_archive
from ruledsl.readers.common import Source
from ruledsl.report import Format, ReportContext, choose_format, render
from ruledsl.report.coverage import counts_text


@app.command()
def audit(
    paths: list[Path] = typer.Argument(..., help="Log files or directories: *.jsonl (metrics.jsonl), "
                                       "trainer_state.json (newest checkpoint), *.csv, *.parquet, TensorBoard "
                                       "event files, MLflow stores (mlruns/). Each run is found once."),
    rules: list[Path] = typer.Option([], "--rules", help="A rule file or directory (repeatable)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Leave out the builtin rule library."),
    trainer: str | None = typer.Option(None, "--trainer", help="Trainer id of every run (sft, dpo, grpo, …). "
                                          "Without it: the run's diagnostics/run.json, else a guess from its "
                                          "metric keys, else unknown: the rules of every trainer its keys fit, "
                                          "or every rule."),
    alert: list[str] = typer.Option([], "--alert", metavar="[NAME=]TEXT", help="An inline alert, e.g. "
                                    "\"grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed\" "
                                    "(repeatable). With a leading NAME= (lowercase letters, digits, _) its "
                                    "records carry that rule name instead of a generated one."),
    output_format: Format | None = typer.Option(None, "--format", help="table (default), json (one array of "
                                                   "records, docs/language.md §4), jsonl, csv, markdown or "
                                                   "html (with charts); "
                                                   "without it, the --output suffix chooses (.json, .md, …)."),
    output: Path | None = typer.Option(None, "--output", help="Write the report here instead of stdout."),
    max_charts: int = typer.Option(100, "--max-charts", min=0, help="Charts in a markdown or html report at "
                                   "most: those of the most severe alerts; the report says how many it left "
                                   "out (every alert stays in its table)."),
    fail_on: str | None = typer.Option(None, "--fail-on", help="Exit 1 when an alert of this severity "
                                          "or worse is found (low, medium, high, critical)."),
    coverage_file: Path | None = typer.Option(None, "--coverage", metavar="FILE", help="Write the coverage "
                                              "here as JSON records (run, rule, metric, reason, detail): "
                                              "the rules never evaluated on a run, and why "
                                              "(docs/language.md §4)."),
    strict_coverage: bool = typer.Option(False, "--strict-coverage", help="Exit 1 when a rule was never "
                                         "evaluated on a run, for any reason but a `when` that is false "
                                         "(for CI on a known-good archive)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="A PATH that does not exist is a "
                                       "warning, not a usage error."),
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
) -> None:
    """Audit stored training logs with the builtin rules and your own."""
    if fail_on is not None and fail_on not in SEVERITIES:
        fail(f"--fail-on takes one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    if trainer is not None:
        unknown = builtin_catalog().unknown_trainer(trainer)
        if unknown is not None:
            fail(f"--trainer: {unknown.message}")
    _check_paths(paths, allow_missing)
    _check_rule_paths(rules)
    overrides = _config_options(config)
    try:
        rule_set = load_rules(rules, trainer=trainer, include_builtin=not no_builtin)
    except RuleLoadError as exc:
        fail(str(exc))
    rule_set += _inline_alerts(alert, rule_set)
    progress = ProgressLine("reading logs")
    archive = read_archive(list(paths), progress=progress)
    progress.close()
    for problem in archive.problems:
        typer.echo(f"warning: {problem}", err=True)
    for note in archive.notes:
        typer.echo(f"note: {note}", err=True)
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
                typer.echo(f"warning: {problem}", err=True)
            if not archive.sources:
                fail("no readable run under the given paths")
            audited = run()
    except FrameError as exc:
        fail(str(exc))
    except pl.exceptions.PolarsError as exc:
        fail(f"reading the logs failed: {str(exc).strip().splitlines()[0]}")
    for note in audited.notes:
        typer.echo(f"note: {note}", err=True)
    records, frame, runs = audited.records, audited.frame, audited.runs
    chosen, mismatch = choose_format(output_format, output)
    if mismatch:
        typer.echo(f"warning: {mismatch}", err=True)
    context = ReportContext(frame, rule_set, n_runs=len(runs), trainer=trainer,
                            terminal=output is None and sys.stdout.isatty(), max_charts=max_charts,
                            coverage=audited.coverage)
    report = render(records, chosen, context)
    if output is not None:
        try:
            output.write_text(report, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write the report to {output}: {exc.strerror or exc}")
    else:
        typer.echo(report, nl=False)
    if coverage_file is not None:
        _write_coverage(coverage_file, audited.coverage)
    failed = fail_on is not None and any(at_least(s, fail_on) for s in records["severity"])
    never = [r for r in audited.coverage if r.reason != "when_false"]
    if strict_coverage and never:
        typer.echo(f"--strict-coverage: {len({r.rule for r in never})} rule(s) never evaluated on "
                   f"{len({r.run for r in never})} run(s) ({counts_text(never)})", err=True)
    if failed or (strict_coverage and never):
        raise typer.Exit(1)


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
        typer.echo(f"warning: {source.metadata}: the callback's rules cannot be read back ({exc}); "
                   "the audit's rules run on it", err=True)
        return None


def _check_paths(paths: list[Path], allow_missing: bool) -> None:
    """A PATH that does not exist is a usage error, unless --allow-missing (then a warning,
    when the logs are read)."""
    missing = [path for path in paths if not path.exists()]
    if missing and not allow_missing:
        fail(f"{', '.join(map(str, missing))}: no such file or directory (--allow-missing audits "
             "the other paths)")


def _check_rule_paths(paths: list[Path]) -> None:
    """Each --rules path exists, and a folder holds a rule file (nothing silently loaded)."""
    for path in paths:
        if not path.exists():
            fail(f"--rules {path}: no such file or directory")
        if path.is_dir() and not discover([path]):
            fail(f"--rules {path}: no rule file ({', '.join('*' + s for s in RULE_SUFFIXES)}) found in it")


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


def _write_coverage(path: Path, coverage: list[CoverageRecord]) -> None:
    """The coverage as a JSON array of records, written atomically: a temporary file in the
    same folder, then renamed over `path` (a reader never sees half a file)."""
    text = json.dumps([json_safe(r.as_dict()) for r in coverage], indent=2) + "\n"
    try:
        _write_atomically(path, text)
    except OSError as exc:
        fail(f"cannot write the coverage to {path}: {exc.strerror or exc}")
    typer.echo(f"coverage: {len(coverage)} record(s) written to {path}", err=True)


def _write_atomically(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # as a plain open() would create it
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _config_options(values: list[str]) -> dict[str, Any]:
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
