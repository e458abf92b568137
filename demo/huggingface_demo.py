"""ruledsl in ten minutes: a Hugging Face TRL run that breaks, and the rules that catch it.

    python demo/huggingface_demo.py              # the seven sections, in presentation order
    python demo/huggingface_demo.py --section 2  # one section
    python demo/huggingface_demo.py --real       # and a real tiny GRPOTrainer run on CPU

Everything shown comes from ruledsl's real public API or its real command line: a real
`trl.GRPOConfig`, the real `DiagnosticsCallback` called with transformers' real
`TrainerState` and `TrainerControl` as the Trainer calls it, `ruledsl.audit` for the
condition language, and `python -m ruledsl lint` / `audit` in subprocesses. No alert text is
written here: every alert line printed is the callback's or the engine's own. Only the run of
section 2 is simulated (simulated_grpo.py): a GRPO run with vLLM needs GPUs, and its rows carry
the keys TRL 1.16 logs then. Offline: nothing is downloaded, not even with --real.

Files go to demo/out/ (git ignores it; --out chooses another folder); each section replaces
only its own sub-folder there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simulated_grpo
import tiny_grpo

DEMO_DIR = Path(__file__).resolve().parent
REPO = DEMO_DIR.parent
EXAMPLE_RUNS = REPO / "examples" / "runs"
RULE_FILE = Path("grpo") / "grpo_is_ratio_collapse.yaml"  # inside the builtin library (rules/)
# The settings of section 2's run: a GRPO run with vLLM, as a team would launch it (bf16 off: no GPU here)
GRPO_SETTINGS: dict[str, Any] = {"use_vllm": True, "logging_steps": simulated_grpo.LOGGING_STEPS,
                                 "max_steps": simulated_grpo.MAX_STEPS, "report_to": "none", "bf16": False}
INLINE_ALERT = "grpo: importance_sampling_ratio < 0.5 for 20 steps -> high: IS ratio collapsed to {value:.2f}"


@dataclass
class Demo:
    """What every section needs: where to write, and how to print for this stdout."""

    out: Path
    fancy: bool  # a terminal (and NO_COLOR unset): bold headers

    def folder(self, name: str) -> Path:
        """A fresh sub-folder of the output folder: the callback appends to files it finds there."""
        path = self.out / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def header(self, number: int, title: str) -> None:
        text = f"== {number}/{len(SECTIONS)}  {title}"
        print("\n" + (f"\x1b[1m{text}\x1b[0m" if self.fancy else text), flush=True)

    def shown(self, path: Path) -> str:
        """A path as short as it can be said: relative to where the demo was started, when inside it."""
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)


def say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def wrapped(text: str, indent: str = "  ") -> str:
    return textwrap.fill(" ".join(text.split()), width=100, initial_indent=indent, subsequent_indent=indent)


def run_cli(*arguments: str, quiet_notes: bool = False) -> int:
    """`ruledsl ARGS` in a subprocess from the current folder, its output going straight to ours (a terminal
    gets the command's own colours, a log plain text); says the command first. `quiet_notes`: its stderr
    only if it fails (the notes a second run of the same audit would repeat)."""
    say(f"  $ ruledsl {' '.join(arguments)}")
    sys.stdout.flush()
    command = [sys.executable, "-m", "ruledsl", *arguments]
    if not quiet_notes:
        return subprocess.run(command, check=False).returncode
    done = subprocess.run(command, check=False, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    return done.returncode


def grpo_config(output_dir: Path) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(output_dir=str(output_dir), **GRPO_SETTINGS)


def watch_simulated_run(callback: Any, output_dir: Path, progress: bool) -> Any:
    """Section 2's run, replayed through `callback` with a real GRPOConfig; returns the Trainer state."""
    rows = simulated_grpo.simulated_rows()
    args = grpo_config(output_dir)
    return simulated_grpo.replay(rows, args, [callback], on_row=print_progress if progress else None)


def print_progress(step: int, logs: dict[str, float]) -> None:
    """The demo's own trace of the run: every 100 steps, and every log while the ratio slides."""
    ratio = logs.get(simulated_grpo.IS_RATIO)
    if ratio is None or not (step % 100 == 0 or simulated_grpo.DESYNC_STEP < step <= 460):
        return
    say(f"  step {step:>3} | {simulated_grpo.IS_RATIO} {ratio:.3f}"
        f" | .../min {logs['sampling/importance_sampling_ratio/min']:.2f}"
        f" | reward {logs['reward']:.2f} | step_time {logs['step_time']:.0f} s")


# ---------------------------------------------------------------------------------------------- sections


def section_integration(demo: Demo) -> None:
    from transformers import TrainerControl, TrainerState

    from ruledsl import DiagnosticsCallback

    say("  from ruledsl import DiagnosticsCallback",
        "  trainer = GRPOTrainer(model, args=config, reward_funcs=..., train_dataset=...,",
        "                        callbacks=[DiagnosticsCallback()])   # <- the one line",
        "",
        f"  config = GRPOConfig({', '.join(f'{k}={v!r}' for k, v in GRPO_SETTINGS.items())})",
        "  The Trainer calls on_init_end while it is built; the callback answers:")
    folder = demo.folder("s1-integration")
    callback = DiagnosticsCallback()
    callback.on_init_end(grpo_config(folder), TrainerState(), TrainerControl())
    by_severity = Counter(rule.severity for rule in callback.active_rules)
    counts = ", ".join(f"{by_severity[s]} {s}" for s in ("critical", "high", "medium", "low") if by_severity[s])
    say(f"  Those rules: {counts}; `ruledsl list --trainer grpo` names them. No rule to write, no key to map.")


def section_live_catch(demo: Demo) -> None:
    from ruledsl import DiagnosticsCallback

    run_dir = demo.folder("s2-grpo-run")
    say(f"  {simulated_grpo.MAX_STEPS} steps of GRPO with vLLM, logged every {simulated_grpo.LOGGING_STEPS};"
        f" vLLM stops receiving the new weights after step {simulated_grpo.DESYNC_STEP}.",
        "  Each row goes to the callback's on_log, as the Trainer sends it:", "")
    callback = DiagnosticsCallback()
    state = watch_simulated_run(callback, run_dir, progress=True)
    high = [r for r in callback.started if r["severity"] in ("high", "critical")]
    say("", "  What it means: vLLM is sampling with stale weights, so the trainer's and vLLM's log-probabilities",
        "  disagree. TRL's importance-sampling correction (default sequence_mask mode) gives weight 0 to every",
        "  sequence whose ratio leaves [clip_min, clip_max = 3.0]: most of each batch no longer reaches the loss.",
        "  The GPUs keep running, the model barely learns. Check weight syncing to vLLM, then sampling filters.")
    if high:
        step = high[0]["first_step"]
        saved = state.global_step - step
        hours = saved * _mean_step_time(state) / 3600
        say(f"  With DiagnosticsCallback(stop_on='high') the run ends at step {step}:"
            f" {saved} steps (~{hours:.1f} h of training at this step time) not spent.")
    say(f"  Kept for later in {demo.shown(run_dir / 'diagnostics')}/: metrics.jsonl, alerts.jsonl, run.json"
        f" (`ruledsl audit {demo.shown(run_dir / 'diagnostics')}` finds the same episodes).")


def _mean_step_time(state: Any) -> float:
    times = [row["step_time"] for row in state.log_history if "step_time" in row]
    return sum(times) / len(times) if times else 0.0


def section_rule_and_language(demo: Demo) -> None:
    from ruledsl.resources import data_dir

    path = data_dir("rules") / RULE_FILE
    say(f"  The rule that fired, {demo.shown(path)} (builtin library, one YAML file per rule):", "")
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if line.startswith("description:"):
            break
        say("    " + (line if len(line) <= 96 else line[:93] + "..."))
    say("    description: ... reference: ... tests: ...   (why, sources, and cases `ruledsl test` checks)", "")
    say("  The condition language, each condition run by the batch engine (ruledsl.audit) on the log of section 2:",
        "")
    show_conditions()


# (condition, metric, window, what it says) for the table of section 3
CONDITIONS = [
    ("< 0.5", "importance_sampling_ratio", 3, "the mean of the last 3 logs is below 0.5"),
    ("not range(0.8, 1.2)", "importance_sampling_ratio", 1, "leaves the healthy band 0.8 to 1.2"),
    ("drop(50%)", "importance_sampling_ratio", 5, "the mean of 5 logs is half the run's first 5"),
    ("spike(5x)", "sampling/sampling_logp_difference/mean", 5, "a value 5x the mean of the 5 before it"),
    ("mean(importance_sampling_ratio, 3) < 0.5 and sampling/importance_sampling_ratio/min == 0", None, 1,
     "a full expression: two metrics, a function"),
    ("< 0.9 for 50 steps", "importance_sampling_ratio", 1, "holds for 50 training steps in a row"),
]


def show_conditions() -> None:
    import polars as pl

    import ruledsl

    log = pl.from_dicts([{"step": step, **logs} for step, logs in simulated_grpo.simulated_rows()],
                        infer_schema_length=None)
    for number, (condition, metric, window, meaning) in enumerate(CONDITIONS):
        rule = {"name": f"c{number}", "trainers": ["grpo"], "condition": condition, "window": window,
                "severity": "medium", "message": "{value}"}
        if metric is not None:
            rule["metric"] = metric
        records = ruledsl.audit(log, [rule], trainer="grpo").to_dicts()
        where = (f"fires at steps {records[0]['first_step']}-{records[0]['last_step']}" if records else "silent")
        on = f"{metric}, window {window}" if metric else "(names its metrics)"
        say(f"    {condition}", f"        on {on}: {meaning}; {where}")


def section_inline(demo: Demo) -> None:
    import ruledsl

    say("  One line, no file: `trainers: metric condition -> severity: message`, given to the callback",
        "  (or to `ruledsl audit --alert`):", "",
        f'    DiagnosticsCallback(custom_alerts={{"is_ratio_low": "{INLINE_ALERT}"}})', "")
    rule = ruledsl.parse_inline_alert(INLINE_ALERT)
    say(f"  read as: trainers {list(rule.trainers)}, metric {rule.metric} (an alias), condition"
        f" '{rule.condition.text}', severity {rule.severity}", "  Section 2's run again, with this alert alone:", "")
    folder = demo.folder("s4-inline")
    callback = ruledsl.DiagnosticsCallback(custom_alerts={"is_ratio_low": INLINE_ALERT}, include_builtin=False)
    watch_simulated_run(callback, folder, progress=False)


BROKEN_RULE = """\
# A contributed rule, as it arrives in a pull request
name: grpo_reward_halved
trainers: [grpo]
metric: reward
condition: "reward drop(50%)"
window: 5
severity: medium
message: "reward fell to {value:.2f} at step {step} (it started near {baseline:.2f})"
"""


def section_lint(demo: Demo) -> None:
    folder = demo.folder("s5-contributed-rules")
    rule_file = folder / "grpo_reward_halved.yaml"
    rule_file.write_text(BROKEN_RULE, encoding="utf-8")
    say(f"  A contributed rule, {demo.shown(rule_file)}:", "")
    say(*("    " + line for line in BROKEN_RULE.splitlines()), "")
    status = run_cli("lint", demo.shown(rule_file))
    say(f"  exit status {status}: a CI job running `ruledsl lint` refuses the pull request, pointing at the"
        " column.", "  The fix the hint gives, linted again:")
    rule_file.write_text(BROKEN_RULE.replace('"reward drop(50%)"', '"drop(50%)"'), encoding="utf-8")
    status = run_cli("lint", demo.shown(rule_file))
    say(f"  exit status {status}")


def section_audit(demo: Demo) -> None:
    runs = demo.shown(EXAMPLE_RUNS)
    say(f"  The same rules over stored logs: the bundled archive {runs}/ (four runs: metrics.jsonl files",
        "  and a trainer_state.json), no training process needed:", "")
    if not EXAMPLE_RUNS.is_dir():
        say(f"  (no {EXAMPLE_RUNS}: this section needs a clone of the repository)")
        return
    run_cli("audit", runs)
    folder = demo.folder("s6-audit")
    report = folder / "report.html"
    say("")
    run_cli("audit", runs, "--format", "html", "--output", demo.shown(report), quiet_notes=True)
    if report.is_file():
        say(f"  HTML report (tables and a chart per alert): {report.resolve()}")
    else:
        say(f"  no HTML report was written at {report}: see the error above")


def section_more(demo: Demo) -> None:
    say("  resume       DiagnosticsCallback(resume_policy=...): a run resumed from a checkpoint carries on its",
        "               rules' state from diagnostics/metrics.jsonl, and a changed configuration is an alert.",
        "  postmortem   DiagnosticsCallback(postmortem=...): when training dies (exception, Ctrl-C, SIGTERM),",
        "               or a stop_on stop, diagnostics/postmortem.json keeps what the callback knew at the end.",
        "  stragglers   DiagnosticsCallback(system_metrics=...): under torchrun each rank's compute time and",
        "               peak memory become ruledsl/* keys; rank_straggler names the rank holding the others back.",
        "  trackers     alerts go to W&B, MLflow and TensorBoard from args.report_to, and",
        "               DiagnosticsCallback(notify=[webhook URLs]) posts each new episode to Slack and the like.")


# An alert that real TRL keys set off on the tiny model: its completions run into max_completion_length
REAL_ALERT = ("grpo: completions/clipped_ratio > 0.5 -> medium: {value:.0%} of the completions were cut at"
              " max_completion_length (step {step})")


def section_real(demo: Demo) -> None:
    """Not one of the seven: `--real`, a real GRPOTrainer with the callback, a few steps on CPU."""
    import transformers

    from ruledsl import DiagnosticsCallback

    transformers.logging.set_verbosity_error()  # the Trainer's own notices would bury the callback's lines
    transformers.logging.disable_progress_bar()
    folder = demo.folder("real-grpo")
    say("  A real GRPOTrainer (TRL) on a tiny Llama made in code (offline, CPU), the callback in its constructor,",
        "  the builtin rules and one inline alert that the tiny model's real logs set off:",
        f'    DiagnosticsCallback(custom_alerts={{"completions_clipped": "{REAL_ALERT}"}})', "")
    started = time.perf_counter()
    callback = DiagnosticsCallback(custom_alerts={"completions_clipped": REAL_ALERT})
    trainer = tiny_grpo.tiny_grpo_trainer(folder, callbacks=[callback], max_steps=4)
    trainer.train()
    say(f"  {trainer.state.global_step} real steps in {time.perf_counter() - started:.1f} s (four steps are too few"
        " for most windows: the callback says which rules never ran, and why).",
        f"  The callback's files: {demo.shown(Path(trainer.args.output_dir) / 'diagnostics')}/")


SECTIONS: dict[int, tuple[str, Callable[[Demo], None]]] = {
    1: ("One line of integration: DiagnosticsCallback() on a real GRPOConfig finds the trainer and its rules",
        section_integration),
    2: ("A GRPO run breaks: the importance-sampling ratio slides from ~1.0 to ~0.1, caught live by the callback",
        section_live_catch),
    3: ("The YAML rule behind that alert, and the condition language", section_rule_and_language),
    4: ("An inline alert: a rule in one line of Python", section_inline),
    5: ("`ruledsl lint` stops a broken contributed rule, with a caret under the mistake", section_lint),
    6: ("The batch audit of the bundled archive, and its HTML report", section_audit),
    7: ("Also in the callback: resume, postmortem, stragglers, trackers", section_more),
}
REAL_TITLE = "--real: a real tiny GRPOTrainer, a few steps on CPU, with the callback"


def section_number(text: str) -> int:
    """--section's value: 1 to 7, else an argparse error (exit status 2) that says where they are listed."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number not in SECTIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a section: give 1 to {len(SECTIONS)} (--help lists them)")
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    sections = "\n".join(f"  {n}. {title}" for n, (title, _) in SECTIONS.items())
    parser = argparse.ArgumentParser(
        prog="huggingface_demo.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ruledsl in ten minutes: a Hugging Face TRL run that breaks, and the rules that catch it.\n\n"
                    f"Sections, in presentation order:\n{sections}\n\n"
                    "Offline, under a minute without --real. Every alert line is printed by ruledsl itself.",
        epilog="examples:\n  python demo/huggingface_demo.py\n  python demo/huggingface_demo.py --section 2\n"
               "  python demo/huggingface_demo.py --section 2 --real\n  make demo   (sets up .venv first)\n")
    parser.add_argument("--section", type=section_number, metavar="N",
                        help=f"run only section N (1-{len(SECTIONS)}); default: all of them, in order")
    parser.add_argument("--real", action="store_true",
                        help="after the sections, train a real tiny GRPOTrainer for 4 steps on CPU with the "
                             "callback (a few seconds more, offline)")
    parser.add_argument("--out", type=Path, default=DEMO_DIR / "out", metavar="DIR",
                        help="where the demo writes its files (default: demo/out/, which git ignores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    tiny_grpo.offline_environment()  # before any Hugging Face import
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, not ours
    fancy = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    demo = Demo(out=options.out, fancy=fancy)
    demo.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chosen = [options.section] if options.section else list(SECTIONS)
    for number in chosen:
        title, run = SECTIONS[number]
        demo.header(number, title)
        run(demo)
    if options.real:
        say("\n" + (f"\x1b[1m== {REAL_TITLE}\x1b[0m" if fancy else f"== {REAL_TITLE}"))
        section_real(demo)
    say(f"\nDone in {time.perf_counter() - started:.1f} s. Files: {demo.shown(demo.out)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
