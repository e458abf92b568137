"""TensorBoard event files (`events.out.tfevents.*`), read with tensorboard's own
event messages (optional extra `tensorboard`, imported only when such files exist).

An event file is a TFRecord file: records of a length (8 bytes), its masked CRC-32C
(4 bytes), the serialized event and its masked CRC-32C (4 bytes). The records are read
here rather than with tensorboard's loader, which stops at the first damaged record
without a word: a record whose data is damaged is skipped (its length says where the
next one starts), and after a damaged length the next record is found by the next header
whose checksum holds. Every record that cannot be read is counted and said.

transformers' TensorBoardCallback writes each logged key as a scalar tagged
`train/<key>`, `eval/<key without eval_>` or `test/<key without test_>` at the
global step; those tags are mapped back to the keys the Trainer logged, so the
same rules apply as on `trainer_state.json`. It also writes the training arguments
(`args.to_json_string()`) as a text summary tagged `args`: the run's configuration.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ruledsl.readers.common import ReadProblem, Source, Tally, rows_frame, training_step
from ruledsl.readers.run_config import from_args_text

EVENT_FILE_MARK = "tfevents"
TAG_PREFIXES = {"train/": "", "eval/": "eval_", "test/": "test_"}  # written prefix → log key prefix
# The text summary of the training arguments: torch's and tensorboardX's add_text write the tag
# `<tag>/text_summary`, TensorFlow's tf.summary.text the tag itself.
ARGS_TAGS = ("args/text_summary", "args")
HEADER, FOOTER = 12, 4  # length and its checksum; the data's checksum
DAMAGED = "a damaged record (its checksum does not match)"
CUT_OFF = "the last record is cut off (copied while it was being written?)"
BAD_STEP = "an event whose step names no training step (a whole number of at most 64 bits)"
INSTALL_HINT = "reading TensorBoard event files needs the tensorboard package: pip install 'ruledsl[tensorboard]'"


def is_event_file(path: Path) -> bool:
    return EVENT_FILE_MARK in path.name and path.is_file()


def log_key(tag: str) -> str:
    """The Trainer's log key for a TensorBoard tag: `train/loss` → `loss`, `eval/loss` → `eval_loss`."""
    for written, key_prefix in TAG_PREFIXES.items():
        if tag.startswith(written) and len(tag) > len(written):
            return key_prefix + tag[len(written):]
    return tag


def read_events(paths: list[Path], run: str, problems: list[ReadProblem]) -> Source | None:
    """The scalars of one run's event files (oldest file first: a resumed run's later
    values win at the steps it logs again, docs/language.md §2)."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
        from tensorboard.util import tensor_util
    except ImportError:
        problems.append(ReadProblem(paths[0], None, INSTALL_HINT + "; skipped"))
        return None
    by_step: dict[int, dict[str, float]] = {}
    args: tuple[Path, str] | None = None  # the last `args` text: a resumed run's newer file wins
    for path in sorted(paths, key=lambda p: p.name):
        text = _read_file(path, Event, masked_crc32c, tensor_util, by_step, problems)
        args = (path, text) if text is not None else args
    if not by_step:
        problems.append(ReadProblem(paths[0], None, "no scalar values in these event files; skipped"))
        return None
    rows = [{"step": step, **values} for step, values in by_step.items()]
    frame = rows_frame(rows, run)
    config = from_args_text(args[1], args[0], problems) if args is not None else {}
    return Source(run, "tensorboard", paths[0].parent, frame.lazy(), tuple(frame.columns[2:]),
                  size=sum(p.stat().st_size for p in paths), config=config)


def _read_file(path: Path, event_class: Any, crc: Callable[[bytes], int], tensor_util: Any,
               by_step: dict[int, dict[str, float]], problems: list[ReadProblem]) -> str | None:
    """The file's scalars into `by_step`; returns its last `args` text summary, if any."""
    count = 0
    args = None
    tally = Tally(path, "record", "records")
    data = path.read_bytes()  # not mapped: a file cut short meanwhile would end the process (SIGBUS)
    for number, payload in _records(data, crc, tally):
        try:
            event = event_class.FromString(payload)
        except Exception:  # a checksum that holds over data that is no event
            tally.add(number, DAMAGED)
            continue
        count += 1
        if not event.HasField("summary"):
            continue
        step = training_step(event.step)
        for value in event.summary.value:
            scalar = _scalar(value, tensor_util)
            if scalar is not None and step is None:
                tally.add(number, BAD_STEP)
            elif scalar is not None and step is not None:
                by_step.setdefault(step, {})[log_key(value.tag)] = scalar
            elif value.tag in ARGS_TAGS:
                args = _text(value, tensor_util) or args
    if tally.counts:
        tally.report(problems, done=f"skipped, of {count + tally.skipped} in the file")
    if count == 0 and not tally.counts:
        problems.append(ReadProblem(path, None, "no events (empty or not an event file); skipped"))
    return args


def _records(data: bytes, crc: Callable[[bytes], int], tally: Tally) -> Iterator[tuple[int, bytes]]:
    """(record number, data) of each record whose checksums hold; the others are counted."""
    position, end, number = 0, len(data), 0
    while position < end:
        number += 1
        if end - position < HEADER:
            tally.add(number, CUT_OFF)
            return
        length, length_crc = struct.unpack_from("<QI", data, position)
        if crc(data[position:position + 8]) != length_crc:  # where this record ends is unknown
            tally.add(number, DAMAGED)
            following = _next_header(data, position + 1, crc)
            if following is None:
                return
            position = following
            continue
        stop = position + HEADER + length + FOOTER
        if stop > end:
            tally.add(number, CUT_OFF)
            return
        payload = data[position + HEADER:stop - FOOTER]
        if crc(payload) == struct.unpack_from("<I", data, stop - FOOTER)[0]:
            yield number, payload
        else:
            tally.add(number, DAMAGED)
        position = stop


def _next_header(data: bytes, start: int, crc: Callable[[bytes], int]) -> int | None:
    """The next position from `start` where a record's header holds (its length's checksum
    matches, and the record fits in the file). A record is shorter than 4 GiB: its length's
    upper 4 bytes are zeros, which are searched for first."""
    end = len(data)
    while True:
        zeros = data.find(b"\0\0\0\0", start + 4)
        if zeros < 0:
            return None
        candidate = zeros - 4
        if candidate + HEADER <= end:
            length, length_crc = struct.unpack_from("<QI", data, candidate)
            if candidate + HEADER + length + FOOTER <= end and crc(data[candidate:candidate + 8]) == length_crc:
                return candidate
        start = candidate + 1


def _text(value, tensor_util) -> str | None:
    """A text summary's string: a string tensor of one element (`string_val`, as every writer
    stores it; else whatever tensorboard's own decoder makes of the tensor)."""
    if value.WhichOneof("value") != "tensor":
        return None
    strings = list(value.tensor.string_val)
    if not strings:
        try:
            array = tensor_util.make_ndarray(value.tensor)
        except Exception:
            return None
        strings = [item for item in array.reshape(-1).tolist() if isinstance(item, bytes)]
    return strings[0].decode("utf-8", errors="replace") if len(strings) == 1 else None


def _scalar(value, tensor_util) -> float | None:
    """A summary value's number: `simple_value` (tensorboardX, torch) or a scalar tensor (TF 2)."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        try:
            array = tensor_util.make_ndarray(value.tensor)
        except Exception:
            return None
        if array.size == 1 and array.dtype.kind in "fiu":
            return float(array.reshape(()).item())
    return None
