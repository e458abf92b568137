"""MLflow local file stores (`mlruns/`), read from the files themselves: no tracking
server and no mlflow package needed.

A run is a directory `<store>/<experiment id>/<run id>/` holding `meta.yaml` and
`metrics/`. Each metric is a file named by its key under `metrics/` (a key with `/`
becomes subdirectories), one `<timestamp ms> <value> <step>` line per logged value,
in the order they were logged.

Its params (`params/<key>`, the file holding the value's text) are the run's
configuration (docs/language.md §2): transformers' MLflowCallback logs the training arguments
there.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import yaml

from ruledsl.model.config import RunConfig, flatten, from_text, normalize
from ruledsl.readers.common import ReadProblem, Source, Tally, files_under, rows_frame, training_step

META_FILE, METRICS_DIR, PARAMS_DIR = "meta.yaml", "metrics", "params"
# mlflow stores a param as str(value): Python's words for true, false and null, and the
# repr of a list or dict (transformers logs `report_to` as "['tensorboard']"). Those are read
# back as the Python values they were (ast.literal_eval evaluates literals only, never code);
# other text is read as a JSON scalar, as any value that came as text (docs/language.md §2).
PYTHON_WORDS: dict[str, Any] = {"True": True, "False": False, "None": None}
PYTHON_CONTAINERS = ("[", "(", "{")


def is_run_dir(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / METRICS_DIR).is_dir()


def read_mlflow_run(run_dir: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    if _deleted(run_dir, problems):
        problems.append(ReadProblem(run_dir, None, "a deleted MLflow run (lifecycle_stage: deleted); skipped",
                                    lost="nothing"))
        return None
    metrics_dir = run_dir / METRICS_DIR
    by_step: dict[int, dict[str, float]] = {}
    metric_files = files_under(metrics_dir, problems)
    for metric_file in metric_files:
        key = metric_file.relative_to(metrics_dir).as_posix()
        _read_metric(metric_file, key, by_step, problems)
    if not by_step:
        problems.append(ReadProblem(run_dir, None, "no metric values in this MLflow run; skipped"))
        return None
    rows = [{"step": step, **by_step[step]} for step in sorted(by_step)]
    frame = rows_frame(rows, run)
    size = sum(p.stat().st_size for p in metric_files)
    return Source(run, "mlflow", run_dir, frame.lazy(), tuple(frame.columns[2:]), size=size,
                  config=read_params(run_dir, problems))


def read_params(run_dir: Path, problems: list[ReadProblem]) -> RunConfig:
    """The run's params as its configuration; a param file that cannot be read is said and left out."""
    params_dir = run_dir / PARAMS_DIR
    if not params_dir.is_dir():
        return {}
    values: dict[str, Any] = {}
    for param_file in files_under(params_dir, problems):
        key = param_file.relative_to(params_dir).as_posix()
        try:
            text = param_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(ReadProblem(param_file, None, f"cannot read the param ({exc}); "
                                                          f"the run is audited without '{key}'", lost="config"))
            continue
        try:
            values.update(param_values(key, text))
        except RecursionError:  # a value nested deeper than can be flattened
            problems.append(ReadProblem(param_file, None, f"nested too deeply to read; the run is audited "
                                                          f"without '{key}'", lost="config"))
    return normalize(values)


def param_values(key: str, text: str) -> dict[str, Any]:
    """One param's configuration entries: its Python value where mlflow wrote one (a list or a
    dict flattened under the key, as `normalize` does), else the text read as a JSON scalar."""
    stripped = text.strip()
    if stripped in PYTHON_WORDS:
        return {key: PYTHON_WORDS[stripped]}
    if stripped.startswith(PYTHON_CONTAINERS):
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = None  # not a Python literal: the text it is
        if isinstance(value, (list, tuple, dict)):
            return flatten(value, key)  # an empty one leaves no key, as in run.json
    return {key: from_text(text)}


def _deleted(run_dir: Path, problems: list[ReadProblem]) -> bool:
    try:
        meta = yaml.safe_load((run_dir / META_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        problems.append(ReadProblem(run_dir / META_FILE, None, f"unreadable ({type(exc).__name__}: {exc}); "
                                                               f"the metrics are read anyway", lost="nothing"))
        return False
    return isinstance(meta, dict) and meta.get("lifecycle_stage") == "deleted"


def _read_metric(path: Path, key: str, by_step: dict[int, dict[str, float]], problems: list[ReadProblem]) -> None:
    """One metric's lines; where a step is logged twice the later line wins (docs/language.md §2).
    The lines that cannot be read are counted, one problem per reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ReadProblem(path, None, f"cannot read the file ({exc}); metric '{key}' skipped"))
        return
    tally = Tally(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _parse_line(line)
        if parsed is None:
            tally.add(number, f"not '<timestamp> <value> <step>' (metric '{key}')")
            continue
        value, step = parsed
        if step is None:
            tally.add(number, f"its step names no training step, a whole number of at most 64 bits (metric '{key}')")
        else:
            by_step.setdefault(step, {})[key] = value
    tally.report(problems, single="line skipped")


def _parse_line(line: str) -> tuple[float, int | None] | None:
    parts = line.split()
    if len(parts) not in (2, 3):  # very old stores wrote no step: it is 0
        return None
    try:
        int(parts[0])
        value = float(parts[1])  # Python's float() reads the 'nan' and 'inf' mlflow writes
        step = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        return None
    return (value if not math.isnan(value) else math.nan), training_step(step)
