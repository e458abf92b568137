"""Webhook notifications: alert episodes and postmortems POSTed as JSON to chat webhooks.

    notifier = Notifier(["https://hooks.slack.com/services/T000/B000/XXXX"])
    notifier.episode(record)      # an alert episode that started (the callback's / audit's record)
    notifier.postmortem(report)   # a postmortem (a mapping with at least reason, last_step, run)
    notifier.close(timeout=5)     # deliver what is queued, within that many seconds

The caller is a training loop, so nothing here may ever block it or raise into it from the
network: `episode()` and `postmortem()` only put the message on a bounded queue; ONE daemon
thread posts it to every URL. A full queue drops the newest message (counted). Each POST has
a timeout on connect and on each read, and is tried again with a growing pause after a
connection error, a timeout, a 5xx or a 429 (rate limited: its Retry-After is honoured, up to
a cap); a 4xx is the endpoint refusing the message, and trying again would not change that.
Once a URL has failed every try, the next messages to it get one try each until one gets
through, so that a dead endpoint does not cost each message all its tries.
Redirects are not followed: urllib would turn the POST into a GET and lose the message.

Nothing is silent: the first failure and the first drop are said at once (a warning through
the `ruledsl.callback` logger and on stderr, as fault_guard.Fuse does), and `close()` sums up
what was not delivered. Webhook URLs hold secrets (Slack's carry the token in the path), so
what is said names a URL by its scheme and host only.

The same episode (run, rule, first_step) is posted once, however often it is given; the same
for a postmortem (run, last_step, reason).

The payload (docs: scratch doc-notify.md): a top-level `text`, one readable line, which is what
Slack, Mattermost and Discord's Slack-compatible endpoint (`…/slack`) show, and a `ruledsl`
object with the structured fields. Only the standard library: this module must not import
transformers (`ruledsl audit --notify` uses it).
"""

from __future__ import annotations

import atexit
import dataclasses
import http.client
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from ruledsl import __version__
from ruledsl.alerts import json_safe, severity_mark
from ruledsl.integrations.fault_guard import logger

TIMEOUT = 5.0  # seconds, for the connection and for each read of the answer
RETRIES = 2  # tries after the first, on a connection error, a timeout, a 5xx or a 429
QUEUE_SIZE = 100  # messages waiting at most; past it the newest is dropped
CLOSE_TIMEOUT = 5.0  # seconds close() waits by default
AT_EXIT_TIMEOUT = 2.0  # seconds given at interpreter exit to a notifier never closed
BACKOFF = 0.5  # the first pause between tries, doubled each time
MAX_PAUSE = 10.0  # the longest pause between tries, Retry-After included
TEXT_LIMIT = 3000  # characters of `text` at most (Slack cuts a message far later; a chat line should be short)
ANSWER_LIMIT = 200  # characters of an error answer quoted in a warning

EPISODE, POSTMORTEM = "episode", "postmortem"
_STOP = object()  # the queue item that ends the worker


@dataclasses.dataclass
class NotifyCounts:
    """What happened to the messages. `queued` and `dropped` count messages; `delivered`,
    `failed` and `unsent` count posts (a message goes to each URL)."""

    queued: int = 0  # messages accepted
    duplicates: int = 0  # messages already accepted before (the same episode): not posted again
    dropped: int = 0  # messages refused: the queue was full, or the notifier closed
    delivered: int = 0  # posts answered with a 2xx
    failed: int = 0  # posts given up on: a 4xx, or every try failed
    unsent: int = 0  # posts not done when close() stopped waiting


def webhook_urls(urls: str | Sequence[str]) -> list[str]:
    """The URLs, checked (http or https, with a host) and without repeats; ValueError naming a bad one."""
    given = [urls] if isinstance(urls, str) else urls
    if not isinstance(given, Sequence):
        raise TypeError(f"webhook URLs are a URL or a list of URLs, not {type(urls).__name__}")
    checked: list[str] = []
    for url in given:
        if not isinstance(url, str):
            raise TypeError(f"a webhook URL is text, not {type(url).__name__}")
        _check_url(url)
        if url not in checked:
            checked.append(url)
    if not checked:
        raise ValueError("no webhook URL given")
    return checked


def _check_url(url: str) -> None:
    hint = "a webhook URL starts with http:// or https://, e.g. https://hooks.slack.com/services/T000/B000/XXXX"
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"{url!r} is not a webhook URL: it holds a space or a control character; {hint}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url!r} is not a webhook URL: its scheme is {parts.scheme or 'missing'!r}; {hint}")
    try:
        parts.port  # noqa: B018 - reading it checks it (a port past 65535, or not a number, raises)
    except ValueError:
        raise ValueError(f"{url!r} is not a webhook URL: its port is not a port number; {hint}") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} is not a webhook URL: it names no host; {hint}")


def shown_url(url: str) -> str:
    """The URL as said in warnings: scheme and host only (the path of a webhook URL is its secret)."""
    parts = urlsplit(url)
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{rest}"


# ---------------------------------------------------------------- the payload


def payload(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """What is POSTed: Slack's `text`, and the structured message under `ruledsl`."""
    text = episode_text(data) if kind == EPISODE else postmortem_text(data)
    field = "record" if kind == EPISODE else "report"
    return {"text": text, "ruledsl": {"kind": kind, "version": __version__, field: json_safe(dict(data))}}


def episode_text(record: Mapping[str, Any]) -> str:
    """`🚨 [HIGH] grpo_is_ratio_collapse at step 120 (run r1): IS ratio at 0.31`."""
    text = f"{_mark(record.get('severity'))} {record.get('rule')} at step {record.get('first_step')}"
    return _chat_line(text + _run_and_message(record.get("run"), record.get("message")))


def postmortem_text(report: Mapping[str, Any]) -> str:
    """`🩺 postmortem at step 120 (run r1): <reason>`."""
    return _chat_line(f"🩺 postmortem at step {report.get('last_step')}"
                      + _run_and_message(report.get("run"), report.get("reason")))


def _mark(severity: Any) -> str:
    try:
        return severity_mark(str(severity), terminal=True)
    except ValueError:  # not a severity of the scale: shown as given
        return f"[{str(severity).upper()}]"


def _run_and_message(run: Any, message: Any) -> str:
    text = f" (run {run})" if run is not None else ""
    return text + (f": {message}" if message not in (None, "") else "")


def _chat_line(text: str) -> str:
    """One line, at most TEXT_LIMIT characters, with &, < and > escaped as Slack asks: unescaped,
    `<` starts a link or a mention there (a message holding `<!channel>` would page everyone)."""
    line = " ".join(text.split())
    if len(line) > TEXT_LIMIT:
        line = line[:TEXT_LIMIT - 1] + "…"
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _body(kind: str, data: Mapping[str, Any]) -> bytes:
    return json.dumps(payload(kind, data), ensure_ascii=False, allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------- the notifier


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it, urllib would re-send the POST as a GET without its body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Notifier:
    """POSTs alert episodes and postmortems to webhooks from one background thread; see the module."""

    def __init__(self, urls: str | Sequence[str], *, timeout: float = TIMEOUT, retries: int = RETRIES,
                 queue_size: int = QUEUE_SIZE, backoff: float = BACKOFF):
        self.urls = webhook_urls(urls)
        if not timeout > 0:
            raise ValueError(f"timeout is a number of seconds above 0, not {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries is a whole number, 0 or more, not {retries!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size is a whole number, 1 or more, not {queue_size!r}")
        self.timeout, self.retries, self.queue_size, self.backoff = float(timeout), retries, queue_size, backoff
        self.counts = NotifyCounts()
        self._seen: set[str] = set()  # the dedup keys of the messages accepted
        self._queue: queue.Queue[Any] = queue.Queue()  # bounded by queue_size in _offer (room kept for _STOP)
        self._lock = threading.Lock()
        self._abandon = threading.Event()  # close() stopped waiting: post nothing more
        self._thread: threading.Thread | None = None
        self._closed = False
        self._said: set[str] = set()  # the kinds of trouble already said
        self._down: set[str] = set()  # URLs whose last post failed every try: one try each until one succeeds
        self._opener = urllib.request.build_opener(_NoRedirects())  # proxies from the environment, as urllib does

    # ------------------------------------------------------------ on the caller's thread

    def episode(self, record: Mapping[str, Any]) -> bool:
        """Queue an alert episode that started; False when it is not queued (a repeat, a full queue, closed)."""
        key = _key(EPISODE, record, ("run", "rule", "first_step"))
        return self._offer(key, EPISODE, record)

    def postmortem(self, report: Mapping[str, Any]) -> bool:
        """Queue a postmortem; False when it is not queued (a repeat, a full queue, closed)."""
        key = _key(POSTMORTEM, report, ("run", "last_step", "reason"))
        return self._offer(key, POSTMORTEM, report)

    def _offer(self, key: str, kind: str, data: Mapping[str, Any]) -> bool:
        message = (kind, dict(data))  # a copy: the caller may change its record later
        with self._lock:
            if key in self._seen:
                self.counts.duplicates += 1
                return False
            dropped = self._closed or self._queue.qsize() >= self.queue_size
            if dropped:
                self.counts.dropped += 1
                why = "the notifier is closed" if self._closed else f"{self.queue_size} message(s) were waiting"
            else:
                self._seen.add(key)
                self.counts.queued += 1
                self._queue.put(message)
                if self._thread is None:
                    self._start()
        if dropped:  # said outside the lock: the posting thread needs it to count
            self._say_once("dropped", f"ruledsl: a webhook notification was dropped ({why}); further ones "
                                      "are counted and summed up when the notifier closes")
        return not dropped

    def _start(self) -> None:
        thread = threading.Thread(target=self._work, name="ruledsl-notify", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread can be started: the messages cannot go out
            self._abandon.set()
            self._say_once("thread", f"ruledsl: webhook notifications are off: no thread to post them ({exc})")
            return
        self._thread = thread
        atexit.register(self._at_exit)  # a run that ends without close() still sends what it queued

    def close(self, timeout: float = CLOSE_TIMEOUT) -> NotifyCounts:
        """Deliver what is queued, waiting `timeout` seconds at most, then say what was not delivered.
        Returns the counts. Never hangs: the posting thread is a daemon, left behind if still busy."""
        with self._lock:
            if self._closed:
                return self.counts
            self._closed = True
            thread = self._thread
        if thread is not None:
            atexit.unregister(self._at_exit)
            self._queue.put(_STOP)
            thread.join(max(0.0, timeout))
            if thread.is_alive():
                self._abandon.set()  # the thread posts nothing more (a post under way ends by its own timeout)
        with self._lock:
            done = self.counts.delivered + self.counts.failed
            self.counts.unsent = self.counts.queued * len(self.urls) - done
        self._sum_up(timeout)
        return self.counts

    def _at_exit(self) -> None:
        self.close(AT_EXIT_TIMEOUT)

    # ------------------------------------------------------------ on the posting thread

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._abandon.is_set():
                return
            kind, data = item
            try:
                body = _body(kind, data)
            except Exception as exc:  # json_safe makes anything JSON; this is a last resort, never a dead thread
                self._failed(len(self.urls), "", f"the message cannot be written as JSON ({exc})")
                continue
            for url in self.urls:
                if self._abandon.is_set():
                    return
                self._deliver(url, body)

    def _deliver(self, url: str, body: bytes) -> None:
        """One message to one URL: tried 1 + retries times while the failure may pass (once while the
        URL is down: a dead endpoint would otherwise cost every message all its tries and pauses)."""
        retries = 0 if url in self._down else self.retries
        tries = 0
        while True:
            tries += 1
            pause = self.backoff * 2 ** (tries - 1)
            try:
                self._post(url, body)
            except urllib.error.HTTPError as exc:
                why, again = _http_failure(exc)
                pause = _retry_after(exc) or pause
            except Exception as exc:  # a refused connection, a timeout, a reset, a broken answer…
                why, again = _connection_failure(exc, self.timeout), True
            else:
                with self._lock:
                    self.counts.delivered += 1
                self._down.discard(url)
                return
            if not again or tries > retries:
                if again:  # every try failed: the endpoint is down, not refusing this one message
                    self._down.add(url)
                self._failed(1, url, f"{why}, after {tries} tr{'y' if tries == 1 else 'ies'}")
                return
            if self._abandon.wait(min(pause, MAX_PAUSE)):
                return  # close() stopped waiting: counted as not sent

    def _post(self, url: str, body: bytes) -> None:
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": f"ruledsl/{__version__}"})
        with self._opener.open(request, timeout=self.timeout) as answer:
            answer.read(ANSWER_LIMIT)  # Slack answers `ok`; read a little so the connection ends cleanly

    def _failed(self, posts: int, url: str, why: str) -> None:
        with self._lock:
            self.counts.failed += posts
        where = f" to {shown_url(url)}" if url else ""
        self._say_once("failed", f"ruledsl: a webhook notification{where} failed ({why}); further failures "
                                 "are counted and summed up when the notifier closes")

    # ------------------------------------------------------------ saying it

    def _say_once(self, kind: str, text: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            _warn(text)

    def _sum_up(self, timeout: float) -> None:
        counts = self.counts
        if not (counts.failed or counts.dropped or counts.unsent):
            return
        posts = counts.queued * len(self.urls)
        parts = [f"{counts.delivered} of {posts} post(s) delivered"]
        if counts.failed:
            parts.append(f"{counts.failed} failed")
        if counts.unsent:
            parts.append(f"{counts.unsent} not done within the {timeout:g} s close() waited")
        if counts.dropped:
            parts.append(f"{counts.dropped} message(s) dropped before queuing")
        targets = ", ".join(shown_url(u) for u in self.urls)
        _warn(f"ruledsl: webhook notifications to {targets}: {'; '.join(parts)}")


def _key(kind: str, data: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    if not isinstance(data, Mapping):
        raise TypeError(f"a {kind} to notify is a mapping of its fields, not {type(data).__name__}")
    return json.dumps([kind, *(json_safe(data.get(f)) for f in fields)])


def _http_failure(exc: urllib.error.HTTPError) -> tuple[str, bool]:
    """What the endpoint answered, and whether trying again may help (5xx and 429 may, 3xx/4xx not)."""
    why = f"HTTP {exc.code} {exc.reason}"
    try:
        answer = exc.read(ANSWER_LIMIT).decode("utf-8", "replace").strip()
    except Exception:  # the answer is only quoted: a broken one costs the quote
        answer = ""
    if answer:  # quoted on a terminal: no control characters
        why += ": " + "".join(c if c.isprintable() else "?" for c in " ".join(answer.split()))
    if 300 <= exc.code < 400:
        why += " (a redirect, not followed: give the URL it points to)"
    return why, exc.code >= 500 or exc.code == 429


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    """The pause a 429 or 503 asks for (Retry-After: seconds, or an HTTP date), if any."""
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _connection_failure(exc: Exception, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return f"{type(reason).__name__}: {reason}"


def _warn(text: str) -> None:
    """A warning through `logging` and on stderr, like a fuse's: an application that configures
    no logging sees no record."""
    logger.warning(text)
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed or gone (at exit)
        pass
