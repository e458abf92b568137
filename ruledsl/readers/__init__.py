"""Training logs on disk → sources of rows (run, step, metrics), each run once.

Formats: JSON Lines (the callback's `metrics.jsonl` included), the Trainer's
`trainer_state.json` (newest checkpoint wins), CSV and Parquet (scanned
lazily), TensorBoard event files and MLflow file stores. `discovery` decides
which runs a tree holds; one module per format reads them. Whatever cannot be
read is reported as a `ReadProblem` with its file (and line), and skipped; whatever
goes wrong reading one run (an unreadable or vanished file, damage no reader expected)
costs that run alone, never the others. A `ReadProblem` says what was lost (`lost`: the
run, some rows, its configuration, or nothing) and how many rows (`skipped`), so that a
caller can tell an audit of every input from one that went without some.

A table scanned lazily can still fail when the audit reads it (a Parquet page damaged
where only decoding finds it): `Archive.salvage` then reads what can be read of each
such source, and the audit is run again.

Each run's configuration (docs/language.md §2) is gathered from every place that keeps one
(`run_config`): what the audited log itself carries (MLflow params, TensorBoard's
`args`), and for a training output directory its W&B run's config and the
callback's run.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ruledsl.engines.batch.frames import STEP
from ruledsl.readers import discovery, jsonlog, mlflow_store, run_config, tables, tfevents, wandb_run
from ruledsl.readers.common import ReadProblem, Source, os_error, training_step
from ruledsl.readers.discovery import RunSpec

__all__ = ["Archive", "ReadProblem", "Source", "read_archive"]

# Where several logs of one training run exist, the one reaching the highest step is
# audited; at the same step the callback's own log comes first (it has every on_log
# call as it happened), then the Trainer's state, then TensorBoard.
PREFERENCE = ("jsonl", "trainer_state", "tensorboard")


@dataclass
class Archive:
    sources: list[Source] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.sources)

    @property
    def incomplete(self) -> list[ReadProblem]:
        """The problems that cost the audit data: a run or rows of one not read (not those
        about a configuration only, nor a deleted MLflow run or a loop not followed)."""
        return [p for p in self.problems if p.lost in ("run", "rows")]

    def salvage(self) -> list[ReadProblem]:
        """After the audit failed reading its sources (a polars error from a table damaged
        past what was checked when it was read): each source read lazily from a file is read
        through once (streaming, nothing kept); one that fails is replaced by what can be read
        of it (a Parquet file a slice of rows at a time) or dropped, with a problem said.
        Returns the new problems (also added to `problems`); none when no source fails."""
        found: list[ReadProblem] = []
        kept: list[Source] = []
        for source in self.sources:
            try:
                source.frame.select(pl.all().null_count()).collect(engine="streaming")
                kept.append(source)
                continue
            except Exception as exc:
                damage = _first_line(exc)
            if source.kind != "parquet":
                found.append(ReadProblem(source.path, None, f"cannot be read through ({damage}); skipped"))
                continue
            again = tables.salvage_parquet(source.path, source.run, found)
            if again is not None:
                again.metadata, again.config = source.metadata, source.config
                kept.append(again)
        self.sources = kept
        self.problems.extend(found)
        return found


Progress = Callable[[int, int], None]  # (done, total)


def read_archive(paths: list[Path], progress: Progress | None = None) -> Archive:
    """Every run under `paths`, each read once (lazily where the format allows)."""
    archive = Archive()
    specs: list[RunSpec] = []
    for root in paths:
        try:
            if not root.exists():
                archive.problems.append(ReadProblem(root, None, "no such file or directory"))
                continue
            if root.is_file() and not discovery.is_log_file(root):
                archive.problems.append(ReadProblem(root, None, "not a log ruledsl reads (*.jsonl, *.csv, *.parquet, "
                                                                "trainer_state.json, TensorBoard event files); "
                                                                "skipped"))
                continue
            specs.extend(discovery.discover(root, archive.problems))
        except OSError as exc:
            archive.problems.append(ReadProblem(root, None, f"cannot read ({os_error(exc)}); skipped"))
    for done, spec in enumerate(specs, start=1):
        source = _read_safely(spec, archive)
        if source is not None:
            archive.sources.append(source)
        if progress is not None:
            progress(done, len(specs))
    return archive


def _read_safely(spec: RunSpec, archive: Archive) -> Source | None:
    """One run, whatever its files hold: an error reading it is a problem of that run alone."""
    try:
        return _read_spec(spec, archive)
    except OSError as exc:  # unreadable, removed since the tree was walked, …
        where = Path(exc.filename) if isinstance(exc.filename, str) else spec.path
        archive.problems.append(ReadProblem(where, None, f"cannot read ({os_error(exc)}); skipped"))
    except Exception as exc:  # damage no reader foresaw: said, never the end of the audit
        archive.problems.append(ReadProblem(spec.path, None, f"cannot be read ({type(exc).__name__}: "
                                                             f"{_first_line(exc)}); skipped"))
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _read_spec(spec: RunSpec, archive: Archive) -> Source | None:
    problems = archive.problems
    if spec.kind == "mlflow":
        return mlflow_store.read_mlflow_run(spec.path, spec.run, problems)
    if spec.kind == "tensorboard":
        source = tfevents.read_events(spec.event_files, spec.run, problems)
    elif spec.kind == "training_dir":
        source = _training_dir(spec, archive)
    elif spec.path.suffix == ".jsonl":
        source = jsonlog.read_jsonl(spec.path, spec.run, problems)
    else:
        source = tables.read_table(spec.path, spec.run, problems)
    if source is not None and spec.metadata is not None:
        source.metadata = spec.metadata
    if source is not None:
        source.config = _configuration(spec, source, problems)
    return source


def _configuration(spec: RunSpec, source: Source, problems: list[ReadProblem]) -> run_config.RunConfig:
    """The run's configuration from every source of it, a later one winning per key: W&B's
    config (which adds the model's), what the audited log carries, then run.json (the
    trainer's arguments as the callback saw them). A source of several runs has none: no
    one configuration is theirs."""
    if source.multi_run:
        return {}
    layers = []
    if spec.wandb_run is not None:
        layers.append(wandb_run.read_config(spec.wandb_run, problems))
    layers.append(source.config)
    if spec.metadata is not None:
        layers.append(run_config.from_run_json(spec.metadata, problems))
    return run_config.layered(layers)


def _training_dir(spec: RunSpec, archive: Archive) -> Source | None:
    """One training run with several logs: read them all, audit the most complete."""
    problems = archive.problems
    candidates: list[Source] = []
    if spec.callback_log is not None:
        found = jsonlog.read_jsonl(spec.callback_log, spec.run, problems)
        candidates += [found] if found is not None else []
    state = _newest_state(spec, problems)
    candidates += [state] if state is not None else []
    if spec.event_files:
        found = tfevents.read_events(spec.event_files, spec.run, problems)
        candidates += [found] if found is not None else []
    if not candidates:
        return None
    reach = {id(s): _last_step(s) for s in candidates}
    chosen = max(candidates, key=lambda s: (reach[id(s)], -PREFERENCE.index(s.kind)))
    # the run's configuration, whichever log is audited (only the event files carry one: `args`)
    chosen.config = run_config.layered(s.config for s in candidates)
    others = [s for s in candidates if s is not chosen]
    if others:
        archive.notes.append(
            f"{spec.run}: audited {_shown(chosen, spec.path)} (to step {reach[id(chosen)]}); the same run's "
            + ", ".join(f"{_shown(s, spec.path)} (to step {reach[id(s)]})" for s in others)
            + " left aside")
    return chosen


def _newest_state(spec: RunSpec, problems: list[ReadProblem]) -> Source | None:
    """The trainer_state.json reaching the highest global step: the newest checkpoint,
    or the output directory's own file (written at the end) when it reaches as far."""
    best: tuple[tuple, Path, dict] | None = None
    for checkpoint, path in spec.states:
        state = jsonlog.read_state(path, problems)
        if state is None:
            continue
        rank = (_global_step(state), checkpoint is None, checkpoint or 0)
        if best is None or rank > best[0]:
            best = (rank, path, state)
    if best is None:
        return None
    return jsonlog.state_source(best[1], best[2], spec.run, problems)


def _global_step(state: dict) -> int:
    """The state's global step, or the highest step of its log_history (-1: none)."""
    step = training_step(state.get("global_step"))
    if step is not None:
        return step
    steps = (training_step(e.get(STEP)) for e in state["log_history"] if isinstance(e, dict))
    return max((s for s in steps if s is not None), default=-1)


def _last_step(source: Source) -> int:
    value = source.frame.select(pl.col(STEP).max()).collect().item()
    return -1 if value is None else int(value)


def _shown(source: Source, run_dir: Path) -> str:
    try:
        return source.path.relative_to(run_dir).as_posix() or source.kind
    except ValueError:
        return str(source.path)
