"""Callback benchmark: the cost of DiagnosticsCallback.on_log, and its share of a real TRL run.

    .venv/bin/python benchmarks/callback.py              # histories of 1k, 10k, 100k logged steps
    .venv/bin/python benchmarks/callback.py --quick      # 1k and 10k, shorter real runs

In one process:

1. callbacks with the full builtin rule set (trainer unknown: every rule
   runs) are fed rows shaped like a real GRPO log (the keys of
   tests/data/real_trl_logs/grpo.jsonl, seeded random walks), the way the
   Trainer calls them: on_log(args, state, control, logs) with
   state.global_step. One callback per history (1k, 10k, 100k) is brought to
   that length untimed; then 1,000 calls of each are timed, interleaved call
   by call so that the shared machine's changing load falls on all alike
   (median and p99, wall and thread CPU time). metrics.jsonl and alerts.jsonl
   are written as in training (line by line, flushed). A bare Monitor.update
   on the same rows is timed beside it (what the callback adds: the file
   line and the hook's guards);
2. a real tiny TRL GRPO run (tests/tiny_trl.py) with and without the callback,
   alternating, several times; wall and CPU time, medians;
3. times on_log at the first history with every production part on (resume check, postmortem,
   system metrics, a webhook on a local HTTP server; docs/production.md) against every part off,
   interleaved call by call;
4. prints the figures and the goals: median on_log <= 1 ms (every part on too), 100k/1k <= 1.2,
   callback share of the real run < 1%. A missed goal still exits 0.

The machine is shared: timings are noisy; CPU time is printed beside wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tiny_trl: the tiny model and trainers of the test suite

import tiny_trl  # noqa: E402  (sets the offline environment and torch threads first)

from ruledsl.engines.live.monitor import Monitor  # noqa: E402
from ruledsl.integrations.callback import DiagnosticsCallback  # noqa: E402

WINDOW = 1000  # calls per measured point


class TrainingArguments:  # the name transformers uses: an unknown trainer, so every rule runs
    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.report_to = []
        self.run_name = None


def grpo_rows(n: int, seed: int = 0):
    """n logged rows with the keys of a real GRPO log, values as seeded random walks."""
    template = json.loads((ROOT / "tests/data/real_trl_logs/grpo.jsonl").read_text().splitlines()[0])
    template.pop("step")
    rng = random.Random(seed)
    values = dict(template)
    for step in range(1, n + 1):
        for key, value in values.items():
            values[key] = value + rng.gauss(0, 0.01 * (abs(value) + 1e-3))
        yield step, dict(values)


class Watched:
    """A callback (and a bare Monitor beside it) fed one stream of rows, as a Trainer would."""

    def __init__(self, output_dir: str, seed: int, **options):
        self.callback = DiagnosticsCallback(console=False, **options)
        self.args = TrainingArguments(output_dir)
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True)
        self.control = SimpleNamespace(should_training_stop=False)
        self.callback.on_train_begin(self.args, self.state, self.control)
        self.monitor = Monitor(self.callback.active_rules, trainer=None)
        self.rows = grpo_rows(10**9, seed)
        self.wall: list[int] = []
        self.cpu: list[int] = []
        self.bare: list[int] = []

    def feed(self, timed: bool) -> None:
        step, logs = next(self.rows)
        self.state.global_step = step
        clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
        start, cpu_start = clock(), cpu_clock()
        self.callback.on_log(self.args, self.state, self.control, logs=logs)
        middle, cpu_end = clock(), cpu_clock()
        self.monitor.update(step, logs)
        if timed:
            self.wall.append(middle - start)
            self.cpu.append(cpu_end - cpu_start)
            self.bare.append(clock() - middle)

    def close(self) -> None:
        self.callback.on_train_end(self.args, self.state, self.control)
        assert not self.callback.fuse.blown, self.callback.fuse.blown


def time_on_log(histories: list[int], output_dir: str) -> dict[int, Watched]:
    """Bring one run to each history length untimed, then time WINDOW calls of each, interleaved
    call by call, so that the machine's changing load falls on every history alike."""
    watched = {h: Watched(f"{output_dir}/{h}", seed=h) for h in histories}
    return _timed(watched, dict(zip(histories, histories)))


def _timed(watched: dict, histories: dict) -> dict:
    """Each run brought to its history untimed, then WINDOW calls of each timed, interleaved."""
    for name, run in watched.items():
        for _ in range(histories[name] - WINDOW):
            run.feed(timed=False)
    for _ in range(WINDOW):
        for run in watched.values():
            run.feed(timed=True)
    for run in watched.values():
        run.close()
    return watched


# The production parts of docs/production.md. In one process, system_metrics gathers nothing (no rank
# to compare with); its cost in a multi-process run is per backward pass, not per on_log (see that doc).
EVERY_PART_OFF = dict(resume_check=False, postmortem=False, system_metrics=False, notify=None)


class _Webhook(http.server.BaseHTTPRequestHandler):
    """A local endpoint that takes every POST (the notifier posts the started episodes to it)."""

    def do_POST(self) -> None:  # noqa: N802  (the name http.server calls)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


def time_parts(output_dir: str, history: int) -> dict[str, Watched]:
    """on_log with every production part on (a webhook on a local server included) and with every
    part off, at the same history, interleaved call by call as in time_on_log."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    watched = {"every part on": Watched(f"{output_dir}/on", seed=history, notify=[url]),
               "every part off": Watched(f"{output_dir}/off", seed=history, **EVERY_PART_OFF)}
    _timed(watched, dict.fromkeys(watched, history))
    server.shutdown()
    return watched


def percentiles(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) / 1e3, ordered[int(0.99 * (len(ordered) - 1))] / 1e3  # µs


def real_runs(repeats: int, steps: int) -> dict[str, list[tuple[float, float]]]:
    model_dir = tiny_trl.tiny_model_dir()
    timings: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    for _ in range(repeats):
        for variant in ("without", "with"):
            callbacks = [DiagnosticsCallback(console=False)] if variant == "with" else []
            # the Trainer prints each row when progress bars are off: silenced in both variants
            with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
                trainer = tiny_trl.make_trainer("grpo", model_dir, Path(out), callbacks=callbacks, max_steps=steps)
                wall, cpu = time.perf_counter(), time.process_time()
                trainer.train()
                timings[variant].append((time.perf_counter() - wall, time.process_time() - cpu))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="histories up to 10k; shorter real runs")
    parser.add_argument("--repeats", type=int, default=None, help="real runs per variant")
    options = parser.parse_args()
    histories = [1_000, 10_000] if options.quick else [1_000, 10_000, 100_000]
    repeats = options.repeats or (3 if options.quick else 5)
    steps = 10 if options.quick else 30

    with tempfile.TemporaryDirectory() as out:
        cpu = time.process_time()
        watched = time_on_log(histories, out)
        cpu = time.process_time() - cpu
    n_rules = len(next(iter(watched.values())).callback.active_rules)
    print(f"on_log with {n_rules} rules (every builtin rule; rows shaped like real GRPO logs); one run per "
          f"history, brought there untimed, then {WINDOW:,} calls of each timed, interleaved ({cpu:.1f} s CPU in all)")
    print(f"{'history':>9} | {'on_log wall: median':>20} {'p99':>9} | {'on_log CPU: median':>19} {'p99':>9} | "
          f"{'Monitor.update wall: median':>28} {'p99':>9}")
    points = {}
    for history, run in watched.items():
        points[history] = percentiles(run.wall)
        cpu_median, cpu_p99 = percentiles(run.cpu)
        bare_median, bare_p99 = percentiles(run.bare)
        print(f"{history:>9,} | {points[history][0]:>17.1f} µs {points[history][1]:>6.1f} µs | "
              f"{cpu_median:>16.1f} µs {cpu_p99:>6.1f} µs | {bare_median:>25.1f} µs {bare_p99:>6.1f} µs")
    growth = points[histories[-1]][0] / points[histories[0]][0]

    with tempfile.TemporaryDirectory() as out:
        parts = time_parts(out, histories[0])
    print(f"\non_log at {histories[0]:,} steps with the production parts (docs/production.md), interleaved:")
    part_medians = {}
    for name, run in parts.items():
        part_medians[name], p99 = percentiles(run.wall)
        started = len(run.callback.started)
        print(f"  {name:>14}: median {part_medians[name]:.1f} µs, p99 {p99:.1f} µs ({started} episodes started)")
    on, off = part_medians["every part on"], part_medians["every part off"]
    print(f"  on/off: {on / off:.2f}x")

    timings = real_runs(repeats, steps)
    wall = {k: statistics.median(w for w, _ in v) for k, v in timings.items()}
    cpu_time = {k: statistics.median(c for _, c in v) for k, v in timings.items()}
    calls = steps + 1  # one on_log per step and the end-of-training summary
    share = calls * points[histories[0]][0] / 1e6 / wall["without"]
    print(f"\nreal tiny GRPO run, {steps} steps, median of {repeats} (alternating):")
    for variant in ("without", "with"):
        print(f"  {variant:>7} callback: {wall[variant]:.3f} s wall, {cpu_time[variant]:.3f} s CPU")
    print(f"  with/without: {wall['with'] / wall['without']:.3f} wall, "
          f"{cpu_time['with'] / cpu_time['without']:.3f} CPU")
    print(f"  on_log cost x {calls} calls / run wall time: {share:.2%}")

    print("\ngoals:")
    print(f"  median on_log <= 1 ms at every history: "
          f"{'PASS' if all(p[0] <= 1000 for p in points.values()) else 'MISS'}")
    print(f"  {histories[-1]:,} vs 1k median: {growth:.2f}x (<= 1.2): {'PASS' if growth <= 1.2 else 'MISS'}")
    print(f"  callback share of the real run: {share:.2%} (< 1%): {'PASS' if share < 0.01 else 'MISS'}")
    print(f"  median on_log with every part on <= 1 ms: {'PASS' if on <= 1000 else 'MISS'}")


if __name__ == "__main__":
    main()
