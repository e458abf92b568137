"""Training logs on disk → sources of rows (run, step, metrics), each run once.

Formats: JSON Lines (the callback's `metrics.jsonl` included), the Trainer's
`trainer_state.json` (newest checkpoint wins), CSV and Parquet (scanned
lazily), TensorBoard event files and MLflow file stores. `discovery` decides
which runs a tree holds; one module per format reads them. Whatever cannot be
read is reported as a `ReadProblem` with its file (and line), and skipped.

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
from ruledsl.readers.common import ReadProblem, Source
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


Progress = Callable[[int, int], None]  # (done, total)


def read_archive(paths: list[Path], progress: Progress | None = None) -> Archive:
    """Every run under `paths`, each read once (lazily where the format allows)."""
    archive = Archive()
    specs: list[RunSpec] = []
    for root in paths:
        if not root.exists():
            archive.problems.append(ReadProblem(root, None, "no such file or directory"))
            continue
        if root.is_file() and not discovery.is_log_file(root):
            archive.problems.append(ReadProblem(root, None, "not a log ruledsl reads (*.jsonl, *.csv, *.parquet, "
                                                            "trainer_state.json, TensorBoard event files); skipped"))
            continue
        specs.extend(discovery.discover(root))
    for done, spec in enumerate(specs, start=1):
        source = _read_spec(spec, archive)
        if source is not None:
            archive.sources.append(source)
        if progress is not None:
            progress(done, len(specs))
    return archive


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


def _global_step(state: dict) -> float:  # a logged step may be a float
    step = state.get("global_step")
    if isinstance(step, int) and not isinstance(step, bool):
        return step
    steps = [e.get(STEP) for e in state["log_history"] if isinstance(e, dict)]
    return max((s for s in steps if isinstance(s, (int, float)) and not isinstance(s, bool)), default=-1)


def _last_step(source: Source) -> int:
    value = source.frame.select(pl.col(STEP).max()).collect().item()
    return -1 if value is None else int(value)


def _shown(source: Source, run_dir: Path) -> str:
    try:
        return source.path.relative_to(run_dir).as_posix() or source.kind
    except ValueError:
        return str(source.path)
