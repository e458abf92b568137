"""TensorBoard event files (`events.out.tfevents.*`), read with tensorboard's own
event loader (optional extra `tensorboard`, imported only when such files exist).

transformers' TensorBoardCallback writes each logged key as a scalar tagged
`train/<key>`, `eval/<key without eval_>` or `test/<key without test_>` at the
global step; those tags are mapped back to the keys the Trainer logged, so the
same rules apply as on `trainer_state.json`. It also writes the training arguments
(`args.to_json_string()`) as a text summary tagged `args`: the run's configuration.
"""

from __future__ import annotations

from pathlib import Path

from ruledsl.readers.common import ReadProblem, Source, rows_frame
from ruledsl.readers.run_config import from_args_text

EVENT_FILE_MARK = "tfevents"
TAG_PREFIXES = {"train/": "", "eval/": "eval_", "test/": "test_"}  # written prefix → log key prefix
# The text summary of the training arguments: torch's and tensorboardX's add_text write the tag
# `<tag>/text_summary`, TensorFlow's tf.summary.text the tag itself.
ARGS_TAGS = ("args/text_summary", "args")
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
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        problems.append(ReadProblem(paths[0], None, INSTALL_HINT + "; skipped"))
        return None
    by_step: dict[int, dict[str, float]] = {}
    args: tuple[Path, str] | None = None  # the last `args` text: a resumed run's newer file wins
    for path in sorted(paths, key=lambda p: p.name):
        text = _read_file(path, EventFileLoader, tensor_util, by_step, problems)
        args = (path, text) if text is not None else args
    if not by_step:
        problems.append(ReadProblem(paths[0], None, "no scalar values in these event files; skipped"))
        return None
    rows = [{"step": step, **values} for step, values in by_step.items()]
    frame = rows_frame(rows, run)
    config = from_args_text(args[1], args[0], problems) if args is not None else {}
    return Source(run, "tensorboard", paths[0].parent, frame.lazy(), tuple(frame.columns[2:]),
                  size=sum(p.stat().st_size for p in paths), config=config)


def _read_file(path: Path, loader_class, tensor_util, by_step: dict[int, dict[str, float]],
               problems: list[ReadProblem]) -> str | None:
    """The file's scalars into `by_step`; returns its last `args` text summary, if any."""
    count = 0
    args = None
    try:
        for event in loader_class(str(path)).Load():
            count += 1
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                number = _scalar(value, tensor_util)
                if number is not None:
                    by_step.setdefault(int(event.step), {})[log_key(value.tag)] = number
                elif value.tag in ARGS_TAGS:
                    args = _text(value, tensor_util) or args
    except Exception as exc:  # a damaged record: keep what came before it, say where it stopped
        problems.append(ReadProblem(path, None, f"unreadable after event {count} ({type(exc).__name__}: "
                                                f"{exc}); the events before it are audited"))
    if count == 0:
        problems.append(ReadProblem(path, None, "no events (empty or not an event file); skipped"))
    return args


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
