"""Write the healthy and failure corpus of simulated TRL 1.16 runs to tests/data/corpus/.

    python tools/make_corpus.py           # regenerate tests/data/corpus/
    python tools/make_corpus.py --check   # regenerate into a temporary folder and compare: exit 1 on drift

Every run is a folder as the ruledsl training callback leaves it (diagnostics/metrics.jsonl and
diagnostics/run.json, which names the trainer and keeps its configuration), so `ruledsl audit
tests/data/corpus` reads the trainer and `config.KEY` of each run. manifest.yaml lists the runs.
The runs and their seeds are fixed (tools/corpus/scenarios.py): the output is the same on every
run of this script. The simulation lives in tools/corpus/ (numpy and PyYAML only).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/corpus, run as a script or imported

from corpus.output import write_manifest, write_run  # noqa: E402
from corpus.scenarios import SCENARIOS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "corpus"


def generate(target: Path) -> None:
    configs = []
    for scenario in SCENARIOS:
        rows, config = scenario.simulate()
        write_run(target, scenario, rows, config)
        configs.append(config)
    write_manifest(target, SCENARIOS, configs)


def differences(expected: Path, actual: Path) -> list[str]:
    """Files that differ, are missing or are extra in `actual` compared with `expected`."""
    found: list[str] = []

    def walk(comparison: filecmp.dircmp, prefix: str) -> None:
        found.extend(f"missing: {prefix}{name}" for name in comparison.left_only)
        found.extend(f"extra: {prefix}{name}" for name in comparison.right_only)
        _, mismatch, errors = filecmp.cmpfiles(comparison.left, comparison.right, comparison.common_files,
                                               shallow=False)
        found.extend(f"differs: {prefix}{name}" for name in mismatch + errors)
        for name, sub in sorted(comparison.subdirs.items()):
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(expected, actual), "")
    return found


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh generation with the corpus")
    parser.add_argument("--out", type=Path, default=CORPUS, help="where the corpus goes (default: %(default)s)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corpus-") as scratch:
        fresh = Path(scratch) / "corpus"
        generate(fresh)
        seconds = time.perf_counter() - started
        if args.check:
            if not args.out.is_dir():
                print(f"{args.out} does not exist: run python tools/make_corpus.py", file=sys.stderr)
                return 1
            drift = differences(args.out, fresh)
            for line in drift[:20]:
                print(line, file=sys.stderr)
            if drift:
                print(f"{len(drift)} file(s) differ from what tools/make_corpus.py writes: regenerate the corpus",
                      file=sys.stderr)
                return 1
            print(f"corpus up to date ({len(SCENARIOS)} runs, generated in {seconds:.1f} s)")
            return 0
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(fresh, args.out)
    healthy = sum(s.kind == "healthy" for s in SCENARIOS)
    print(f"wrote {len(SCENARIOS)} runs ({healthy} healthy, {len(SCENARIOS) - healthy} failure) to {args.out}: "
          f"{size_of(args.out) / 1e6:.1f} MB in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
