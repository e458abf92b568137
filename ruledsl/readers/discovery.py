"""Which runs a directory tree holds, each once, and which files make each of them.

- An MLflow run directory (`meta.yaml` + `metrics/`) is one run.
- A training output directory is one run, however many logs of it there are: a
  directory with a `trainer_state.json`, `checkpoint-N/trainer_state.json`
  directories, or ruledsl's `diagnostics/` (`run.json`, `metrics.jsonl`). Its
  candidate logs are the callback's `diagnostics/metrics.jsonl` (or a
  `metrics.jsonl` beside the state), every `trainer_state.json` (its own and its
  checkpoints') and the TensorBoard event files under it; which one is audited is
  decided once they are read (`readers._training_dir`). Other logs below it are
  runs of their own. A W&B run kept in it (`wandb/offline-run-…/`) gives the run's
  configuration, as does run.json.
- Elsewhere, each `*.jsonl`, `*.csv`, `*.parquet` file is a run, and so is each
  directory holding TensorBoard event files.

A run's id is its path relative to the audited root (without the file suffix).

The walk never recurses (a tree any number of folders deep is walked), follows a link to a
folder unless it leads back to a folder it is in (a loop, said once and not followed), and
says which folders it cannot list (`ReadProblem`), reading the rest.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.readers import mlflow_store, tfevents, wandb_run
from ruledsl.readers.common import ReadProblem, files_under, os_error

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
DIAGNOSTICS_DIR, METRICS_FILE, RUN_META_FILE, ALERTS_FILE = "diagnostics", "metrics.jsonl", "run.json", "alerts.jsonl"
TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
NOT_LOGS = {ALERTS_FILE, RUN_META_FILE}  # the callback's own outputs beside its metrics.jsonl


@dataclass
class RunSpec:
    """A run found on disk: its id, its kind, and the files to read for it."""

    run: str
    kind: str  # "training_dir", "mlflow", "tensorboard", "file"
    path: Path  # the run's directory or file
    callback_log: Path | None = None  # training_dir: diagnostics/metrics.jsonl
    states: list[tuple[int | None, Path]] = field(default_factory=list)  # (checkpoint N or None, file)
    event_files: list[Path] = field(default_factory=list)
    metadata: Path | None = None  # diagnostics/run.json (or run.json beside a metrics.jsonl)
    wandb_run: Path | None = None  # training_dir: the newest W&B run folder under wandb/, for its config


def is_log_file(path: Path) -> bool:
    """Whether a file given by itself is in a format ruledsl reads."""
    return path.suffix in TABLE_SUFFIXES or path.name == STATE_FILE or tfevents.EVENT_FILE_MARK in path.name


def discover(root: Path, problems: list[ReadProblem] | None = None) -> list[RunSpec]:
    """The runs under `root` (a directory or one file), in path order; what cannot be
    walked goes into `problems`."""
    problems = problems if problems is not None else []
    if root.is_file():
        return [_file_spec(root, root)]
    specs: list[RunSpec] = []
    _walk(root, specs, problems)
    _unique_ids(specs)
    return specs


@dataclass
class _Folder:
    """A folder being walked: the entries left to visit, and what it is."""

    path: Path
    identity: tuple[int, int] | None  # (device, inode): a link back to it is a loop
    in_training_dir: bool  # below an output directory, whose event files are already its run's
    entries: list[os.DirEntry] = field(default_factory=list)  # left to visit, the last first
    skipped: set[str] = field(default_factory=set)


def _walk(root: Path, specs: list[RunSpec], problems: list[ReadProblem]) -> None:
    """Every folder below `root` depth first in name order, with a stack of folders."""
    stack: list[_Folder] = []
    _enter(root, root, False, stack, specs, problems)
    while stack:
        folder = stack[-1]
        if not folder.entries:
            stack.pop()
            continue
        entry = folder.entries.pop()
        if entry.name in folder.skipped:
            continue
        path = Path(entry.path)
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError as exc:  # a link in a loop of links, a name too long
            problems.append(ReadProblem(path, None, f"cannot follow ({os_error(exc)}); skipped"))
            continue
        if is_dir and not entry.name.startswith("."):
            _enter(path, root, folder.in_training_dir, stack, specs, problems)
        elif is_file and path.suffix in TABLE_SUFFIXES and entry.name not in NOT_LOGS:
            specs.append(_file_spec(path, root))


def _enter(directory: Path, root: Path, in_training_dir: bool, stack: list[_Folder], specs: list[RunSpec],
           problems: list[ReadProblem]) -> None:
    """The runs `directory` itself makes; its entries go on the stack to be walked."""
    try:
        status = directory.stat()
        identity = (status.st_dev, status.st_ino)
        if any(folder.identity == identity for folder in stack):
            problems.append(ReadProblem(directory, None, "a link back to a folder it is in (a loop); not followed",
                                        lost="nothing"))
            return
        if mlflow_store.is_run_dir(directory):
            specs.append(RunSpec(_relative(directory, root), "mlflow", directory))
            return  # artifacts are not logs
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        skipped: set[str] = set()
        if _is_training_dir(directory):
            spec = _training_spec(directory, root, problems)
            specs.append(spec)
            # the run's own logs are in spec; any other log below is a run of its own
            skipped = {DIAGNOSTICS_DIR} | {e.name for e in entries if CHECKPOINT.match(e.name)}
            if spec.callback_log == directory / METRICS_FILE:
                skipped.add(METRICS_FILE)
            in_training_dir = True
        elif not in_training_dir:
            events = [Path(e.path) for e in entries if tfevents.EVENT_FILE_MARK in e.name and _is_file(e)]
            if events:
                specs.append(RunSpec(_relative(directory, root), "tensorboard", directory, event_files=events))
    except OSError as exc:  # unreadable (permissions), gone meanwhile, a path too long
        problems.append(ReadProblem(directory, None, f"cannot read the folder ({os_error(exc)}); "
                                                     f"what is below it is not read"))
        return
    stack.append(_Folder(directory, identity, in_training_dir, entries[::-1], skipped))


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_training_dir(directory: Path) -> bool:
    if (directory / STATE_FILE).is_file() or (directory / DIAGNOSTICS_DIR / RUN_META_FILE).is_file() \
            or (directory / DIAGNOSTICS_DIR / METRICS_FILE).is_file():
        return True
    return any(CHECKPOINT.match(p.name) and (p / STATE_FILE).is_file() for p in _subdirs(directory))


def _training_spec(directory: Path, root: Path, problems: list[ReadProblem]) -> RunSpec:
    spec = RunSpec(_relative(directory, root), "training_dir", directory)
    diagnostics = directory / DIAGNOSTICS_DIR
    for candidate in (diagnostics / METRICS_FILE, directory / METRICS_FILE):  # the callback's, or one beside
        if candidate.is_file():
            spec.callback_log = candidate
            break
    if (diagnostics / RUN_META_FILE).is_file():
        spec.metadata = diagnostics / RUN_META_FILE
    try:
        spec.wandb_run = wandb_run.find_run(directory)
    except OSError as exc:
        problems.append(ReadProblem(directory / wandb_run.WANDB_DIR, None, f"cannot read the folder "
                                    f"({os_error(exc)}); the run's W&B config is not read", lost="config"))
    if (directory / STATE_FILE).is_file():
        spec.states.append((None, directory / STATE_FILE))
    for sub in _subdirs(directory):
        match = CHECKPOINT.match(sub.name)
        if match and (sub / STATE_FILE).is_file():
            spec.states.append((int(match.group(1)), sub / STATE_FILE))
    events = files_under(directory, problems, lambda name: tfevents.EVENT_FILE_MARK in name)
    spec.event_files = sorted((p for p in events if not any(CHECKPOINT.match(part) for part in
                                                            p.relative_to(directory).parts)),
                              key=lambda p: p.name)
    return spec


def _file_spec(path: Path, root: Path) -> RunSpec:
    if path.name == STATE_FILE:
        spec = RunSpec(_relative(path.parent, root.parent if root.is_file() else root), "training_dir", path.parent)
        spec.states.append((None, path))
        return spec
    if tfevents.EVENT_FILE_MARK in path.name:
        run = _relative(path.parent, root.parent if root.is_file() else root)
        return RunSpec(run, "tensorboard", path.parent, event_files=[path])
    base = root.parent if root.is_file() else root
    named_by_folder = path.name == METRICS_FILE
    target = path.parent if named_by_folder else path.with_suffix("")
    if named_by_folder and target.name == DIAGNOSTICS_DIR:
        target = target.parent
    spec = RunSpec(_relative(target, base), "file", path)
    if named_by_folder and (path.parent / RUN_META_FILE).is_file():
        spec.metadata = path.parent / RUN_META_FILE
    return spec


def _relative(path: Path, root: Path) -> str:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:  # above the root (a metrics.jsonl given directly): its folder's name
        relative = ""
    return relative if relative not in ("", ".") else (path.name or root.resolve().name)


def _subdirs(directory: Path) -> list[Path]:
    with os.scandir(directory) as listing:
        return sorted(Path(e.path) for e in listing if _is_dir(e))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link in a loop of links
        return False


def _unique_ids(specs: list[RunSpec]) -> None:
    """Two files that would share an id (`a.csv`, `a.jsonl`) keep their suffixes."""
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.run] = seen.get(spec.run, 0) + 1
    for spec in specs:
        if seen[spec.run] > 1 and spec.kind == "file":
            spec.run = spec.run + spec.path.suffix
