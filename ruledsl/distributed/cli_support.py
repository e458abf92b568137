"""`ruledsl audit PATH --engine spark|ray`: the archive read and audited by a distributed engine.

The engine reads PATH itself (Parquet, or JSON Lines for *.jsonl/*.json/*.ndjson; any URI it reads:
file://, s3://, hdfs://, …), so the logs never pass through this process; only the records come
back (or, with --output-dataset, not even those: the engine writes them as Parquet). Logs without a
`run` column are one run per file, named as the in-process audit names them: the file's path
relative to PATH, without its suffix.

What is reported is what `ruledsl audit` reports for the same runs (`partition` audits each run as
the in-process archive audit does); the reports with charts (markdown, html) need the logs in this
process and stay with `--engine polars`, as do --streaming and --notify.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
import typer

from ruledsl.alerts import CoverageRecord, at_least
from ruledsl.cli.app import CHECK_FAILED, INPUTS_INCOMPLETE, fail
from ruledsl.distributed.partition import (
    COVERAGE_SCHEMA,
    KIND,
    RECORD,
    RECORD_SCHEMA,
    RUN_SCHEMA,
    PartitionAudit,
    RuleSource,
    compiled,
    rule_source,
    sorted_coverage,
    sorted_records,
    split,
)
from ruledsl.engines.batch.archive import _guess_notes
from ruledsl.engines.batch.frames import RUN
from ruledsl.model import trainers
from ruledsl.model.loader import RuleLoadError
from ruledsl.report import Format, ReportContext, choose_format, render
from ruledsl.report.coverage import counts_text
from ruledsl.report.text import printable

ENGINES = ("polars", "spark", "ray")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
LOG_SUFFIXES = (".parquet", *JSON_SUFFIXES)
_JAVA_CAUSE = re.compile(r"^(Caused by: )?([a-z]\w*\.)+\w*(Exception|Error): ")
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/+(?P<rest>.*)$")


@dataclass(frozen=True)
class Options:
    """What `ruledsl audit` was asked, for a distributed engine."""

    engine: str
    paths: Sequence[Path]
    source: RuleSource
    trainer: str | None
    config: Mapping[str, Any]
    output_format: Format | None
    output: Path | None
    output_dataset: str | None
    fail_on: str | None
    coverage_file: Path | None
    strict_coverage: bool
    strict_inputs: bool
    spark_master: str | None
    ray_address: str | None


class Engine(Protocol):
    def read(self, uris: Sequence[str]) -> Any: ...  # the logs, with a run column
    def audit(self, logs: Any, options: Options) -> Any: ...  # with .records, .coverage, .runs
    def collect(self, audited: Any, records: bool) -> PartitionAudit: ...  # records: or an empty table
    def severities(self, audited: Any) -> list[str]: ...  # of the records, for --fail-on
    def write_records(self, audited: Any, uri: str) -> None: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------- the command


def audit_distributed(options: Options) -> None:
    """The audit on `options.engine`; exits as `ruledsl audit` does (0, 1, 3; 2 for usage errors)."""
    from ruledsl.cli import audit as audit_cli

    chosen, mismatch = choose_format(options.output_format, options.output)
    if chosen in (Format.markdown, Format.html) and options.output_dataset is None:
        fail(f"--format {chosen.value} charts the logs, which stay in the engine with --engine {options.engine}: "
             "use table, json, jsonl or csv (or --engine polars)")
    if mismatch:
        audit_cli._warn(mismatch)
    uris = [uri_of(path) for path in options.paths]
    missing = [u for u, p in zip(uris, options.paths) if not _URI.match(u) and not p.exists()]
    if missing:
        fail(f"{', '.join(missing)}: no such file or directory")
    engine = _engine(options)
    try:
        audited = engine.audit(engine.read(uris), options)
        severities: list[str] | None = None
        if options.output_dataset is not None:
            engine.write_records(audited, options.output_dataset)
            severities = engine.severities(audited) if options.fail_on is not None else []
        result = engine.collect(audited, records=options.output_dataset is None)
    except Exception as exc:  # the engine's own error (a file it cannot read, a job that failed)
        fail(f"the {options.engine} audit failed: {_first_line(exc)}")
    finally:
        engine.close()
    _report(result, options, chosen, audit_cli, severities)


def _report(result: PartitionAudit, options: Options, chosen: Format, audit_cli: Any,
            severities: list[str] | None) -> None:
    """The report (or, with --output-dataset, where the records went), the coverage file, the exit
    status; `severities`: those of the records written as a dataset (None: the records are here)."""
    runs = sorted(result.runs.to_pylist(), key=lambda r: r[RUN])  # as the in-process notes name them: in path order
    named: Any = [_Named(r[RUN]) for r in runs]  # the notes read a source's `run` alone
    for note in _guess_notes(named, [_choice(r) for r in runs]):
        audit_cli._note(note)
    coverage = [CoverageRecord(**row) for row in sorted_coverage(result.coverage).to_pylist()]
    records = pl.from_arrow(sorted_records(result.records))
    assert isinstance(records, pl.DataFrame)
    if options.output_dataset is not None:
        typer.echo(printable(f"report: alert records written as Parquet to {options.output_dataset}"), err=True)
    else:
        rules = compiled(options.source)
        context = ReportContext(None, rules, n_runs=len(runs), trainer=options.trainer,
                                terminal=options.output is None and sys.stdout.isatty(), coverage=coverage)
        report = render(records, chosen, context)
        if options.output is not None:
            audit_cli._write_report(options.output, report, f"{records.height} alert episode(s) as {chosen.value}")
        else:
            typer.echo(report, nl=False)
    if options.coverage_file is not None:
        audit_cli._write_coverage(options.coverage_file, coverage)
    _exit(result, records["severity"].to_list() if severities is None else severities, coverage, options)


def _exit(result: PartitionAudit, severities: list[str], coverage: list[CoverageRecord], options: Options) -> None:
    failed = options.fail_on is not None and any(at_least(s, options.fail_on) for s in severities)
    never = [r for r in coverage if r.reason != "when_false"]
    if options.strict_coverage and never:
        typer.echo(f"--strict-coverage: {len({r.rule for r in never})} rule(s) never evaluated on "
                   f"{len({r.run for r in never})} run(s) ({counts_text(never)})", err=True)
    skipped = {r[RUN]: r["rows_without_step"] for r in result.runs.to_pylist() if r["rows_without_step"]}
    if skipped:
        typer.echo(printable(f"warning: {sum(skipped.values())} row(s) without a step skipped, in "
                             f"{len(skipped)} run(s): {', '.join(list(skipped)[:4])}"), err=True)
    if failed or (options.strict_coverage and never) or (options.strict_inputs and skipped):
        raise typer.Exit(CHECK_FAILED)
    if skipped:
        raise typer.Exit(INPUTS_INCOMPLETE)


@dataclass(frozen=True)
class _Named:
    run: str


def _choice(run: Mapping[str, Any]) -> trainers.TrainerChoice:
    return trainers.TrainerChoice(run["trainer"], run["trainer_origin"] or "unknown", run["trainer_detail"] or "",
                                  tuple(run["trainer_candidates"] or ()))


def cli_rule_source(rule_paths: Sequence[Path], no_builtin: bool, trainer: str | None,
                    alerts: Sequence[tuple[str | None, str]]) -> RuleSource:
    """The rules `ruledsl audit` loads (rule files and folders, the builtin library, --alert), as text."""
    try:
        return rule_source(list(rule_paths), builtin=not no_builtin, inline=alerts, trainer=trainer)
    except (RuleLoadError, ValueError) as exc:
        fail(str(exc))


def uri_of(path: Path) -> str:
    """PATH as the engine reads it: a URI as typed (Path() made `s3://b/k` into `s3:/b/k`), else a local path."""
    text = str(path)
    found = _URI.match(text)
    if found is None or len(found["scheme"]) == 1:  # C:/… is a Windows path
        return text
    slashes = "///" if found["scheme"] == "file" else "//"
    return f"{found['scheme']}:{slashes}{found['rest']}"


def is_json(uri: str) -> bool:
    """JSON Lines by suffix, or a local folder of *.jsonl files (and no Parquet); else Parquet."""
    if uri.lower().endswith(JSON_SUFFIXES):
        return True
    local = Path(uri)
    if _URI.match(uri) or not local.is_dir():
        return False
    suffixes = {p.suffix.lower() for p in local.rglob("*") if p.is_file()}
    return bool(suffixes & set(JSON_SUFFIXES)) and ".parquet" not in suffixes


def base_uri(uri: str) -> str:
    """The URI files under `uri` are named by (input_file_name), to name their runs relative to it."""
    if _URI.match(uri):
        return uri.rstrip("/")
    return Path(uri).resolve().as_uri()


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    useful = [line for line in lines if "Error" in line or "Exception" in line]
    line = useful[-1] if useful else lines[0] if lines else type(exc).__name__
    return _JAVA_CAUSE.sub("", line.strip())[:500]  # the JVM's "Caused by: java.…Exception: " said nothing


def _engine(options: Options) -> Engine:
    if options.engine == "spark":
        try:
            return _SparkEngine(options.spark_master)
        except (ImportError, RuntimeError) as exc:
            fail(str(exc))
    if options.engine == "ray":
        try:
            return _RayEngine(options.ray_address)
        except ImportError as exc:
            fail(str(exc))
    fail(f"--engine takes one of {', '.join(ENGINES)}, not {options.engine!r}")


# ---------------------------------------------------------------- Spark


class _SparkEngine:
    def __init__(self, master: str | None):
        from ruledsl.distributed.spark_engine import local_session

        self.session = local_session(master)
        self.cached: Any = None

    def read(self, uris: Sequence[str]) -> Any:
        frames = [self._read_one(uri) for uri in uris]
        logs = frames[0]
        for frame in frames[1:]:
            logs = logs.unionByName(frame, allowMissingColumns=True)
        return logs

    def _read_one(self, uri: str) -> Any:
        from pyspark.sql import functions as F

        reader = self.session.read
        frame = reader.json(uri) if is_json(uri) else reader.parquet(uri)
        if RUN in frame.columns:
            return frame
        # one run per file: its path relative to PATH, without its suffix (a file given alone: its name)
        base = base_uri(uri)
        single = base.lower().endswith(LOG_SUFFIXES)
        prefix = base.rsplit("/", 1)[0] + "/" if single else base + "/"
        relative = F.regexp_replace(F.input_file_name(), "^\\Q" + prefix + "\\E", "")
        name = F.regexp_replace(relative, r"\.(parquet|jsonl|json|ndjson)$", "")
        return frame.withColumn(RUN, name)

    def audit(self, logs: Any, options: Options) -> Any:
        from ruledsl.distributed.spark_engine import audit_spark

        audited = audit_spark(logs, options.source, trainer=options.trainer, config=options.config)
        self.cached = audited.combined.persist()  # written and collected: computed once
        return audited

    def collect(self, audited: Any, records: bool) -> PartitionAudit:
        """One collect of the combined table (with or without the records), split here."""
        from pyspark.sql import functions as F

        combined = audited.combined if records else audited.combined.filter(F.col(KIND) != RECORD)
        return split(combined.toArrow())

    def severities(self, audited: Any) -> list[str]:
        return [row[0] for row in audited.records.select("severity").distinct().collect()]

    def write_records(self, audited: Any, uri: str) -> None:
        audited.records.write.mode("errorifexists").parquet(uri)

    def close(self) -> None:
        if self.cached is not None:
            self.cached.unpersist()
        self.session.stop()


# ---------------------------------------------------------------- Ray


class _RayEngine:
    """Ray Data reads the logs; `ray_engine.audit_ray` audits them (RayAudit: records, coverage and
    runs as Datasets of the partition schemas), computed once (`materialized`)."""

    def __init__(self, address: str | None):
        from ruledsl.distributed.ray_engine import ray_session

        self.started = ray_session(address)

    def read(self, uris: Sequence[str]) -> Any:
        import ray.data

        datasets = []
        for uri in uris:
            dataset = (ray.data.read_json(uri, include_paths=True, file_extensions=["jsonl", "json", "ndjson"])
                       if is_json(uri) else ray.data.read_parquet(uri, include_paths=True))
            if RUN not in (dataset.schema().names or []):
                dataset = dataset.map_batches(_RunFromPath(uri), batch_format="pyarrow")
            else:
                dataset = dataset.drop_columns(["path"])
            datasets.append(dataset)
        return datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]

    def audit(self, logs: Any, options: Options) -> Any:
        from ruledsl.distributed.ray_engine import audit_ray

        return audit_ray(logs, options.source, trainer=options.trainer, config=options.config).materialized()

    def collect(self, audited: Any, records: bool) -> PartitionAudit:
        from ruledsl.distributed.ray_engine import table_of

        return PartitionAudit(table_of(audited.records, RECORD_SCHEMA) if records else RECORD_SCHEMA.empty_table(),
                              table_of(audited.coverage, COVERAGE_SCHEMA), table_of(audited.runs, RUN_SCHEMA))

    def severities(self, audited: Any) -> list[str]:
        return [str(s) for s in audited.records.unique("severity")]

    def write_records(self, audited: Any, uri: str) -> None:
        audited.records.write_parquet(uri)

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


class _RunFromPath:
    """The run column of files without one, from Ray's `path` column (relative to PATH, no suffix)."""

    def __init__(self, uri: str):
        base = uri.split("://", 1)[-1] if _URI.match(uri) else str(Path(uri).resolve())
        self.prefix = base.rsplit("/", 1)[0] + "/" if base.lower().endswith(LOG_SUFFIXES) else base.rstrip("/") + "/"

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        paths = batch.column("path")
        relative = pc.replace_substring_regex(paths, "^" + re.escape(self.prefix), "")
        names = pc.replace_substring_regex(relative, r"\.(parquet|jsonl|json|ndjson)$", "")
        return batch.drop_columns(["path"]).append_column(RUN, names)
