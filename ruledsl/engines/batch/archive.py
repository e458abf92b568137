"""An archive of runs → alert records, each run audited with its own trainer's rules.

The runs are grouped by trainer (docs/language.md §8, `trainers.choose`) and every group
goes through one engine query (`engine.audit_groups`). Only the columns
some rule of the group may read are read. Each group's rows are
read once into memory first: the engine's plan reads every metric's series
separately, and from memory that is much cheaper than scanning the files (and
recomputing run ids) once per series.

Each run is audited with its own configuration (docs/language.md §2): what its logs keep
(`Source.config`) with the `--config` settings on top.

Streaming (asked for, or automatic past a share of the machine's memory) bounds
memory instead: runs are independent, so the archive is audited a chunk of whole
runs at a time (filters pushed down to the file scans), each chunk read with
polars' streaming engine, and only the records (and coverage) are kept.

The coverage (docs/language.md §4) names the rules never evaluated on a run, and why. The
engine only sees the columns the rules read, so the close key a `no_key` entry suggests is
looked for again among all the keys of the run's source (`Source.keys`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from ruledsl.alerts import CoverageRecord
from ruledsl.compile import RuleSet, compile_rules
from ruledsl.engines.batch import engine
from ruledsl.engines.batch.frames import RUN, STEP, block_starts
from ruledsl.lang import meaning
from ruledsl.model import trainers
from ruledsl.model.config import RunConfig, merge
from ruledsl.model.rule import Rule
from ruledsl.readers import Archive, Source
from ruledsl.readers.common import run_column

STREAMING_SHARE_OF_MEMORY = 0.25  # inputs larger than this share of RAM stream automatically
CHUNK_ROWS = 1_000_000  # rows a streaming chunk holds, at most (one run may exceed it)


@dataclass
class ArchiveAudit:
    records: pl.DataFrame
    frame: pl.LazyFrame  # every run's rows, for reports that plot them
    runs: list[str]
    notes: list[str] = field(default_factory=list)
    streaming: bool = False
    # the rules never evaluated on a run, and why (docs/language.md §4), runs named as in records
    coverage: list[CoverageRecord] = field(default_factory=list)


@dataclass(frozen=True)
class _ReadKeys:
    """The log keys a rule set may read: its metrics' candidates, and every key one of its
    metric patterns (`rewards/*/std`) matches."""

    names: frozenset[str]
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, rules: RuleSet) -> _ReadKeys:
        metrics = [c.rule.metric for c in rules if c.rule.metric is not None]
        return cls(frozenset(rules.read_keys()),
                   tuple(meaning.pattern_regex(m) for m in metrics if meaning.is_pattern(m)))

    def __contains__(self, key: object) -> bool:
        return key in self.names or (isinstance(key, str) and any(p.match(key) for p in self.patterns))


@dataclass
class _Group:
    """Sources audited with one rule set: the keys fit the same trainer (or trainers)."""

    rules: RuleSet
    keys: _ReadKeys  # the log keys its rules may read: only those columns are read
    sources: list[Source] = field(default_factory=list)


def audit_archive(archive: Archive, rules: Sequence[Rule], trainer: str | None = None,
                  streaming: bool | None = None, chunk_rows: int = CHUNK_ROWS,
                  config: Mapping[str, Any] | None = None, rules_of: RulesOf | None = None) -> ArchiveAudit:
    """`trainer` (the --trainer option) applies to every run; otherwise each run's own.
    `config` (the --config settings) goes on top of every run's own configuration: a key
    set there wins, and a key set to None is removed."""
    overrides = dict(config or {})
    notes: list[str] = []
    choices = [trainers.choose(trainer, s.metadata, s.keys, notes) for s in archive.sources]
    notes.extend(_guess_notes(archive.sources, choices))
    groups = _groups(archive.sources, choices, rules, rules_of)
    stream = streaming if streaming is not None else archive.size > STREAMING_SHARE_OF_MEMORY * _memory()
    audited = (_audit_streaming(groups, chunk_rows, notes, overrides) if stream
               else _audit_in_memory(groups, notes, overrides))
    audited.coverage = _with_close_keys(audited.coverage, _keys_by_run(archive.sources))
    return audited


RulesOf = Callable[[Source], Sequence[Rule] | None]


def _groups(sources: list[Source], choices: list[trainers.TrainerChoice], rules: Sequence[Rule],
            rules_of: RulesOf | None = None) -> list[_Group]:
    """Sources that share a trainer (and rules) share a rule set. `rules_of` gives a source's own
    rules where it has some (the rules a callback ran, kept in its run.json): those run there,
    with the given rules whose names they do not use."""
    found: dict[tuple[str | None, tuple[str, ...], tuple[str, ...]], _Group] = {}
    for source, choice in zip(sources, choices):
        own = rules_of(source) if rules_of is not None else None
        chosen = list(rules) if own is None else [*own, *(r for r in rules if r.name not in {o.name for o in own})]
        key = (choice.trainer, choice.candidates, tuple(sorted(r.name for r in chosen)) if own is not None else ())
        if key not in found:
            rule_set = compile_rules([r for r in chosen if choice.selects(r)], trainer=choice.trainer)
            found[key] = _Group(rule_set, _ReadKeys.of(rule_set))
        found[key].sources.append(source)
    return list(found.values())


def _audit_in_memory(groups: list[_Group], notes: list[str], overrides: RunConfig) -> ArchiveAudit:
    """Each group's rows read into memory at once (see `_parts`), then one engine query."""
    plan = [(group, source, frame) for group in groups for source, frame in _parts(group.sources, group.keys)]
    in_memory = pl.collect_all([frame for _, _, frame in plan])
    audited = engine.audit_groups([engine.AuditGroup(frame, group.rules, source.run_id if source else None,
                                                     config=_configs(source, group.sources, overrides))
                                   for frame, (group, source, _) in zip(in_memory, plan)])
    runs = [source.run_id(run) if source else run for frame, (_, source, _) in zip(in_memory, plan)
            for run in _runs_in(frame)]
    named = [frame.lazy().with_columns(run_column(source.run, True)) if source else frame.lazy()
             for frame, (_, source, _) in zip(in_memory, plan)]
    return ArchiveAudit(audited.records, _concat(named), runs, notes, False, audited.coverage)


def _audit_streaming(groups: list[_Group], chunk_rows: int, notes: list[str], overrides: RunConfig
                     ) -> ArchiveAudit:
    """Chunks of whole runs, one after the other; only their records and coverage are kept."""
    parts = [engine.audit_groups([engine.AuditGroup(chunk.collect(engine="streaming"), group.rules,
                                                    source.run_id if source else None,
                                                    config=_configs(source, group.sources, overrides))])
             for group in groups for source, chunk in _chunks(group.sources, chunk_rows, group.keys)]
    records = _sorted(pl.concat([part.records for part in parts], how="vertical_relaxed"))
    coverage = sorted((r for part in parts for r in part.coverage), key=_coverage_order)
    frame = _concat([_reading(group.sources, group.keys) for group in groups])
    return ArchiveAudit(records, frame, _run_ids([s for group in groups for s in group.sources]), notes, True,
                        coverage)


def _configs(table: Source | None, sources: Sequence[Source], overrides: RunConfig
             ) -> Callable[[Any], Mapping[str, Any]]:
    """A run's configuration from its value in the run column of a part of a group (`_parts`,
    `_chunks`): for the one-run `sources` (whose rows carry their run id), the source's own with
    `overrides` on top; for the runs of a `table` of several runs, `overrides` alone (no one
    configuration is theirs)."""
    one_run = [] if table is not None else [s for s in sources if not s.multi_run]
    by_run = {s.run: merge(s.config, overrides) for s in one_run}
    everywhere = merge({}, overrides)
    return lambda run: by_run.get(run, everywhere)


def _runs_in(frame: pl.DataFrame) -> list[Any]:
    """The run ids of a frame, in order; only the first row of each block of rows is hashed."""
    return frame.lazy().select(pl.col(RUN).filter(block_starts()).unique(maintain_order=True)).collect()[RUN].to_list()


def _parts(sources: list[Source], keys: _ReadKeys) -> list[tuple[Source | None, pl.LazyFrame]]:
    """What to read into memory: each table of several runs alone, under the run names
    it holds (its source maps them to run ids), and the one-run sources together."""
    parts: list[tuple[Source | None, pl.LazyFrame]] = [
        (s, _only_keys(s.own_runs(), s.keys, keys)) for s in sources if s.multi_run]
    single = [s for s in sources if not s.multi_run]
    return parts + ([(None, _reading(single, keys))] if single else [])


def _reading(sources: list[Source], keys: _ReadKeys) -> pl.LazyFrame:
    """The sources' rows with only the columns that hold one of `keys`."""
    return _concat([_only_keys(s.frame, s.keys, keys) for s in sources])


def _only_keys(frame: pl.LazyFrame, present: Sequence[str], keys: _ReadKeys) -> pl.LazyFrame:
    return frame.select(RUN, STEP, *(k for k in present if k in keys))


def _chunks(sources: list[Source], chunk_rows: int, keys: _ReadKeys
            ) -> Iterator[tuple[Source | None, pl.LazyFrame]]:
    """Lazy frames of whole runs, about `chunk_rows` rows each, with the columns of `keys`:
    a large table of several runs a few of its runs at a time (under their own names, as
    in `_parts`), the other sources together."""
    pending: list[pl.LazyFrame] = []
    pending_rows = 0
    for source in sources:
        rows = source.frame.select(pl.len()).collect(engine="streaming").item()
        if source.multi_run and rows > chunk_rows:
            own = source.own_runs()
            names = own.select(pl.col(RUN).unique(maintain_order=True)).collect(engine="streaming")[RUN].to_list()
            per_chunk = max(1, chunk_rows * len(names) // max(rows, 1))
            for start in range(0, len(names), per_chunk):
                chosen = own.filter(pl.col(RUN).is_in(names[start:start + per_chunk], nulls_equal=True))
                yield source, _only_keys(chosen, source.keys, keys)
            continue
        if pending and pending_rows + rows > chunk_rows:
            yield None, _concat(pending)
            pending, pending_rows = [], 0
        pending.append(_only_keys(source.frame, source.keys, keys))
        pending_rows += rows
    if pending:
        yield None, _concat(pending)


def _coverage_order(record: CoverageRecord) -> tuple[str, str, str]:
    """The engine's order of coverage records: run, rule, metric."""
    return str(record.run), record.rule, record.metric or ""


# A `no_key` detail (engines/batch/coverage.py): the metric, the keys tried, a close key of the run.
_NO_VALUE = re.compile(r"no value of (?P<metric>.+?)(?: \(tried (?P<tried>.*)\))? in the run")
_NO_MATCH = re.compile(r"no key of the run matches (?P<metric>.+)")
_CLOSE = "; did you mean "
CLOSE_CUTOFF = 0.75  # as the engine's own suggestion


def _keys_by_run(sources: Sequence[Source]) -> Callable[[Any], Sequence[str] | None]:
    """The keys of a run's source from its run id (None: no source has it): a one-run source's
    id is its `run`, a run of a table of several runs is `<run>/<name>` (`Source.run_id`)."""
    single = {s.run: s.keys for s in sources if not s.multi_run}
    tables = sorted((s for s in sources if s.multi_run), key=lambda s: -len(s.run))

    def keys_of(run: Any) -> Sequence[str] | None:
        run = str(run)
        if run in single:
            return single[run]
        for table in tables:
            if run == table.run or run.startswith(table.run + "/"):
                return table.keys
        return None
    return keys_of


def _with_close_keys(coverage: list[CoverageRecord], keys_of: Callable[[Any], Sequence[str] | None]
                     ) -> list[CoverageRecord]:
    """`no_key` details with the close key looked for among every key of the run's source (the
    engine saw only the columns the rules read); other records as they are."""
    return [_close_key(r, keys_of(r.run)) if r.reason == "no_key" else r for r in coverage]


def _close_key(record: CoverageRecord, keys: Sequence[str] | None) -> CoverageRecord:
    if keys is None:  # a run of no source (cannot happen): the engine's suggestion stays
        return record
    base = record.detail.split(_CLOSE)[0]
    found = _NO_VALUE.fullmatch(base) or _NO_MATCH.fullmatch(base)
    if found is None:  # a detail worded otherwise: left as the engine wrote it
        return record
    metric = found["metric"]
    tried = {metric, *(found.groupdict().get("tried") or "").split(", ")}
    close = difflib.get_close_matches(metric, sorted(k for k in keys if k not in tried), n=1, cutoff=CLOSE_CUTOFF)
    return replace(record, detail=base + (f"{_CLOSE}{close[0]}?" if close else ""))


def _sorted(records: pl.DataFrame) -> pl.DataFrame:
    return records.sort("run", "first_step", "rule", maintain_order=True)


def _concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _run_ids(sources: list[Source]) -> list[str]:
    """The run ids; a table with a `run` column is asked for its own (one column read)."""
    ids: list[str] = []
    for source in sources:
        if source.multi_run:
            own = source.own_runs().select(pl.col(RUN).unique(maintain_order=True))
            ids.extend(source.run_id(name) for name in own.collect(engine="streaming")[RUN].to_list())
        else:
            ids.append(source.run)
    return ids


def _guess_notes(sources: list[Source], choices: list[trainers.TrainerChoice]) -> list[str]:
    """One line per guessed trainer (and one per reason a trainer stayed unknown), naming a few runs."""
    by_outcome: dict[str, list[str]] = {}
    for source, choice in zip(sources, choices):
        if choice.origin == "guess":
            by_outcome.setdefault(f"trainer {choice.trainer} guessed from the metric keys of", []).append(source.run)
        elif choice.candidates:
            by_outcome.setdefault(f"trainer unknown ({choice.detail}), the rules of any of them run, for",
                                  []).append(source.run)
        elif choice.origin == "unknown":
            by_outcome.setdefault(f"trainer unknown ({choice.detail}), every rule runs, for", []).append(source.run)
    return [f"{what} {_few(runs)} (--trainer sets it)" for what, runs in by_outcome.items()]


def _few(runs: list[str], shown: int = 4) -> str:
    named = ", ".join(runs[:shown])
    more = f" and {len(runs) - shown} more" if len(runs) > shown else ""
    return f"{len(runs)} run(s): {named}{more}"


def _memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: never stream by default
        return 2**62
