"""What postmortems cost (integrations/postmortem.py): per logged row, and once at an abnormal end.

    .venv/bin/python benchmarks/postmortem.py [--rows 50] [--keys 33] [--steps 500]

Per row, the callback keeps (step, row) in a bounded deque: timed over a million appends.
Once, at the end: the report built from a real Monitor running the builtin GRPO rules over
`--steps` rows of `--keys` metrics (the episodes, the coverage, the last `--rows` rows), and
the atomic write (temporary file, fsync, rename, fsync of the folder) into a temporary folder.
Prints the medians, and the file's size. Measures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import types
from collections import deque
from pathlib import Path

import ruledsl
from ruledsl.engines.live.monitor import Monitor
from ruledsl.integrations.postmortem import POSTMORTEM_FILE, build_report, write_atomically


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50, help="postmortem_rows")
    parser.add_argument("--keys", type=int, default=33, help="metrics per row")
    parser.add_argument("--steps", type=int, default=500, help="rows fed to the monitor first")
    options = parser.parse_args()

    kept: deque = deque(maxlen=options.rows)
    row: dict = {}
    start = time.perf_counter_ns()
    for step in range(1_000_000):
        kept.append((step, row))
    print(f"per row kept: {(time.perf_counter_ns() - start) / 1_000_000:.0f} ns")

    rules = ruledsl.load_rules()
    monitor = Monitor(rules, trainer="grpo", run="bench")
    names = ["loss", "kl", "grad_norm", *(f"metric_{i}/mean" for i in range(options.keys - 3))]
    generator = random.Random(0)
    recent: deque = deque(maxlen=options.rows)
    for step in range(1, options.steps + 1):
        values = {name: generator.random() for name in names}
        monitor.update(step, values)
        recent.append((step, values))
    callback = types.SimpleNamespace(monitor=monitor, recent_rows=recent, trainer="grpo", stopped=None,
                                     stop_on=None, active_rules=[r for r in rules if r.applies_to("grpo")])
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / POSTMORTEM_FILE
        built, written = [], []
        for _ in range(10):
            start = time.perf_counter_ns()
            report = build_report(callback, "sigterm", path=target)
            built.append(time.perf_counter_ns() - start)
            start = time.perf_counter_ns()
            write_atomically(target, report)
            written.append(time.perf_counter_ns() - start)
        size = target.stat().st_size
    print(f"report built: {statistics.median(built) / 1e6:.1f} ms (versions looked up included)")
    print(f"atomic write: {statistics.median(written) / 1e6:.1f} ms ({size:,} bytes)")


if __name__ == "__main__":
    main()
