"""The configuration of a W&B run kept in a training output directory (docs/language.md §2).

W&B keeps a run in `<WANDB_DIR>/wandb/run-<YYYYMMDD_HHMMSS>-<id>/` (`offline-run-…`
offline); with WANDB_DIR set to the output directory, the run is found there. The
Trainer's WandbCallback puts the training arguments (`args.to_dict()`, and the
model's config) in the run's config, which W&B keeps in two places:

- `files/config.yaml`, in W&B's layout (`{key: {desc: …, value: …}}`, W&B's own keys
  under `_…`): written for online runs, and offline by older versions;
- the run's transaction log `run-<id>.wandb`, which an offline run of current W&B
  versions is left with alone: the config is set in its `run` record and changed by
  later `config` records. It is read with W&B's own protobuf messages (the `wandb`
  extra, imported only when such a file is read); its framing, a log of 32 KiB
  blocks as in LevelDB, is read here.

config.yaml wins where both exist (no extra package needed). The metrics of a W&B
run are not read: the run's other logs are audited.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ruledsl.model.config import RunConfig, unwrap_wandb
from ruledsl.readers.common import ReadProblem
from ruledsl.readers.run_config import normalized

WANDB_DIR, FILES_DIR, CONFIG_FILE, RUN_FILE_SUFFIX = "wandb", "files", "config.yaml", ".wandb"
# `latest-run` is a link to one of these, and is not matched
RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-[A-Za-z0-9]+$")
WITHOUT = "the run is audited without it"
INSTALL_HINT = "reading W&B's run file needs the wandb package: pip install 'ruledsl[wandb]'"

# The transaction log: a 7-byte file header (":W&B", a 2-byte magic, a version byte), then
# 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length, type); a record too long
# for its block is cut into a first, middle… and last chunk. Type 0 pads a block's end.
FILE_HEADER, FILE_MARK = 7, b":W&B"
BLOCK, CHUNK_HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def find_run(directory: Path) -> Path | None:
    """The newest W&B run folder under `directory`/wandb that keeps a configuration, if any."""
    wandb_dir = directory / WANDB_DIR
    if not wandb_dir.is_dir():
        return None
    runs = []
    for entry in wandb_dir.iterdir():
        match = RUN_DIR.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and _kept(entry) is not None:
            runs.append((match.group(1), entry.name, entry))
    return max(runs)[2] if runs else None  # a resumed training starts a newer W&B run: its config wins


def _kept(run_dir: Path) -> Path | None:
    """Where the run keeps its config: config.yaml, else its transaction log."""
    config = run_dir / FILES_DIR / CONFIG_FILE
    if config.is_file():
        return config
    return next((p for p in sorted(run_dir.glob(f"run-*{RUN_FILE_SUFFIX}")) if p.is_file()), None)


def read_config(run_dir: Path, problems: list[ReadProblem]) -> RunConfig:
    """The run's configuration (W&B's own `_…` keys left out); {} with a problem said when
    it cannot be read."""
    path = _kept(run_dir)
    if path is None:
        return {}
    if path.name == CONFIG_FILE:
        return from_config_yaml(path, problems)
    return from_run_file(path, problems)


# ---------------------------------------------------------------- files/config.yaml


def from_config_yaml(path: Path, problems: list[ReadProblem]) -> RunConfig:
    """`{key: {desc: …, value: …}}` → every key's value."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ReadProblem(path, None, f"cannot read W&B's config ({exc}); {WITHOUT}", lost="config"))
        return {}
    except RecursionError:
        problems.append(ReadProblem(path, None, f"W&B's config is nested too deeply to read; {WITHOUT}",
                                    lost="config"))
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(ReadProblem(path, mark.line + 1 if mark is not None else None,
                                    f"W&B's config is not valid YAML ({getattr(exc, 'problem', None) or exc}); "
                                    f"{WITHOUT}", lost="config"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(ReadProblem(path, None, f"W&B's config should be a mapping of keys, "
                                                f"not {type(data).__name__}; {WITHOUT}", lost="config"))
        return {}
    return normalized(unwrap_wandb(data), path, problems)


# ---------------------------------------------------------------- run-<id>.wandb


def from_run_file(path: Path, problems: list[ReadProblem]) -> RunConfig:
    """The config the transaction log sets: the `run` record's, then every `config` record's
    changes in order. A damaged file keeps what was read before the damage, and says so."""
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        problems.append(ReadProblem(path, None, f"{INSTALL_HINT}; the run's W&B config is not read", lost="config"))
        return {}
    config: dict[str, Any] = {}
    count = 0
    try:
        with path.open("rb") as file:
            if file.read(FILE_HEADER)[:len(FILE_MARK)] != FILE_MARK:
                problems.append(ReadProblem(path, None, f"not a W&B run file; {WITHOUT}", lost="config"))
                return {}
            for payload in _records(file):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(payload)
                count += 1
                _apply(record, config)
    except Exception as exc:  # a damaged or cut-off log (a crashed run): what came before it counts
        problems.append(ReadProblem(path, None, f"unreadable after record {count} ({type(exc).__name__}: "
                                                f"{exc}); the config read before it is used", lost="config"))
    return normalized(unwrap_private(config), path, problems)


def _records(file: BinaryIO) -> Iterator[bytes]:
    """The payload of every record of the log, its chunks joined."""
    pending = b""
    position = FILE_HEADER
    while True:
        left = BLOCK - position % BLOCK
        if left < CHUNK_HEADER:  # too little room for a header: the block's end is padding
            if len(file.read(left)) < left:
                return
            position += left
            continue
        header = file.read(CHUNK_HEADER)
        if len(header) < CHUNK_HEADER:
            return  # the end of the file (or of what a running process wrote so far)
        _, length, kind = struct.unpack("<IHB", header)
        position += CHUNK_HEADER
        if kind == 0:  # padding to the end of the block
            file.read(left - CHUNK_HEADER)
            position += left - CHUNK_HEADER
            continue
        data = file.read(length)
        if len(data) < length:
            return  # a record being written when the file was copied: not a whole one
        position += length
        pending = data if kind in (FULL, FIRST) else pending + data
        if kind in (FULL, LAST):
            yield pending
            pending = b""


def _apply(record: Any, config: dict[str, Any]) -> None:
    """A `run` or `config` record's changes to the config (a nested mapping, as W&B keeps it)."""
    kind = record.WhichOneof("record_type")
    changes = record.run.config if kind == "run" else record.config if kind == "config" else None
    if changes is None:
        return
    for item in changes.update:
        *parents, leaf = _path(item)
        _inner(config, parents)[leaf] = json.loads(item.value_json)
    for item in changes.remove:
        *parents, leaf = _path(item)
        _inner(config, parents).pop(leaf, None)


def _path(item: Any) -> list[str]:
    """An item's key: `nested_key` (a path) where given, else `key`."""
    return list(item.nested_key) or [item.key]


def _inner(config: dict[str, Any], parents: list[str]) -> dict[str, Any]:
    for key in parents:
        child = config.get(key)
        if not isinstance(child, dict):
            child = config[key] = {}
        config = child
    return config


def unwrap_private(config: dict[str, Any]) -> dict[str, Any]:
    """The config without W&B's own keys (`_wandb`, …)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}
