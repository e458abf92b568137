"""An archive of runs → alert records, each run audited with its own trainer's rules.

The runs are grouped by trainer (spec §8, `trainers.choose`), each group is one
lazy frame over its sources, and all groups go through one polars query
(`engine.audit_by_trainer`). Past a size, or when asked, the query runs on
polars' streaming engine so that an archive larger than memory completes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import polars as pl

from . import engine, trainers
from .frames import RUN
from .readers import Archive, Source
from .rule import Rule

STREAMING_SHARE_OF_MEMORY = 0.25  # inputs larger than this share of RAM stream automatically


@dataclass
class ArchiveAudit:
    records: pl.DataFrame
    frame: pl.LazyFrame  # every run's rows, for reports that plot them
    runs: list[str]
    notes: list[str] = field(default_factory=list)
    streaming: bool = False


def audit_archive(archive: Archive, rules: Sequence[Rule], trainer: str | None = None,
                  streaming: bool | None = None) -> ArchiveAudit:
    """`trainer` (the --trainer option) applies to every run; otherwise each run's own."""
    notes: list[str] = []
    choices = [trainers.choose(trainer, s.metadata, s.keys, notes) for s in archive.sources]
    notes.extend(_guess_notes(archive.sources, choices))
    groups: dict[str | None, list[Source]] = {}
    for source, choice in zip(archive.sources, choices):
        groups.setdefault(choice.trainer, []).append(source)
    stream = streaming if streaming is not None else archive.size > STREAMING_SHARE_OF_MEMORY * _memory()
    records = engine.audit_by_trainer([(_concat(sources), t) for t, sources in groups.items()], rules,
                                      streaming=stream)
    return ArchiveAudit(records, _concat(archive.sources), _run_ids(archive.sources), notes, stream)


def _concat(sources: list[Source]) -> pl.LazyFrame:
    frames = [s.frame for s in sources]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _run_ids(sources: list[Source]) -> list[str]:
    """The run ids; a table with a `run` column is asked for its own (one column read)."""
    ids: list[str] = []
    for source in sources:
        if source.multi_run:
            ids.extend(source.frame.select(pl.col(RUN).unique(maintain_order=True)).collect()[RUN].to_list())
        else:
            ids.append(source.run)
    return ids


def _guess_notes(sources: list[Source], choices: list[trainers.TrainerChoice]) -> list[str]:
    """One line per guessed trainer (and one for runs left unknown), naming a few runs."""
    by_outcome: dict[str, list[str]] = {}
    for source, choice in zip(sources, choices):
        if choice.origin == "guess":
            by_outcome.setdefault(f"trainer {choice.trainer} guessed from the metric keys of", []).append(source.run)
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
