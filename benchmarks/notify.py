"""What `Notifier.episode()` costs the training loop's thread (integrations/notify.py).

    .venv/bin/python benchmarks/notify.py [--calls 2000]

Times each call on the caller's thread (time.perf_counter_ns) in three cases, against a real
HTTP server on 127.0.0.1: the endpoint answers at once; the endpoint never answers (every post
hangs until its timeout); the same episodes given again (duplicates); the queue is full (every
call is a drop, said once on stderr). Prints the median, the
99th percentile and the maximum, in microseconds. Measures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ruledsl.integrations.notify import Notifier

RECORD = {"run": "r1", "rule": "grpo_is_ratio_collapse", "severity": "high", "trainer": "grpo",
          "metric": "sampling/importance_sampling_ratio/mean", "first_step": 0, "last_step": 0,
          "n_evals": 3, "value": 0.31, "message": "IS ratio at 0.310 (should be ~1.0)"}


def serve(hang: threading.Event | None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if hang is not None:
                hang.wait(30)
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def timed_calls(notifier: Notifier, calls: int) -> list[float]:
    times = []
    for step in range(calls):
        record = {**RECORD, "first_step": step}
        start = time.perf_counter_ns()
        notifier.episode(record)
        times.append((time.perf_counter_ns() - start) / 1000)
    return times


def report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"{name:<34} median {statistics.median(times):7.1f} us   p99 {p99:7.1f} us   max {max(times):8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls

    answering = serve(None)
    notifier = Notifier(f"http://127.0.0.1:{answering.server_port}/hook", queue_size=calls + 1)
    report("endpoint answering (queued)", timed_calls(notifier, calls))
    notifier.close(30)
    answering.shutdown()

    hang = threading.Event()
    hanging = serve(hang)
    notifier = Notifier(f"http://127.0.0.1:{hanging.server_port}/hook", timeout=30, queue_size=calls + 1)
    report("endpoint never answering (queued)", timed_calls(notifier, calls))
    report("an episode given again (duplicate)", timed_calls(notifier, calls))  # the same steps again
    full = Notifier(f"http://127.0.0.1:{hanging.server_port}/hook", timeout=30, queue_size=1)
    full.episode({**RECORD, "first_step": -1})
    full.episode({**RECORD, "first_step": -2})  # the first may be in flight: fill the queue for sure
    full.episode({**RECORD, "first_step": -3})
    report("queue full (every call dropped)", timed_calls(full, calls))
    for each in (notifier, full):
        each.close(0.1)
    hang.set()
    hanging.shutdown()


if __name__ == "__main__":
    main()
