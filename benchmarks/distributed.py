"""Distributed benchmark: the archive audit on Spark and Ray with 1 and 2 local workers, against in process.

    .venv/bin/python benchmarks/distributed.py            # 1,000 runs x 10,000 steps x 20 metrics (10M rows)
    .venv/bin/python benchmarks/distributed.py --quick    # 50 runs x 2,000 steps
    .venv/bin/python benchmarks/distributed.py --engines spark --workers 2

What it does:

1. builds benchmarks/batch.py's archive (seeded random walks with drops and spikes, 3 rules per
   metric, window 20) and writes it as one Parquet file, which every path reads;
2. in process: reads it with polars and runs `partition.audit_partition` on all of it (the in-process
   archive audit, each run a source of its own), with polars on one thread and on every core;
   and on one run alone, the per-partition cost of a single run;
3. each engine, each worker count, each strategy, in a child process of its own (a fresh JVM or Ray):
   the session started (timed apart), then read + shuffle by run + audit + the records collected,
   polars limited to one thread per worker (POLARS_MAX_THREADS=1: a worker is one core);
4. prints rows/s, the speed-up over one in-process thread, and the overhead per run: the core-seconds
   an engine spends beyond the in-process audit's, divided by the runs. Records are checked equal
   (count and episodes) to the in-process audit's; a mismatch exits 2.

It measures; the note in the docs projects the cluster size for 1B rows from these figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("ruledsl") is None:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import polars as pl  # noqa: E402
from batch import build_archive, rule_mappings  # noqa: E402

from ruledsl.distributed.partition import COMBINED_SCHEMA, rule_source, split  # noqa: E402


def episodes_digest(records: pl.DataFrame) -> list:
    """What two audits must agree on (sorted): run, rule, first and last step, evaluations."""
    return sorted(records.select("run", "rule", "first_step", "last_step", "n_evals").rows())


# ---------------------------------------------------------------- children: one engine, one worker count


def child(engine: str, workers: int, strategy: str, path: str, metrics: int) -> dict:
    source = rule_source(rule_mappings(metrics))
    started = time.perf_counter()
    if engine == "spark":
        from ruledsl.distributed.spark_engine import audit_spark, local_session

        session = local_session(f"local[{workers}]", configs={
            "spark.sql.shuffle.partitions": str(2 * workers), "spark.driver.memory": "6g"})
        ready = time.perf_counter()
        audited = audit_spark(session.read.parquet(path), source, strategy=strategy)
        combined = audited.combined.toArrow()
        done = time.perf_counter()
        session.stop()
    else:
        import ray

        from ruledsl.distributed.ray_engine import audit_ray, ray_session, table_of

        ray_session(num_cpus=workers, object_store_memory=2 * 1024**3)
        ready = time.perf_counter()
        import ray.data

        ray_audit = audit_ray(ray.data.read_parquet(path), source, strategy=strategy, partitions=2 * workers)
        combined = table_of(ray_audit.combined, COMBINED_SCHEMA)
        done = time.perf_counter()
        ray.shutdown()
    records = pl.from_arrow(split(combined).records)
    assert isinstance(records, pl.DataFrame)
    return {"session_s": ready - started, "audit_s": done - ready, "episodes": episodes_digest(records)}


def run_child(engine: str, workers: int, strategy: str, path: str, metrics: int) -> dict | None:
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "PYSPARK_PYTHON": sys.executable}
    command = [sys.executable, __file__, "--child", engine, str(workers), strategy, path, str(metrics)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        print(f"  {engine} x{workers} {strategy}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- in process


def in_process(path: str, metrics: int, threads: int | None) -> dict:
    """`audit_partition` over the whole archive in a child (polars' thread pool is fixed at import)."""
    code = (f"import json,time,sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import polars as pl; "
            "from batch import rule_mappings; "
            "from ruledsl.distributed.partition import audit_partition, rule_source; "
            f"source = rule_source(rule_mappings({metrics})); t = time.perf_counter(); "
            f"table = pl.read_parquet({path!r}).to_arrow(); r = time.perf_counter(); "
            "part = audit_partition(table, source); d = time.perf_counter(); "
            "one = table.filter(__import__('pyarrow.compute').compute.equal(table['run'], table['run'][0])); "
            "o = time.perf_counter(); audit_partition(one, source); e = time.perf_counter(); "
            "recs = pl.from_arrow(part.records).select('run','rule','first_step','last_step','n_evals').rows(); "
            "print(json.dumps({'read_s': r - t, 'audit_s': d - r, 'one_run_s': e - o, 'episodes': sorted(recs)}))")
    env = {**os.environ, **({"POLARS_MAX_THREADS": str(threads)} if threads else {})}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"in-process audit failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="50 runs x 2,000 steps")
    parser.add_argument("--engines", default="spark,ray", help="comma-separated: spark, ray")
    parser.add_argument("--workers", default="1,2", help="comma-separated local worker counts")
    parser.add_argument("--strategies", default="map,group", help="group: 2 workers only")
    parser.add_argument("--seed", type=int, default=20260509)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, workers, strategy, path, metrics = args.child
        result = child(engine, int(workers), strategy, path, int(metrics))
        print(json.dumps(result))
        return
    if args.quick:
        args.runs, args.steps = 50, 2000
    rows = args.runs * args.steps
    with tempfile.TemporaryDirectory(prefix="ruledsl-bench-") as folder:
        path = str(Path(folder) / "archive.parquet")
        build_archive(args.runs, args.steps, args.metrics, args.seed, "string").write_parquet(path)
        size = Path(path).stat().st_size
        print(f"archive: {args.runs:,} runs x {args.steps:,} steps x {args.metrics} metrics = {rows:,} rows, "
              f"{size / 2**20:,.0f} MiB Parquet; {3 * args.metrics} rules")
        single = in_process(path, args.metrics, 1)
        every = in_process(path, args.metrics, None)
        reference = single["episodes"]
        print(f"in process, 1 thread:   read {single['read_s']:.2f} s, audit {single['audit_s']:.2f} s "
              f"({rows / single['audit_s']:,.0f} rows/s); one run alone {single['one_run_s'] * 1000:.0f} ms")
        print(f"in process, all cores:  read {every['read_s']:.2f} s, audit {every['audit_s']:.2f} s "
              f"({rows / every['audit_s']:,.0f} rows/s)")
        mismatch = every["episodes"] != reference
        base = single["audit_s"]
        print(f"{'engine':<8}{'workers':>8}{'strategy':>10}{'session s':>11}{'audit s':>9}{'rows/s':>13}"
              f"{'vs 1 thread':>13}{'overhead/run':>14}")
        for engine in args.engines.split(","):
            for strategy in args.strategies.split(","):
                for workers in map(int, args.workers.split(",")):
                    if strategy == "group" and workers != max(map(int, args.workers.split(","))):
                        continue
                    found = run_child(engine, workers, strategy, path, args.metrics)
                    if found is None:
                        continue
                    same = found["episodes"] == reference
                    mismatch |= not same
                    audit_s = found["audit_s"]
                    overhead = (audit_s * workers - base) / args.runs
                    print(f"{engine:<8}{workers:>8}{strategy:>10}{found['session_s']:>11.1f}{audit_s:>9.2f}"
                          f"{rows / audit_s:>13,.0f}{base / audit_s:>12.2f}x{overhead * 1000:>11.1f} ms"
                          + ("" if same else "  RECORDS DIFFER"))
    if mismatch:
        raise SystemExit(2)


if __name__ == "__main__":
    main()
