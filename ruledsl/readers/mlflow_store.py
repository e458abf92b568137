"""MLflow local file stores (`mlruns/`), read from the files themselves: no tracking
server and no mlflow package needed.

A run is a directory `<store>/<experiment id>/<run id>/` holding `meta.yaml` and
`metrics/`. Each metric is a file named by its key under `metrics/` (a key with `/`
becomes subdirectories), one `<timestamp ms> <value> <step>` line per logged value,
in the order they were logged.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from ruledsl.readers.common import ReadProblem, Source, rows_frame

META_FILE, METRICS_DIR = "meta.yaml", "metrics"


def is_run_dir(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / METRICS_DIR).is_dir()


def read_mlflow_run(run_dir: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    if _deleted(run_dir, problems):
        problems.append(ReadProblem(run_dir, None, "a deleted MLflow run (lifecycle_stage: deleted); skipped"))
        return None
    metrics_dir = run_dir / METRICS_DIR
    by_step: dict[int, dict[str, float]] = {}
    for metric_file in sorted(p for p in metrics_dir.rglob("*") if p.is_file()):
        key = metric_file.relative_to(metrics_dir).as_posix()
        _read_metric(metric_file, key, by_step, problems)
    if not by_step:
        problems.append(ReadProblem(run_dir, None, "no metric values in this MLflow run; skipped"))
        return None
    rows = [{"step": step, **by_step[step]} for step in sorted(by_step)]
    frame = rows_frame(rows, run)
    size = sum(p.stat().st_size for p in metrics_dir.rglob("*") if p.is_file())
    return Source(run, "mlflow", run_dir, frame.lazy(), tuple(frame.columns[2:]), size=size)


def _deleted(run_dir: Path, problems: list[ReadProblem]) -> bool:
    try:
        meta = yaml.safe_load((run_dir / META_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(ReadProblem(run_dir / META_FILE, None, f"unreadable ({exc}); the metrics are read anyway"))
        return False
    return isinstance(meta, dict) and meta.get("lifecycle_stage") == "deleted"


def _read_metric(path: Path, key: str, by_step: dict[int, dict[str, float]], problems: list[ReadProblem]) -> None:
    """One metric's lines; where a step is logged twice the later line wins (spec §2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ReadProblem(path, None, f"cannot read the file ({exc}); metric '{key}' skipped"))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _parse_line(line)
        if parsed is None:
            problems.append(ReadProblem(path, number, f"not '<timestamp> <value> <step>' "
                                                      f"(metric '{key}'); line skipped"))
            continue
        value, step = parsed
        by_step.setdefault(step, {})[key] = value


def _parse_line(line: str) -> tuple[float, int] | None:
    parts = line.split()
    if len(parts) not in (2, 3):  # very old stores wrote no step: it is 0
        return None
    try:
        int(parts[0])
        value = float(parts[1])  # Python's float() reads the 'nan' and 'inf' mlflow writes
        step = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        return None
    return (value if not math.isnan(value) else math.nan), step
