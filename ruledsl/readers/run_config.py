"""A run's configuration (docs/language.md §2) from what the logs keep beside the metrics.

- the callback's `diagnostics/run.json`: its `config` (the trainer's arguments, flat);
- a W&B run kept inside a training output directory (read in wandb_run.py);
- the `args` text summary that transformers' TensorBoardCallback writes (read in
  tfevents.py; parsed here);
- an MLflow run's params (read in mlflow_store.py).

A configuration that cannot be read never stops an audit: it is reported as a
`ReadProblem` naming the file, and the run is audited without it. Only JSON, YAML's
safe loader and (for W&B) protobuf messages are used: the Trainer's
`training_args.bin` is a pickle, and is never read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruledsl.model.config import RunConfig, merge, normalize
from ruledsl.readers.common import ReadProblem

WITHOUT = "the run is audited without it"


def layered(layers: Iterable[RunConfig]) -> RunConfig:
    """One configuration from several sources of the same run, a later layer winning per key."""
    merged: RunConfig = {}
    for layer in layers:
        merged = merge(merged, layer)
    return merged


# ---------------------------------------------------------------- run.json


def from_run_json(path: Path, problems: list[ReadProblem]) -> RunConfig:
    """The `config` the callback keeps in run.json (already flat; normalized again all the same)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        problems.append(ReadProblem(path, None, f"unreadable run metadata ({_first_line(exc)}); "
                                                f"the run's configuration is not taken from it", lost="config"))
        return {}
    config = data.get("config") if isinstance(data, dict) else None
    if config is None:
        return {}  # written by an older callback, or by hand: no configuration kept
    if not isinstance(config, Mapping):
        problems.append(ReadProblem(path, None, f"'config' should be a mapping of keys to values, "
                                                f"not {type(config).__name__}; {WITHOUT}", lost="config"))
        return {}
    return normalized(config, path, problems)


# ---------------------------------------------------------------- TensorBoard's `args`


def from_args_text(text: str, path: Path, problems: list[ReadProblem]) -> RunConfig:
    """The JSON of `args.to_json_string()` that the Trainer writes as the `args` text summary."""
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problems.append(ReadProblem(path, None, f"the 'args' text summary is not JSON ({_first_line(exc)}); "
                                                f"the run's configuration is not taken from it", lost="config"))
        return {}
    if not isinstance(data, Mapping):
        problems.append(ReadProblem(path, None, f"the 'args' text summary holds {type(data).__name__}, "
                                                f"not the trainer's arguments; {WITHOUT}", lost="config"))
        return {}
    return normalized(data, path, problems)


def normalized(config: Mapping[str, Any], path: Path, problems: list[ReadProblem]) -> RunConfig:
    """`normalize`, or {} with the problem said when the configuration is nested deeper than it goes."""
    try:
        return normalize(config)
    except RecursionError:
        problems.append(ReadProblem(path, None, f"the configuration is nested too deeply to read; {WITHOUT}",
                                    lost="config"))
        return {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
