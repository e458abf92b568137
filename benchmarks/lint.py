"""How long `ruledsl lint` takes on 1,000 generated rule files, against merely reading them.

    python benchmarks/lint.py [--files 1000] [--repeat 3]

Baseline, measured in the same run: `yaml.safe_load` of every file (what any
YAML-based tool must at least do). Goal: lint ≤ 3× the baseline. Lint here is
the in-process `ruledsl.lint.lint` (no `tests:` cases in the generated files,
so no engine runs); the CLI's start-up is printed apart.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ruledsl.lint import lint  # noqa: E402

CONDITIONS = ["< {a}", "> {b}", "range({a}, {b})", "outside({a}, {b})", "drop({p}%)", "rise({p}%)",
              "spike({k}x)", "flat({e})", "nonfinite", "< {a} or > {b}", "> {b} for 5 steps"]
EXPRESSIONS = ["mean(loss, 20) > 2 * baseline(loss, 20)", "logps/chosen < 0 and logps/rejected < 0",
               "abs(delta(rewards/margins, 5)) > {b}", "std(reward, 10) < {e}"]
METRICS = {"grpo": ["reward", "reward_std", "kl", "entropy", "importance_sampling_ratio"],
           "dpo": ["loss", "rewards/margins", "rewards/accuracies", "logps/chosen"],
           "sft": ["loss", "grad_norm", "mean_token_accuracy", "entropy"]}


def rule_text(index: int, rng: random.Random) -> str:
    trainer = rng.choice(sorted(METRICS))
    numbers = {"a": round(rng.uniform(0, 1), 3), "b": round(rng.uniform(1, 5), 3), "p": rng.randint(10, 90),
               "k": rng.randint(2, 10), "e": round(rng.uniform(0, 0.01), 4)}
    lines = ["# yaml-language-server: $schema=../schemas/rule.schema.json", f"name: generated_rule_{index}",
             f"trainers: [{trainer}]"]
    if rng.random() < 0.8:
        lines += [f"metric: {rng.choice(METRICS[trainer])}",
                  f"condition: \"{rng.choice(CONDITIONS).format(**numbers)}\"", f"window: {rng.randint(1, 20)}"]
    else:
        lines.append(f"condition: \"{rng.choice(EXPRESSIONS).format(**numbers)}\"")
    lines += [f"severity: {rng.choice(['low', 'medium', 'high', 'critical'])}",
              "message: \"{metric} at {value:.3f} (step {step}, threshold {threshold})\"",
              "description: >-\n  A generated rule for the lint benchmark; it says what goes wrong and why\n"
              "  in two lines of folded text, like the builtin rules do.",
              "reference: [\"https://example.org/paper\"]", "tags: [benchmark]"]
    return "\n".join(lines) + "\n"


def write_rules(folder: Path, count: int) -> list[Path]:
    rng = random.Random(0)
    paths = []
    for index in range(count):
        path = folder / f"rule_{index:05d}.yaml"
        path.write_text(rule_text(index, rng), encoding="utf-8")
        paths.append(path)
    return paths


def timed(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_rules(folder, args.files)
        report = lint([folder], against_builtin=False)
        assert len(report.files) == args.files and not report.errors, report.errors[:3]

        baseline = timed(lambda: [yaml.safe_load(p.read_text(encoding="utf-8")) for p in paths], args.repeat)
        c_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        c_baseline = timed(lambda: [yaml.load(p.read_text(encoding="utf-8"), Loader=c_loader) for p in paths],
                           args.repeat)
        linted = timed(lambda: lint([folder], against_builtin=False), args.repeat)
        start = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "ruledsl", "lint", "--no-builtin", str(folder)],
                             capture_output=True, text=True)
        cli_time = time.perf_counter() - start
        startup = timed(lambda: subprocess.run([sys.executable, "-m", "ruledsl", "--help"],
                                               capture_output=True), 1)
    loader = "libyaml (C)" if getattr(yaml, "__with_libyaml__", False) else "pure Python"
    print(f"{args.files} generated rule files, median of {args.repeat}; PyYAML {yaml.__version__}: "
          f"yaml.safe_load parses in pure Python, ruledsl composes with {loader}")
    print(f"  yaml.safe_load of every file (baseline)  {baseline * 1000:8.1f} ms")
    print(f"  ruledsl lint, in process                 {linted * 1000:8.1f} ms   ratio {linted / baseline:.2f}"
          f"  (goal <= 3.0: {'PASS' if linted / baseline <= 3 else 'MISSED'})")
    print(f"  yaml.load with {c_loader.__name__} (a stricter floor)  {c_baseline * 1000:8.1f} ms   "
          f"lint / this = {linted / c_baseline:.2f}")
    print(f"  ruledsl lint, CLI (exit {cli.returncode})                {cli_time * 1000:8.1f} ms"
          f"   of which start-up ~{startup * 1000:.0f} ms")


if __name__ == "__main__":
    main()
