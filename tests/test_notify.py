"""Webhook notifications (ruledsl/integrations/notify.py), against a real HTTP server on 127.0.0.1.

The server (http.server in a thread, port 0) answers each path as the test asks: 200, a 5xx,
a 4xx, a 429, a redirect, or never (it reads the request and holds the connection open until
the test ends). Nothing here asserts a duration: where the point is that the caller is not
blocked, the endpoint never answers at all, so a notifier that waited for it would never return
(a generous join bound turns that into a failure instead of a hung suite).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_helpers import ruledsl
from ruledsl import __version__
from ruledsl.integrations.notify import Notifier, episode_text, payload, shown_url, webhook_urls

ROOT = Path(__file__).resolve().parent.parent
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
LIVENESS = 60.0  # seconds a thread that must not block is given before the test calls it blocked

RECORD = {"run": "r1", "rule": "grpo_is_ratio_collapse", "severity": "high", "trainer": "grpo",
          "metric": "sampling/importance_sampling_ratio/mean", "first_step": 120, "last_step": 130,
          "n_evals": 4, "value": 0.31, "message": "IS ratio at 0.310 (should be ~1.0)"}


class Endpoint:
    """A real HTTP server: `answers[path]` is the list of (status, body, headers) it gives in turn
    (the last one repeats; 200 `ok` for a path not listed); a path starting with /hang is read and
    never answered. `requests` holds every (path, headers, body) it got."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Event()  # a request reached a /hang path
        self.release = threading.Event()  # the test is over: the hanging handlers may end
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.requests.append((self.path, dict(self.headers), body))
                if self.path.startswith("/hang"):
                    endpoint.arrived.set()
                    endpoint.release.wait(LIVENESS)
                    return
                queued = endpoint.answers.get(self.path, [(200, "ok", {})])
                status, text, headers = queued.pop(0) if len(queued) > 1 else queued[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def hits(self, path: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == path)

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(body) for p, _, body in self.requests if p == path]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(monkeypatch):
    for name in PROXY_VARIABLES:  # a proxy from the environment would carry 127.0.0.1 away
        monkeypatch.delenv(name, raising=False)
    server = Endpoint()
    yield server
    server.stop()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _eventually(condition) -> bool:
    """Whether `condition()` holds within LIVENESS seconds (the server's threads may lag on a busy machine)."""
    deadline = time.monotonic() + LIVENESS
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _in_thread(action) -> threading.Thread:
    """`action` in a thread, joined for LIVENESS seconds: alive afterwards means it blocked."""
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    thread.join(LIVENESS)
    return thread


# ================================================================ the payload


def test_an_episode_is_posted_as_slack_compatible_json(endpoint):
    notifier = Notifier(endpoint.url("/hook"))
    assert notifier.episode({**RECORD, "value": float("nan")})
    counts = notifier.close(LIVENESS)
    assert (counts.queued, counts.delivered, counts.failed) == (1, 1, 0)
    [(path, headers, body)] = endpoint.requests
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["User-Agent"] == f"ruledsl/{__version__}"
    assert json.loads(body) == {
        "text": "🚨 [HIGH] grpo_is_ratio_collapse at step 120 (run r1): IS ratio at 0.310 (should be ~1.0)",
        "ruledsl": {"kind": "episode", "version": __version__,
                    "record": {**RECORD, "value": "nan"}}}  # non-finite numbers as in docs/language.md §4


def test_a_postmortem_is_posted_with_its_report(endpoint):
    report = {"run": "r1", "last_step": 340, "reason": "training stopped: loss is NaN", "episodes": 2}
    notifier = Notifier(endpoint.url("/hook"))
    assert notifier.postmortem(report) and not notifier.postmortem(dict(report))
    notifier.close(LIVENESS)
    assert endpoint.bodies("/hook") == [{
        "text": "🩺 postmortem at step 340 (run r1): training stopped: loss is NaN",
        "ruledsl": {"kind": "postmortem", "version": __version__, "report": report}}]


def test_the_text_is_one_line_with_slack_s_control_characters_escaped():
    record = {**RECORD, "message": "ratio < 0.5 & falling\n  <!channel> look"}
    assert episode_text(record) == ("🚨 [HIGH] grpo_is_ratio_collapse at step 120 (run r1): ratio &lt; 0.5 "
                                    "&amp; falling &lt;!channel&gt; look")
    # the structured record keeps the message as it is
    assert payload("episode", record)["ruledsl"]["record"]["message"] == record["message"]
    assert episode_text({**RECORD, "severity": "odd", "message": ""}).startswith("[ODD] grpo_is_ratio_collapse")
    assert len(episode_text({**RECORD, "message": "x" * 10_000})) == 3000


# ================================================================ once per episode


def test_the_same_episode_is_posted_once_however_often_it_is_given(endpoint):
    notifier = Notifier(endpoint.url("/hook"))
    assert notifier.episode(RECORD)
    assert not notifier.episode(dict(RECORD))
    assert not notifier.episode({**RECORD, "message": "the same episode, seen again", "last_step": 400})
    assert notifier.episode({**RECORD, "first_step": 200})  # another episode of the same rule
    assert notifier.episode({**RECORD, "run": "r2"})  # the same rule and step on another run
    counts = notifier.close(LIVENESS)
    assert (counts.queued, counts.duplicates, counts.delivered) == (3, 2, 3)
    assert sorted((b["ruledsl"]["record"]["run"], b["ruledsl"]["record"]["first_step"])
                  for b in endpoint.bodies("/hook")) == [("r1", 120), ("r1", 200), ("r2", 120)]


def test_every_url_gets_every_message(endpoint):
    notifier = Notifier([endpoint.url("/a"), endpoint.url("/b"), endpoint.url("/a")])  # a repeat counts once
    assert notifier.urls == [endpoint.url("/a"), endpoint.url("/b")]
    notifier.episode(RECORD)
    notifier.episode({**RECORD, "first_step": 121})
    assert notifier.close(LIVENESS).delivered == 4
    assert (endpoint.hits("/a"), endpoint.hits("/b")) == (2, 2)


# ================================================================ when the endpoint is down


def test_a_server_that_never_answers_blocks_neither_the_caller_nor_close(endpoint, capsys):
    notifier = Notifier(endpoint.url("/hang/T000/SECRET"), timeout=LIVENESS * 10)  # the post cannot time out
    results: dict = {}

    def caller():
        results["queued"] = notifier.episode(RECORD)
        assert endpoint.arrived.wait(LIVENESS)  # the post is under way, and will never be answered
        results["counts"] = notifier.close(timeout=0.2)

    assert not _in_thread(caller).is_alive(), "episode() or close() waited for the endpoint"
    counts = results["counts"]
    assert results["queued"] and (counts.delivered, counts.failed, counts.unsent) == (0, 0, 1)
    err = capsys.readouterr().err
    assert ("ruledsl: webhook notifications to http://127.0.0.1:" in err
            and "0 of 1 post(s) delivered; 1 not done within the 0.2 s close() waited" in err)
    assert "SECRET" not in err  # a webhook URL's path is its secret: never said


def test_a_read_timeout_is_retried_then_said(endpoint, capsys, caplog):
    notifier = Notifier(endpoint.url("/hang"), timeout=0.3, retries=1, backoff=0.01)
    notifier.episode(RECORD)
    counts = notifier.close(LIVENESS)
    assert (counts.failed, counts.unsent) == (1, 0)
    # each try reached the server (its handler may read the request after the client gave up: wait for it)
    assert _eventually(lambda: endpoint.hits("/hang") == 2)
    err = capsys.readouterr().err
    assert "a webhook notification to http://127.0.0.1:" in err
    assert "failed (no answer within 0.3 s, after 2 tries)" in err
    assert any("no answer within 0.3 s" in r.getMessage() for r in caplog.records if r.name == "ruledsl.callback")


def test_a_5xx_is_retried_then_reported(endpoint, capsys, caplog):
    endpoint.answers["/services/T000/B000/SECRET"] = [(500, "rollup_error", {})]
    notifier = Notifier(endpoint.url("/services/T000/B000/SECRET"), retries=2, backoff=0.01)
    notifier.episode(RECORD)
    counts = notifier.close(LIVENESS)
    assert (counts.delivered, counts.failed) == (0, 1)
    assert endpoint.hits("/services/T000/B000/SECRET") == 3  # the first try and 2 more
    err = capsys.readouterr().err
    shown = shown_url(notifier.urls[0])
    assert f"to {shown} failed (HTTP 500 Internal Server Error: rollup_error, after 3 tries)" in err
    assert "0 of 1 post(s) delivered; 1 failed" in err  # and summed up at close
    assert "SECRET" not in err
    warnings = [r for r in caplog.records if r.name == "ruledsl.callback" and r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first failure, then the sum at close


def test_once_a_url_failed_every_try_it_gets_one_try_a_message_until_one_gets_through(endpoint):
    endpoint.answers["/hook"] = [(500, "", {})] * 4 + [(200, "ok", {})] + [(502, "", {})] * 2 + [(200, "ok", {})]
    notifier = Notifier(endpoint.url("/hook"), retries=2, backoff=0.01)
    for step in range(4):
        notifier.episode({**RECORD, "first_step": step})
    counts = notifier.close(LIVENESS)
    # 3 tries (down), 1 try (fails), 1 try (up again), then 3 tries again (2 failures, then through)
    assert endpoint.hits("/hook") == 8 and (counts.failed, counts.delivered) == (2, 2)


def test_a_5xx_that_passes_is_delivered(endpoint, capsys):
    endpoint.answers["/hook"] = [(503, "busy", {}), (200, "ok", {})]
    notifier = Notifier(endpoint.url("/hook"), backoff=0.01)
    notifier.episode(RECORD)
    assert notifier.close(LIVENESS).delivered == 1 and endpoint.hits("/hook") == 2
    assert capsys.readouterr().err == ""  # nothing failed: nothing said


def test_a_4xx_is_not_retried(endpoint, capsys):
    endpoint.answers["/hook"] = [(404, "no_service", {})]
    notifier = Notifier(endpoint.url("/hook"), retries=3, backoff=0.01)
    notifier.episode(RECORD)
    notifier.episode({**RECORD, "first_step": 121})
    counts = notifier.close(LIVENESS)
    assert (counts.failed, endpoint.hits("/hook")) == (2, 2)  # one try each
    err = capsys.readouterr().err
    assert err.count("failed (HTTP 404 Not Found: no_service, after 1 try)") == 1  # the first, said once
    assert "0 of 2 post(s) delivered; 2 failed" in err


def test_a_429_waits_as_asked_and_tries_again(endpoint):
    endpoint.answers["/hook"] = [(429, "rate_limited", {"Retry-After": "0"}), (200, "ok", {})]
    notifier = Notifier(endpoint.url("/hook"), backoff=0.01)
    notifier.episode(RECORD)
    assert notifier.close(LIVENESS).delivered == 1 and endpoint.hits("/hook") == 2


def test_a_redirect_is_not_followed(endpoint, capsys):
    endpoint.answers["/old"] = [(302, "", {"Location": "/new"})]
    notifier = Notifier(endpoint.url("/old"), backoff=0.01)
    notifier.episode(RECORD)
    assert notifier.close(LIVENESS).failed == 1
    assert (endpoint.hits("/old"), endpoint.hits("/new")) == (1, 0)  # a GET without the message: never sent
    err = capsys.readouterr().err
    assert "HTTP 302 Found (a redirect, not followed: give the URL it points to), after 1 try" in err


def test_an_unreachable_port_is_retried_then_said(capsys):
    notifier = Notifier(f"http://127.0.0.1:{_unused_port()}/hook", retries=1, backoff=0.01)
    notifier.episode(RECORD)
    counts = notifier.close(LIVENESS)
    assert (counts.delivered, counts.failed) == (0, 1)
    assert "failed (connection refused, after 2 tries)" in capsys.readouterr().err


def test_a_full_queue_drops_the_newest_and_says_so_once(endpoint, capsys):
    notifier = Notifier(endpoint.url("/hang"), timeout=LIVENESS * 10, queue_size=2)
    assert notifier.episode(RECORD)
    assert endpoint.arrived.wait(LIVENESS)  # the first is out of the queue, in flight
    queued = [notifier.episode({**RECORD, "first_step": step}) for step in range(200, 205)]
    assert queued == [True, True, False, False, False]  # two wait; the newest are dropped
    assert capsys.readouterr().err.count("a webhook notification was dropped (2 message(s) were waiting)") == 1
    counts = notifier.close(timeout=0.1)
    assert (counts.queued, counts.dropped, counts.unsent) == (3, 3, 3)
    assert "3 message(s) dropped before queuing" in capsys.readouterr().err
    assert not notifier.episode({**RECORD, "first_step": 300}) and notifier.counts.dropped == 4  # closed


def test_close_twice_and_a_notifier_never_used(endpoint, capsys):
    unused = Notifier(endpoint.url("/hook"))
    assert unused.close() == unused.close() and unused._thread is None  # no thread for nothing
    assert capsys.readouterr().err == "" and endpoint.requests == []


# ================================================================ URLs checked at construction


@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/hook", "its scheme is 'ftp'"),
    ("hooks.slack.com/services/T0/B0/X", "its scheme is 'missing'"),
    ("file:///etc/passwd", "its scheme is 'file'"),
    ("https://", "it names no host"),
    ("http://example.com:99999/hook", "its port is not a port number"),
    ("https://hooks.slack.com/services/T0 B0", "it holds a space or a control character"),
    (" https://hooks.slack.com/x", "it holds a space or a control character"),
])
def test_a_bad_url_is_refused_naming_it(url, why):
    with pytest.raises(ValueError) as caught:
        Notifier(["https://hooks.slack.com/services/T0/B0/X", url])
    assert str(caught.value).startswith(f"{url!r} is not a webhook URL: {why}; a webhook URL starts with http://")


def test_urls_are_text_and_at_least_one():
    with pytest.raises(TypeError, match="a webhook URL is text, not int"):
        webhook_urls([42])
    with pytest.raises(ValueError, match="no webhook URL given"):
        webhook_urls([])
    assert webhook_urls("HTTPS://hooks.slack.com/x") == ["HTTPS://hooks.slack.com/x"]
    assert shown_url("https://hooks.slack.com/services/T0/B0/X") == "https://hooks.slack.com/…"
    assert shown_url("http://user:pw@example.com") == "http://example.com"


# ================================================================ the callback


def _grpo_training(tmp_path: Path, main: bool = True):
    trl = pytest.importorskip("trl")
    transformers = pytest.importorskip("transformers")
    args = trl.GRPOConfig(output_dir=str(tmp_path), report_to=[], run_name="r1", use_cpu=True, bf16=False)
    state = transformers.TrainerState(is_world_process_zero=main)
    return args, state, transformers.TrainerControl()


IS_RATIO = "sampling/importance_sampling_ratio/mean"
RATIOS = [1.0, 0.3, 0.3, 0.3, 1.0, 0.2, 1.0, 1.0]  # two episodes: from step 2, and at step 6


def _watch(callback, args, state, control) -> None:
    """The callback's real hooks, as the Trainer calls them, with one logged row a step."""
    callback.on_train_begin(args, state, control)
    for step, ratio in enumerate(RATIOS, start=1):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": 0.1, IS_RATIO: ratio})
    callback.on_train_end(args, state, control)


@pytest.mark.trl
def test_the_callback_posts_one_message_per_started_episode(endpoint, tmp_path, capsys):
    from ruledsl.integrations.callback import DiagnosticsCallback

    callback = DiagnosticsCallback(custom_alerts={"is_low": "grpo: importance_sampling_ratio < 0.5 -> high: "
                                                            "IS ratio collapsed to {value:.2f}"},
                                   include_builtin=False, trackers=False, notify=endpoint.url("/hook"))
    args, state, control = _grpo_training(tmp_path)
    _watch(callback, args, state, control)
    posted = [b["ruledsl"]["record"] for b in endpoint.bodies("/hook")]
    assert [(r["rule"], r["first_step"]) for r in posted] == [("is_low", 2), ("is_low", 6)]
    assert posted == [json.loads(json.dumps(r)) for r in callback.started]  # the records it announced
    assert endpoint.bodies("/hook")[0]["text"] == "🚨 [HIGH] is_low at step 2 (run r1): IS ratio collapsed to 0.30"
    assert callback.notifier is not None and callback.notifier.counts.delivered == 2
    assert "webhook" not in capsys.readouterr().err


@pytest.mark.trl
def test_other_processes_post_nothing(endpoint, tmp_path):
    from ruledsl.integrations.callback import DiagnosticsCallback

    callback = DiagnosticsCallback(custom_alerts=["grpo: importance_sampling_ratio < 0.5 -> high: low"],
                                   include_builtin=False, trackers=False, notify=[endpoint.url("/hook")])
    args, state, control = _grpo_training(tmp_path, main=False)
    _watch(callback, args, state, control)
    assert len(callback.started) == 2 and callback.notifier is None and endpoint.requests == []


@pytest.mark.trl
def test_an_endpoint_that_is_down_never_stops_training(tmp_path, capsys):
    from ruledsl.integrations.callback import DiagnosticsCallback

    url = f"http://127.0.0.1:{_unused_port()}/hook"
    callback = DiagnosticsCallback(custom_alerts=["grpo: importance_sampling_ratio < 0.5 -> high: low"],
                                   include_builtin=False, trackers=False, notify=url)
    args, state, control = _grpo_training(tmp_path)
    _watch(callback, args, state, control)
    assert len(callback.started) == 2 and not control.should_training_stop
    assert callback.fuse.is_on("notifications")  # a failed post is no fault of the callback
    err = capsys.readouterr().err
    assert "failed (connection refused, after 3 tries)" in err and "0 of 2 post(s) delivered; 2 failed" in err


@pytest.mark.trl
@pytest.mark.parametrize("notify, error, text", [
    ("slack", ValueError, "notify: 'slack' is not a webhook URL: its scheme is 'missing'"),
    (["https://ok.example/x", "ftp://x"], ValueError, "notify: 'ftp://x' is not a webhook URL"),
    ([None], TypeError, "notify: a webhook URL is text, not NoneType"),
])
def test_the_callback_checks_its_urls_in_the_constructor(notify, error, text):
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    with pytest.raises(error) as caught:
        DiagnosticsCallback(include_builtin=False, notify=notify)
    assert str(caught.value).startswith(text)
    assert DiagnosticsCallback(include_builtin=False, notify=[]).notify_urls == []


# ================================================================ ruledsl audit --notify


def _audit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    return subprocess.run([sys.executable, "-m", "ruledsl", "audit", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=180, env={**env, "NO_COLOR": "1"})


@pytest.mark.subprocess
def test_ruledsl_audit_notify_posts_one_message_per_episode(endpoint):
    result = _audit("examples/runs", "--format", "json", "--notify", endpoint.url("/a"),
                    "--notify", endpoint.url("/b"))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found) >= 2
    for path in ("/a", "/b"):
        posted = [b["ruledsl"]["record"] for b in endpoint.bodies(path)]
        assert sorted(map(json.dumps, posted)) == sorted(map(json.dumps, found))
    assert f"notify: {len(found)} episode(s), {2 * len(found)} of {2 * len(found)} post(s) delivered to " \
           f"2 webhook(s)" in result.stderr


@pytest.mark.subprocess
def test_ruledsl_audit_notify_failing_is_said_and_keeps_the_exit_status(endpoint):
    endpoint.answers["/hook"] = [(403, "action_prohibited", {})]
    result = _audit("examples/runs", "--notify", endpoint.url("/hook"), "--fail-on", "critical")
    assert result.returncode == 1, result.stderr  # --fail-on's verdict, whatever the webhook did
    assert "failed (HTTP 403 Forbidden: action_prohibited, after 1 try)" in result.stderr
    assert "post(s) delivered; " in result.stderr and " failed" in result.stderr
    assert "CRITICAL" in result.stdout.upper()  # the report is printed as ever


def test_ruledsl_audit_refuses_a_bad_notify_url_before_reading():
    result = ruledsl("audit", "examples/runs", "--notify", "hooks.slack.com/services/x")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --notify: 'hooks.slack.com/services/x' is not a webhook URL")
    assert result.stdout == ""
