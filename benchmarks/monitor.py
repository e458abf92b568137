"""Incremental engine benchmark: the cost of one `Monitor.update` with the builtin rules.

    .venv/bin/python benchmarks/monitor.py            # runs of 1k, 10k and 100k steps
    .venv/bin/python benchmarks/monitor.py --quick    # 1k and 10k

For each run length, a fresh Monitor with every builtin rule (no trainer: all
18 run) is fed a synthetic TRL-like log: one training row a step with every key
the builtin rules read plus 16 keys they do not (seeded random walks, a NaN
loss now and then), and every 100 steps an evaluation row at the same step.
Each update is timed alone (perf_counter_ns); so is, in the same process and on
the same rows, the baseline: a plain `dict(row)` copy, the least a callback can
do with a row. It prints the median and p99 per update, their ratio to the
baseline, and CPU seconds per update (the machine is shared: wall times are
noisy, CPU time less so). The per-update cost must not grow with the length of
the run; the script checks the 100k (or 10k) median against the 1k one and
says PASS or MISS (a miss still exits 0).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("ruledsl") is None:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ruledsl.engines.live.monitor import Monitor  # noqa: E402
from ruledsl.model.loader import load_rules  # noqa: E402

GROWTH_GOAL = 1.5  # median per update at the longest run / at 1k steps
EXTRA_KEYS = [f"extra/metric_{j:02d}" for j in range(16)]


def make_rows(steps: int, keys: list[str], seed: int = 0) -> list[tuple[int, dict]]:
    rng = random.Random(seed)
    level = {k: 1.0 + rng.random() for k in keys}
    rows = []
    for step in range(1, steps + 1):
        for k in keys:
            level[k] = max(1e-3, level[k] * (1.0 + rng.gauss(0.0, 0.02)))
        row = dict(level)
        if rng.random() < 0.001:
            row["loss"] = math.nan
        row["epoch"] = step / steps
        rows.append((step, row))
        if step % 100 == 0:
            rows.append((step, {"eval_loss": level.get("loss", 1.0), "epoch": step / steps}))
    return rows


def time_each(rows: list[tuple[int, dict]], call) -> tuple[list[int], float]:
    """Nanoseconds of each call, and CPU seconds of them all."""
    clock = time.perf_counter_ns
    spent = []
    cpu = time.process_time()
    for step, row in rows:
        start = clock()
        call(step, row)
        spent.append(clock() - start)
    return spent, time.process_time() - cpu


def p99(values: list[int]) -> float:
    return statistics.quantiles(values, n=100)[98]


def measure(steps: int, rules) -> dict:
    probe = Monitor(rules)
    keys = sorted({k for c in probe.rules for ks in c.candidates.values() for k in ks}) + EXTRA_KEYS
    rows = make_rows(steps, keys)
    # A live run holds one row at a time; here all of them are alive at once. Frozen, they are
    # left out of the garbage collector's passes, which would otherwise grow with the run length.
    gc.collect()
    gc.freeze()
    monitor = Monitor(rules)
    baseline, baseline_cpu = time_each(rows, lambda step, row: dict(row))
    spent, cpu = time_each(rows, monitor.update)
    monitor.finish()
    updates = len(rows)
    del rows
    gc.unfreeze()
    return {"steps": steps, "updates": updates, "median": statistics.median(spent), "p99": p99(spent),
            "cpu": cpu / updates, "base_median": statistics.median(baseline), "base_p99": p99(baseline),
            "base_cpu": baseline_cpu / updates, "episodes": len(monitor.episodes()),
            "rules": len(monitor.rules), "keys": len(keys)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k steps only")
    args = parser.parse_args()
    lengths = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rules = load_rules()
    results = [measure(n, rules) for n in lengths]
    first = results[0]
    print(f"Monitor.update with {first['rules']} builtin rules, rows of {first['keys']} keys "
          f"(+ an eval row every 100 steps)\n")
    print(f"{'steps':>8} {'updates':>8} {'median us':>10} {'p99 us':>8} {'cpu us':>8} "
          f"{'dict median':>12} {'dict p99':>9} {'x median':>9} {'x p99':>7} {'x cpu':>7} {'episodes':>9}")
    for r in results:
        print(f"{r['steps']:>8} {r['updates']:>8} {r['median'] / 1e3:>10.1f} {r['p99'] / 1e3:>8.1f} "
              f"{r['cpu'] * 1e6:>8.1f} {r['base_median'] / 1e3:>12.2f} {r['base_p99'] / 1e3:>9.2f} "
              f"{r['median'] / r['base_median']:>9.0f} {r['p99'] / r['base_p99']:>7.0f} "
              f"{r['cpu'] / r['base_cpu']:>7.0f} {r['episodes']:>9}")
    growth = results[-1]["median"] / first["median"]
    verdict = "PASS" if growth <= GROWTH_GOAL else "MISS"
    print(f"\nmedian per update at {results[-1]['steps']:,} steps / at {first['steps']:,}: {growth:.2f} "
          f"(goal <= {GROWTH_GOAL}) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
