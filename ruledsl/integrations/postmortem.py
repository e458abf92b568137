"""Postmortems: what the callback knew when training ended abnormally, in `diagnostics/postmortem.json`.

    guard = PostmortemGuard(callback)      # DiagnosticsCallback makes one unless postmortem=False
    guard.watch_trainer()                  # at on_init_end: wraps this trainer's `train`
    guard.arm(args)                        # at on_train_begin: SIGTERM handler (and the fallback hook)
    guard.write(STOP_ON)                   # the callback's stop_on decision
    guard.disarm()                         # at on_train_end: everything put back

A TrainerCallback never sees the exception that ends a training loop, nor Ctrl-C, nor a
scheduler's SIGTERM: no hook is called then. So the guard watches from outside the hooks:

* An exception or KeyboardInterrupt. At `on_init_end` the guard walks up the call stack to the
  Trainer being built (the frame whose `self` has a `callback_handler` holding this callback:
  Trainer.__init__, which calls on_init_end) and sets an instance attribute `train` on that
  trainer: a pass-through that looks up the class's `train` at each call (so a later patch of
  the class still runs) and, when a BaseException leaves it, has the postmortem written and
  re-raises it unchanged. Only that trainer is touched; the attribute stays for the trainer's
  life (it does nothing once the callback is removed from the trainer). When the callback only
  meets the trainer at `on_train_begin` (added with `trainer.add_callback`), `train` is already
  running and cannot be wrapped: the guard then chains a `sys.excepthook` that writes the
  postmortem for an uncaught exception whose traceback passes through that trainer, then calls
  the hook that was there. An exception caught by your own code (a notebook cell, a retry loop)
  never reaches that hook: then there is no postmortem.
* SIGTERM. At `on_train_begin`, in the main thread, a handler is installed that writes the
  postmortem, then chains to the handler that was there before: a Python callable (the
  Trainer's JIT-checkpoint handler, your own) is called; the default action is restored and
  the signal sent again to the process, so that it still dies "killed by SIGTERM" (exit status
  -15 / 143); an ignored SIGTERM stays ignored (the postmortem then records a signal the
  process chose to ignore). Python runs the handler in the main thread between two bytecodes:
  a long C call (a CUDA kernel, a collective) finishes first. Outside the main thread no
  handler can be set: the guard says so once and skips it; a handler set from C (one Python
  cannot give back) is left alone, said once too. At the end of training the previous handler
  is put back, unless someone replaced ours meanwhile (theirs is kept: the Trainer's JIT
  checkpoint puts its own previous handler back in its on_train_end).
* `stop_on`: the callback calls `write(STOP_ON)` when it stops the run.

One postmortem per training session: the first abnormal end wins (a SIGTERM whose chained
handler raises SystemExit is a "sigterm", not an "exception"). Only the main process writes.
The file is written whole or not at all: a temporary file in the same folder, fsync'ed, then
`os.replace`d over postmortem.json, then the folder fsync'ed. Everything runs behind the
callback's fuse (part POSTMORTEM): a fault here never reaches the training loop or the signal
chain. The report's fields are listed in `build_report`.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from ruledsl.alerts import json_safe
from ruledsl.integrations.fault_guard import logger

POSTMORTEM = "the postmortem"  # the fuse's part
POSTMORTEM_FILE = "postmortem.json"
SCHEMA_VERSION = 1
EXCEPTION, KEYBOARD_INTERRUPT, SIGTERM, STOP_ON = "exception", "keyboard_interrupt", "sigterm", "stop_on"
REASONS = (EXCEPTION, KEYBOARD_INTERRUPT, SIGTERM, STOP_ON)
NOTIFICATIONS = "notifications"  # the callback's fuse part for the webhook notifier (callback.py)
NOTIFY_FLUSH_SECONDS = 3.0  # what a dying process (SIGTERM, default action) gives the notifier's queue
STACK_DEPTH = 64  # frames looked at when looking for the Trainer on the call stack
FILE_NAMES = {"metrics": "metrics.jsonl", "alerts": "alerts.jsonl", "run": "run.json"}


class PostmortemGuard:
    """Notices an abnormal end of one callback's training and has its postmortem written."""

    def __init__(self, callback: Any):
        self.callback = callback  # a DiagnosticsCallback: its state is what the report holds
        self.directory: Path | None = None  # where postmortem.json goes (the diagnostics folder)
        self.written: Path | None = None  # this session's postmortem, once written
        self._trainer: weakref.ref | None = None
        self._train_depth = 0  # > 0 while the wrapped train() runs
        self._armed = False
        self._handler = self._on_sigterm  # one bound method: `getsignal(...) is self._handler` holds
        self._previous_sigterm: Any = None
        self._sigterm_installed = False
        self._excepthook: Callable[..., Any] | None = None
        self._previous_excepthook: Callable[..., Any] | None = None
        self._said: set[str] = set()

    # ------------------------------------------------------------ installing and removing

    def watch_trainer(self) -> None:
        """At on_init_end: find the Trainer being built and wrap its `train` (once)."""
        trainer = self._find_trainer()
        if trainer is not None and not isinstance(vars(trainer).get("train"), _GuardedTrain):
            trainer.train = _GuardedTrain(trainer, self)

    def arm(self, args: Any) -> None:
        """At on_train_begin: remember the diagnostics folder, install the SIGTERM handler, and
        when train() could not be wrapped, the chained excepthook."""
        if not self.callback._main:
            return
        self.directory = Path(self.callback._directory(args))
        if self._train_depth == 0:  # the wrapper starts a session itself; without it, here
            self.written = None
            self._find_trainer()
            self._install_excepthook()
        self._armed = True
        self._install_sigterm()

    def disarm(self) -> None:
        """At the end of training (on_train_end, or train() leaving): put back what was there."""
        self._armed = False
        self._restore_sigterm()
        self._restore_excepthook()

    def _find_trainer(self) -> Any:
        """The Trainer on the call stack whose callback handler holds this callback (remembered)."""
        trainer = _trainer_on_stack(self.callback, sys._getframe(1))
        if trainer is not None:
            self._trainer = weakref.ref(trainer)
        return trainer

    def _install_sigterm(self) -> None:
        if self._sigterm_installed:
            return
        if threading.current_thread() is not threading.main_thread():
            self._say_once("thread", "ruledsl: training runs outside the main thread, where Python cannot set a "
                                     "signal handler: no postmortem on SIGTERM (said once)")
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is None:  # set from C: signal.signal could not put it back
            self._say_once("c_handler", "ruledsl: SIGTERM has a handler set outside Python, left alone: no "
                                        "postmortem on SIGTERM (said once)")
            return
        self._previous_sigterm = previous
        signal.signal(signal.SIGTERM, self._handler)
        self._sigterm_installed = True

    def _restore_sigterm(self) -> None:
        if not self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        self._sigterm_installed = False
        if signal.getsignal(signal.SIGTERM) is self._handler:  # else someone set theirs since: kept
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def _install_excepthook(self) -> None:
        if self._excepthook is not None:
            return
        previous = sys.excepthook

        def write_then_chain(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            if self._armed and self._through_trainer(tb):
                self.ended_by(value)
            previous(kind, value, tb)

        self._previous_excepthook, self._excepthook = previous, write_then_chain
        sys.excepthook = write_then_chain

    def _restore_excepthook(self) -> None:
        if self._excepthook is not None and sys.excepthook is self._excepthook:
            sys.excepthook = self._previous_excepthook  # type: ignore[assignment]
        self._excepthook = self._previous_excepthook = None

    def _through_trainer(self, tb: TracebackType | None) -> bool:
        """Whether the exception came out of this trainer (a frame of its methods is in `tb`): an
        unrelated uncaught exception later in the program is no postmortem of the run."""
        trainer = self._trainer() if self._trainer is not None else None
        return trainer is not None and any(frame.f_locals.get("self") is trainer
                                           for frame, _ in traceback.walk_tb(tb))

    # ------------------------------------------------------------ the wrapped train()

    def train_entered(self) -> None:
        self._train_depth += 1
        if self._train_depth == 1:
            self.written = None  # a new session: its own postmortem

    def train_left(self) -> None:
        self._train_depth -= 1
        if self._train_depth == 0:
            self.disarm()

    def ended_by(self, exc: BaseException) -> None:
        """An exception left train(): the postmortem, never an exception of its own."""
        if not self._armed and self._train_depth == 0:
            return
        reason = KEYBOARD_INTERRUPT if isinstance(exc, KeyboardInterrupt) else EXCEPTION
        try:
            self.write(reason, exc)
        except Exception:  # the fuse catches what write raises; this is its last line
            logger.exception("ruledsl: the postmortem could not be written")

    # ------------------------------------------------------------ SIGTERM

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous_sigterm
        if self._armed:
            self.write(SIGTERM, signal_info={"signal": "SIGTERM", "previous_handler": _handler_name(previous)})
        _chain(previous, signum, frame, self._before_dying)

    def _before_dying(self) -> None:
        """The process is about to be killed: the queued postmortem notification gets a few seconds."""
        notifier = getattr(self.callback, "notifier", None)
        if notifier is not None and hasattr(notifier, "close"):
            self.callback.fuse.run(NOTIFICATIONS, notifier.close, NOTIFY_FLUSH_SECONDS)

    # ------------------------------------------------------------ writing

    def write(self, reason: str, exc: BaseException | None = None, **extra: Any) -> Path | None:
        """This session's postmortem, behind the fuse, on the main process, once: its path, or None."""
        if self.written is not None or not self.callback._main:
            return None
        path = self.callback.fuse.run(POSTMORTEM, self._write, reason, exc, extra)
        if path is not None:
            self.written = path
        return path

    def _write(self, reason: str, exc: BaseException | None, extra: dict[str, Any]) -> Path:
        directory = self._directory()
        report = build_report(self.callback, reason, exc=exc, trainer=self._trainer_now(),
                              path=directory / POSTMORTEM_FILE, **extra)
        path = write_atomically(directory / POSTMORTEM_FILE, report)
        self.written = path  # before anything else can fail: the file is there
        self._tell(report, path)
        notifier = getattr(self.callback, "notifier", None)
        if notifier is not None:
            self.callback.fuse.run(NOTIFICATIONS, notifier.postmortem, report)
        return path

    def _directory(self) -> Path:
        files = getattr(self.callback, "files", None)
        if files is not None:
            return Path(files.directory)
        if self.directory is not None:
            return self.directory
        raise RuntimeError("no diagnostics folder is known yet (training has not begun)")

    def _trainer_now(self) -> Any:
        return self._trainer() if self._trainer is not None else None

    def _tell(self, report: dict[str, Any], path: Path) -> None:
        """One line on stderr (and a logging record): what ended the run and where the file is."""
        step = report.get("last_step")
        text = (f"ruledsl: training ended abnormally ({_reason_text(report)}) at step {step}; postmortem "
                f"written to {path} (show it with: ruledsl postmortem {path})")
        logger.warning(text)
        if getattr(self.callback, "console", True):
            print(text, file=sys.stderr, flush=True)

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            logger.warning(text)
            if getattr(self.callback, "console", True):
                print(text, file=sys.stderr, flush=True)


class _GuardedTrain:
    """`trainer.train` as an instance attribute: the class's train(), and on a BaseException leaving
    it, the postmortem, then the same exception raised again."""

    def __init__(self, trainer: Any, guard: PostmortemGuard):
        # a strong reference: in `make_trainer(...).train()` nothing else holds the trainer while it trains
        # (the attribute is a plain object, not a bound method); the cycle is the garbage collector's to free
        self._trainer = trainer
        self._guard = guard
        self.__doc__ = type(trainer).train.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        trainer = self._trainer
        train = type(trainer).train.__get__(trainer)  # looked up now: a later patch of the class still runs
        guard = self._guard
        if guard.callback not in getattr(trainer.callback_handler, "callbacks", ()):
            return train(*args, **kwargs)  # the callback was removed: nothing to watch
        guard.train_entered()
        try:
            return train(*args, **kwargs)
        except BaseException as exc:
            guard.ended_by(exc)
            raise
        finally:
            guard.train_left()


def _trainer_on_stack(callback: Any, frame: FrameType | None) -> Any:
    """The object bound to `self` in the nearest frame whose `callback_handler` holds `callback`
    (the Trainer calling the hook), or None. Only frames with a `self` local are read."""
    for _ in range(STACK_DEPTH):
        if frame is None:
            return None
        if "self" in frame.f_code.co_varnames:
            candidate = frame.f_locals.get("self")
            handler = getattr(candidate, "callback_handler", None)
            if callback in getattr(handler, "callbacks", ()):
                return candidate
        frame = frame.f_back
    return None


def _chain(previous: Any, signum: int, frame: FrameType | None, before_dying: Callable[[], None]) -> None:
    """Do what the handler that was there before would have done."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default action: die of the signal, as if nobody had caught it
        before_dying()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _handler_name(handler: Any) -> str:
    if handler == signal.SIG_DFL:
        return "default"
    if handler == signal.SIG_IGN:
        return "ignored"
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


# ---------------------------------------------------------------- the report


def build_report(callback: Any, reason: str, *, exc: BaseException | None = None, trainer: Any = None,
                 path: Path | None = None, signal_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The postmortem of `callback`'s run as a JSON-ready mapping (non-finite numbers as "nan",
    "inf", "-inf", docs/language.md §4):

    schema_version, reason (REASONS), time (UTC, ISO 8601), run, trainer, last_step (the
    Trainer's global_step, else the last logged row's), last_logged_step, exception ({type,
    message, traceback} or null), stopped (the stop_on decision or null), signal ({signal,
    previous_handler} or null), recent_rows ([{step, metric: value, …}], the last
    postmortem_rows rows the callback read), episodes (the monitor's episodes so far, each with
    `open`: still firing), coverage (the rules not evaluated so far, as records), rules ([{name,
    severity, origin}] of the rules that apply), stop_on, versions, files (the diagnostics
    folder and its files), and `incomplete` ({section: why}) for any section that could not
    be read: one broken part never costs the rest of the report.
    """
    incomplete: dict[str, str] = {}

    def section(name: str, read: Callable[[], Any], default: Any = None) -> Any:
        try:
            return read()
        except Exception as error:  # a postmortem of a broken run: take what can be read
            incomplete[name] = f"{type(error).__name__}: {error}"
            return default

    monitor = getattr(callback, "monitor", None)
    rows = section("recent_rows", lambda: [{"step": step, **row} for step, row in callback.recent_rows], [])
    last_logged = rows[-1]["step"] if rows else None
    report = {
        "schema_version": SCHEMA_VERSION, "reason": reason,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run": getattr(monitor, "run", None), "trainer": getattr(callback, "trainer", None),
        "last_step": section("last_step", lambda: _last_step(trainer, last_logged)),
        "last_logged_step": last_logged,
        "exception": section("exception", lambda: exception_info(exc)) if exc is not None else None,
        "stopped": getattr(callback, "stopped", None) if reason == STOP_ON else None,
        "signal": signal_info,
        "recent_rows": rows,
        "episodes": section("episodes", lambda: marked_episodes(monitor), []),
        "coverage": section("coverage", lambda: [r.as_dict() for r in monitor.coverage()] if monitor else None),
        "rules": section("rules", lambda: [{"name": r.name, "severity": r.severity, "origin": r.origin}
                                           for r in callback.active_rules], []),
        "stop_on": getattr(callback, "stop_on", None),
        "versions": section("versions", lambda: _versions_of(callback), {}),
        "files": _files(path),
    }
    if incomplete:
        report["incomplete"] = incomplete
    return json_safe(report)


def _last_step(trainer: Any, last_logged: int | None) -> int | None:
    state = getattr(trainer, "state", None)
    step = getattr(state, "global_step", None)
    return int(step) if isinstance(step, int) else last_logged


def exception_info(exc: BaseException) -> dict[str, Any]:
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"type": name, "message": str(exc),
            "traceback": "".join(traceback.format_exception(kind, exc, exc.__traceback__))}


def marked_episodes(monitor: Any) -> list[dict[str, Any]]:
    """`monitor.episodes()`, each with `open`: True for the episode its rule is still firing in."""
    if monitor is None:
        return []
    still_open = {(r["rule"], r["metric"], r["first_step"]) for r in monitor.open_episodes()}
    return [{**record, "open": (record["rule"], record["metric"], record["first_step"]) in still_open}
            for record in monitor.episodes()]


def _versions_of(callback: Any) -> dict[str, str]:
    """The callback's `_versions()` (python, ruledsl, torch, transformers, trl, …); imported here,
    when a postmortem is written, since callback.py imports this module."""
    from ruledsl.integrations import callback as callback_module

    method = getattr(callback, "_versions", None)
    return method() if callable(method) else callback_module._versions()


def _files(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    folder = path.parent
    return {"directory": str(folder), "postmortem": str(path),
            **{key: str(folder / name) for key, name in FILE_NAMES.items()}}


def _reason_text(report: dict[str, Any]) -> str:
    reason = report.get("reason")
    exc = report.get("exception") or {}
    if reason in (EXCEPTION, KEYBOARD_INTERRUPT) and exc:
        return f"{exc.get('type')}: {exc.get('message')}" if exc.get("message") else str(exc.get("type"))
    if reason == STOP_ON and report.get("stopped"):
        stopped = report["stopped"]
        return f"stop_on: rule {stopped.get('rule')} ({stopped.get('severity')})"
    return "SIGTERM" if reason == SIGTERM else str(reason)


def write_atomically(path: Path, report: dict[str, Any]) -> Path:
    """`report` as `path`, whole or not at all: a temporary file in the same folder (same file
    system, so the rename is atomic), flushed to disk, renamed over `path`, the folder flushed
    so that the rename itself survives a crash. The temporary file never outlives a failure."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    temporary = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with the usual 0o666 and the umask (mkstemp would make it private, 0o600)
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    _fsync_folder(folder)
    return path


def _remove(name: Path) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform or file system that cannot open a folder: the file is written anyway
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
