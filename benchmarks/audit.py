"""Archive benchmark: `ruledsl audit` on a large archive against polars just reading it.

    .venv/bin/python benchmarks/audit.py             # 1,000 runs x 10,000 steps (10M rows)
    .venv/bin/python benchmarks/audit.py --quick     # 100 runs x 2,000 steps
    .venv/bin/python benchmarks/audit.py --narrow    # the 12-key archive of earlier versions
    .venv/bin/python benchmarks/audit.py --formats parquet --repeat 5   # Parquet only, best of 5
    .venv/bin/python benchmarks/audit.py --runs 200 --steps 5000 --dir /tmp/archive --keep

What it does:

1. writes a GRPO archive (`run`, `step`, and the 27 keys a GRPO step logs: the 24 of the
   real capture in shared/reference/real_trl_logs/grpo.jsonl, kl, and the two vLLM
   sampling keys; `--narrow` keeps 12 of them: loss, grad_norm, kl, entropy, the
   importance-sampling ratio, …). Seeded random walks, with NaN losses, KL spikes
   and IS-ratio collapses injected in a tenth of the runs; sorted by run then step;
   once as Parquet and once as JSON Lines (NaN written as Python's json writes it,
   the bare token `NaN`), one file each with a `run` column.
2. for each file, in a fresh process each (so peak memory is that path's own):
   - the floor: polars reading the file (`scan_parquet` / `scan_ndjson` → collect;
     polars refuses NaN tokens, so for JSON Lines it reads a copy with null for NaN),
   - for Parquet, a stricter floor: polars reading only `run`, `step` and the
     columns some builtin rule reads,
   - the audit: what `ruledsl audit FILE` does (discover, read lazily, guess the
     trainer from the keys, its builtin rules, one query, records), in memory and
     with `--streaming`.
   The Parquet paths run `--repeat` times each, in turns; the best wall time counts.
3. prints wall and CPU seconds, rows/s and peak RSS (VmHWM) for each, and the
   audit / read ratios. Goal: audit <= 2x the bare read for Parquet (PASS/MISS;
   a miss still exits 0). Every audit must find the same episodes (else exit 2).

The machine is shared: compare CPU seconds when wall times are noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("ruledsl") is None:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GOAL_AUDIT_OVER_READ = 2.0
KEYS = ["loss", "grad_norm", "learning_rate", "entropy", "kl", "reward", "reward_std", "frac_reward_zero_std",
        "completions/clipped_ratio", "sampling/importance_sampling_ratio/mean",
        "sampling/sampling_logp_difference/mean", "num_tokens"]
# The rest of what a real GRPO step logs (shared/reference/real_trl_logs/grpo.jsonl: 24 training
# keys, plus kl with beta > 0 and the two vLLM sampling keys above): 27 keys in all.
GRPO_EXTRA_KEYS = ["clip_ratio/high_max", "clip_ratio/high_mean", "clip_ratio/low_mean", "clip_ratio/low_min",
                   "clip_ratio/region_mean", "completions/max_length", "completions/max_terminated_length",
                   "completions/mean_length", "completions/mean_terminated_length", "completions/min_length",
                   "completions/min_terminated_length", "epoch", "rewards/reward_len/mean",
                   "rewards/reward_len/std", "step_time"]


# ============================================================== the archive


def walk(rng: np.random.Generator, runs: int, steps: int, start: float, scale: float) -> np.ndarray:
    """Positive multiplicative random walks, one row per run."""
    return start * np.exp(rng.normal(0.0, scale, size=(runs, steps)).cumsum(axis=1))


def grpo_extras(rng: np.random.Generator, runs: int, steps: int) -> dict[str, np.ndarray]:
    shape = (runs, steps)
    mean_length = walk(rng, runs, steps, 120.0, 0.01)
    extras = {k: rng.uniform(0.0, 0.05, size=shape) for k in GRPO_EXTRA_KEYS if k.startswith("clip_ratio/")}
    extras.update({
        "completions/max_length": mean_length * 1.8, "completions/max_terminated_length": mean_length * 1.6,
        "completions/mean_length": mean_length, "completions/mean_terminated_length": mean_length * 0.9,
        "completions/min_length": mean_length * 0.3, "completions/min_terminated_length": mean_length * 0.3,
        "epoch": np.tile(np.arange(1, steps + 1, dtype=np.float64) / steps, (runs, 1)),
        "rewards/reward_len/mean": walk(rng, runs, steps, 0.5, 0.01),
        "rewards/reward_len/std": walk(rng, runs, steps, 0.3, 0.01),
        "step_time": rng.uniform(0.5, 1.5, size=shape),
    })
    return extras


def build_archive(runs: int, steps: int, seed: int = 0, narrow: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {
        "loss": walk(rng, runs, steps, 0.5, 0.01),
        "grad_norm": walk(rng, runs, steps, 1.0, 0.02),
        "learning_rate": np.tile(np.linspace(1e-6, 0.0, steps), (runs, 1)),
        "entropy": walk(rng, runs, steps, 2.0, 0.005),
        "kl": walk(rng, runs, steps, 0.02, 0.02),
        "reward": walk(rng, runs, steps, 0.5, 0.01),
        "reward_std": walk(rng, runs, steps, 0.3, 0.01),
        "frac_reward_zero_std": rng.uniform(0.0, 0.3, size=(runs, steps)),
        "completions/clipped_ratio": rng.uniform(0.0, 0.2, size=(runs, steps)),
        "sampling/importance_sampling_ratio/mean": rng.normal(0.98, 0.01, size=(runs, steps)),
        "sampling/sampling_logp_difference/mean": np.abs(rng.normal(0.01, 0.003, size=(runs, steps))),
        "num_tokens": np.tile(np.arange(1, steps + 1, dtype=np.float64) * 512, (runs, 1)),
    }
    broken = rng.choice(runs, size=max(1, runs // 10), replace=False)
    for run in broken:  # one failure each, at a random point of the second half
        at = int(rng.integers(steps // 2, steps - 10))
        kind = run % 3
        if kind == 0:
            columns["loss"][run, at:] = np.nan
        elif kind == 1:
            columns["kl"][run, at:at + 3] *= 50
        else:
            columns["sampling/importance_sampling_ratio/mean"][run, at:] = 0.2
    if not narrow:  # drawn after the failures: the 12 keys above are the same either way
        columns.update(grpo_extras(rng, runs, steps))
    run_ids = np.repeat(np.array([f"run{r:05d}" for r in range(runs)]), steps)
    frame = pl.DataFrame({"run": run_ids, "step": np.tile(np.arange(steps, dtype=np.int64), runs),
                          **{k: v.reshape(-1) for k, v in columns.items()}})
    return frame


def write_jsonl_like_python(frame: pl.DataFrame, path: Path, floor_path: Path) -> None:
    """JSON Lines as Python's json (and so TRL's logs) writes them: NaN as the bare token.

    polars writes NaN as null, which would lose the failures; the loss column is the
    only one with NaN here, so its nulls are turned back into tokens. The null version
    is kept beside it: polars' JSON reader refuses NaN tokens, so the floor (bare read)
    is measured on it.
    """
    frame.write_ndjson(floor_path)
    with floor_path.open("rb") as source, path.open("wb") as target:
        while block := source.read(64 * 2**20):
            target.write(block.replace(b'"loss":null', b'"loss":NaN'))


# ============================================================== measured paths (child processes)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(path: Path, what: str) -> dict:
    """One measured path. Importing ruledsl and compiling the rule library (a fixed
    cost, about a second, whatever the archive) happen before the clock starts."""
    if what == "read-used":
        from ruledsl.compile import compile_rules
        from ruledsl.model.loader import load_rules

        used = {"run", "step"} | compile_rules(load_rules(), trainer="grpo").read_keys()
    elif what != "read":
        from ruledsl.engines.batch.archive import audit_archive
        from ruledsl.model.loader import load_rules
        from ruledsl.readers import read_archive

        rules = load_rules()
    baseline = peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    if what == "read":
        floor = path.with_suffix(".nulls.jsonl") if path.suffix == ".jsonl" else path
        scan = pl.scan_parquet(floor) if path.suffix == ".parquet" else pl.scan_ndjson(floor)
        rows = scan.collect().height
        episodes = None
    elif what == "read-used":  # a stricter floor: only the columns some builtin rule reads
        scan = pl.scan_parquet(path)
        rows = scan.select(pl.col(c) for c in scan.collect_schema().names() if c in used).collect().height
        episodes = None
    else:
        archive = read_archive([path])
        assert not archive.problems, archive.problems
        audited = audit_archive(archive, rules, streaming=what == "audit-streaming")
        records = audited.records
        rows = None
        episodes = sorted((r["run"], r["rule"], r["first_step"], r["last_step"]) for r in records.iter_rows(named=True))
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "peak_mb": peak_rss_mb(),
            "baseline_mb": baseline, "rows": rows, "episodes": episodes}


def measure_alternating(path: Path, whats: tuple[str, ...], repeat: int) -> dict[str, dict]:
    """Each path `repeat` times, in turns (so the shared machine's load falls on all alike):
    the run with the best wall time of each."""
    best: dict[str, dict] = {}
    for _ in range(repeat):
        for what in whats:
            m = measure(path, what)
            if what not in best or m["wall"] < best[what]["wall"]:
                best[what] = m
    return best


def measure(path: Path, what: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", what, str(path)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{what} on {path} failed:\n{result.stderr}")
    return json.loads(result.stdout)


# ============================================================== main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="100 runs x 2,000 steps")
    parser.add_argument("--dir", type=Path, help="where to write the archive (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the archive files")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per Parquet path (best wall time)")
    parser.add_argument("--formats", default="parquet,jsonl", help="which files to write and measure")
    parser.add_argument("--narrow", action="store_true",
                        help="only the 12 keys of earlier versions of this benchmark, not all 27 a GRPO step logs")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[1]), args.child[0])))
        return 0
    if args.quick:
        args.runs, args.steps = 100, 2000
    folder = args.dir or Path(tempfile.mkdtemp(prefix="ruledsl-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return run(args.runs, args.steps, folder, args.narrow, args.repeat, args.formats.split(","))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(runs: int, steps: int, folder: Path, narrow: bool, repeat: int, formats: list[str]) -> int:
    rows = runs * steps
    keys = len(KEYS) + (0 if narrow else len(GRPO_EXTRA_KEYS))
    print(f"archive: {runs:,} runs x {steps:,} steps = {rows:,} rows, {keys} metric keys; in {folder}")
    started = time.perf_counter()
    frame = build_archive(runs, steps, narrow=narrow)
    paths = {fmt: folder / f"archive.{fmt}" for fmt in ("parquet", "jsonl") if fmt in formats}
    if "parquet" in paths:
        frame.write_parquet(paths["parquet"])
    if "jsonl" in paths:
        write_jsonl_like_python(frame, paths["jsonl"], folder / "archive.nulls.jsonl")
    del frame
    print(f"written in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{fmt} {p.stat().st_size / 2**20:,.0f} MiB" for fmt, p in paths.items()))
    print()
    header = f"{'file':8} {'path':16} {'wall s':>8} {'CPU s':>8} {'rows/s':>12} {'peak MiB':>9} " \
             f"{'wall/read':>9} {'CPU/read':>9}"
    print(header)
    print("-" * len(header))
    episodes, verdict = {}, []
    for fmt, path in paths.items():
        whats = ("read", "read-used", "audit", "audit-streaming") if fmt == "parquet" else \
            ("read", "audit", "audit-streaming")
        measured = measure_alternating(path, whats, repeat if fmt == "parquet" else 1)
        floor = measured["read"]
        for what in whats:
            m = measured[what]
            ratio = f"{m['wall'] / floor['wall']:9.2f} {m['cpu'] / floor['cpu']:9.2f}" if what != "read" else \
                f"{'1':>9} {'1':>9}"
            print(f"{fmt:8} {what:16} {m['wall']:8.2f} {m['cpu']:8.2f} {rows / m['wall']:12,.0f} "
                  f"{m['peak_mb']:9,.0f} {ratio}")
            if m["episodes"] is not None:
                episodes[(fmt, what)] = m["episodes"]
        if fmt == "parquet":
            m, used = measured["audit"], measured["read-used"]
            ok = m["wall"] / floor["wall"] <= GOAL_AUDIT_OVER_READ
            verdict.append(f"parquet audit / bare read = {m['wall'] / floor['wall']:.2f} (wall), "
                           f"{m['cpu'] / floor['cpu']:.2f} (CPU); goal <= {GOAL_AUDIT_OVER_READ}: "
                           f"{'PASS' if ok else 'MISS'}")
            verdict.append(f"parquet audit / reading only the columns the rules read = "
                           f"{m['wall'] / used['wall']:.2f} (wall), {m['cpu'] / used['cpu']:.2f} (CPU)")
    print()
    if repeat > 1:
        print(f"(Parquet: best wall time of {repeat} fresh processes per path, taken in turns)")
    print("\n".join(verdict))
    print(f"(peak MiB includes the interpreter, polars and, for the audits, ruledsl with its rules loaded: "
          f"~{m['baseline_mb']:.0f} MiB before any work)")
    answers = {json.dumps(v) for v in episodes.values()}
    count = len(next(iter(episodes.values())))
    if len(answers) != 1:
        print("DISAGREE: the audits of the same archive found different episodes")
        return 2
    print(f"every audit found the same {count:,} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
