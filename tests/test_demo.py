"""The presentation demo (demo/huggingface_demo.py), run as a user runs it: a real subprocess.

What it prints is checked against what it could not have made up: the importance-sampling
alert against the rule file's own template, rendered with the values the callback wrote to
metrics.jsonl; the lint caret against the column of the mistake; the HTML report on disk.
Output goes to a pipe here, so the demo (and the callback) must print plain text: no icons,
no ANSI colour. The callback's alerts and summary go to stderr (where the Trainer's warnings go)
and the demo's narration to stdout: the runs that read them together merge the two into one
pipe, in the order written, as a terminal shows them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl", reason="the demo needs the TRL extra: pip install 'ruledsl[trl]'")

pytestmark = [pytest.mark.subprocess, pytest.mark.trl]

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "huggingface_demo.py"
IS_RULE = ROOT / "rules" / "grpo" / "grpo_is_ratio_collapse.yaml"
IS_KEY = "sampling/importance_sampling_ratio/mean"


def run_demo(out: Path, *options: str, merged: bool = False) -> subprocess.CompletedProcess:
    """The demo run; `merged`: stderr into the stdout pipe (`done.stdout` holds both, `done.stderr` is None)."""
    return subprocess.run([sys.executable, str(DEMO), "--out", str(out), *options], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merged else subprocess.PIPE,
                          text=True, timeout=600, check=False)


def training_rows(metrics_jsonl: Path) -> list[dict]:
    """The rows the callback wrote that carry `IS_KEY`, in order."""
    rows = [json.loads(line) for line in metrics_jsonl.read_text(encoding="utf-8").splitlines()]
    return [row for row in rows if IS_KEY in row]


def first_window_below(rows: list[dict], window: int, level: float) -> tuple[int, float]:
    """(step, mean) where the mean of the last `window` values first falls below `level`
    (docs/language.md §3.2: added from the oldest value on)."""
    for end in range(window - 1, len(rows)):
        total = 0.0
        for row in rows[end - window + 1:end + 1]:
            total += row[IS_KEY]
        if total / window < level:
            return rows[end]["step"], total / window
    raise AssertionError("the demo's run never fell below the level")


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("demo-out")
    return run_demo(out, merged=True), out


def test_whole_demo_runs_every_section_in_order(whole):
    done, _ = whole
    assert done.returncode == 0, done.stdout[-3000:]
    positions = [done.stdout.find(f"\n== {n}/7  ") for n in range(1, 8)]
    assert -1 not in positions, positions
    assert positions == sorted(positions)
    assert "Traceback" not in done.stdout


def test_whole_demo_prints_plain_text_to_a_pipe(whole):
    done, _ = whole
    assert "\x1b[" not in done.stdout
    assert "🚨" not in done.stdout  # the callback's icon is for terminals only


def test_section_1_detects_grpo_from_the_real_config(whole):
    done, _ = whole
    section = done.stdout.split("\n== 1/7")[1].split("\n== 2/7")[0]
    assert re.search(r"^ruledsl: trainer grpo \(from the config class GRPOConfig\); \d+ rules apply$", section, re.M)


def test_section_2_prints_the_high_is_ratio_alert_as_the_rule_renders_it(whole):
    done, out = whole
    rule = yaml.safe_load(IS_RULE.read_text(encoding="utf-8"))
    rows = training_rows(out / "s2-grpo-run" / "diagnostics" / "metrics.jsonl")
    assert rows[0][IS_KEY] > 0.9 and rows[-1][IS_KEY] < 0.15  # the ratio drifts from ~1.0 to ~0.1
    step, value = first_window_below(rows, rule["window"], 0.5)
    assert rule["condition"] == "< 0.5"
    expected_message = rule["message"].format(value=value, window=rule["window"], step=step)
    section = done.stdout.split("\n== 2/7")[1].split("\n== 3/7")[0]
    lines = section.splitlines()
    head = f"[{rule['severity'].upper()}] {rule['name']} at step {step}"
    assert head == "[HIGH] grpo_is_ratio_collapse at step " + str(step)
    assert head in lines
    assert lines[lines.index(head) + 1] == "    " + expected_message
    # caught during the run: after the progress line of that step, before the end-of-training summary
    assert section.index(f"step {step} |") < section.index(head) < section.index("at the end of training")


def test_section_2_alert_is_the_one_the_callback_recorded(whole):
    done, out = whole
    events = [json.loads(line) for line in
              (out / "s2-grpo-run" / "diagnostics" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    started = [e for e in events if e["event"] == "started" and e["rule"] == "grpo_is_ratio_collapse"]
    assert len(started) == 1
    assert "    " + started[0]["message"] in done.stdout.splitlines()


def test_section_3_shows_the_rule_file_and_each_condition_firing(whole):
    done, _ = whole
    section = done.stdout.split("\n== 3/7")[1].split("\n== 4/7")[0]
    rule = yaml.safe_load(IS_RULE.read_text(encoding="utf-8"))
    assert f"    name: {rule['name']}" in section
    assert f'    condition: "{rule["condition"]}"' in section
    table = section.split("The condition language")[1].splitlines()
    conditions = [text.strip() for text in table if text.startswith("    ") and not text.startswith("     ")]
    assert conditions[:4] == ["< 0.5", "not range(0.8, 1.2)", "drop(50%)", "spike(5x)"]
    assert " and " in conditions[4] and "mean(" in conditions[4]  # a full expression
    assert conditions[5] == "< 0.9 for 50 steps"
    for condition in conditions:  # each fires on the run of section 2, by the batch engine
        assert "fires at steps" in table[table.index("    " + condition) + 1], condition


def test_section_5_lint_points_a_caret_at_the_broken_condition(whole):
    done, out = whole
    section = done.stdout.split("\n== 5/7")[1].split("\n== 6/7")[0]
    lines = section.splitlines()
    error = next(i for i, text in enumerate(lines) if "error[E108]" in text)
    assert "s5-contributed-rules" in lines[error] and lines[error].split(":")[1] == "5"
    quoted, caret = lines[error + 1], lines[error + 2]
    assert quoted.strip() == 'condition: "reward drop(50%)"'
    assert re.fullmatch(r"\s*\^+", caret)
    assert caret.index("^") == quoted.index('"reward') + 1  # under the first character of the condition
    assert "exit status 1" in section and "exit status 0" in section  # broken, then fixed


def test_section_6_writes_the_html_report_where_it_says(whole):
    done, out = whole
    said = re.search(r"^  HTML report \(.*\): (.+)$", done.stdout, re.M)
    assert said is not None
    report = Path(said.group(1))
    assert report == (out / "s6-audit" / "report.html").resolve()
    assert report.is_file() and "grpo_is_ratio_collapse" in report.read_text(encoding="utf-8")


def test_section_7_names_each_switch(whole):
    done, _ = whole
    section = done.stdout.split("\n== 7/7")[1]
    for switch in ("resume_policy=", "postmortem=", "system_metrics=", "notify="):
        assert switch in section


def test_section_4_alone(tmp_path):
    done = run_demo(tmp_path, "--section", "4", merged=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "== 4/7  " in done.stdout
    assert not re.search(r"^== [123567]/7", done.stdout, re.M)
    rows = training_rows(tmp_path / "s4-inline" / "diagnostics" / "metrics.jsonl")
    below = [row for row in rows if row[IS_KEY] < 0.5]
    streak_start = below[0]["step"]
    firing = next(row for row in below if row["step"] - streak_start >= 20 - 1)  # `for 20 steps`, §3.6
    lines = done.stdout.splitlines()
    head = f"[HIGH] is_ratio_low at step {firing['step']}"
    assert head in lines
    assert lines[lines.index(head) + 1] == f"    IS ratio collapsed to {firing[IS_KEY]:.2f}"


@pytest.mark.parametrize("value", ["9", "0", "two"])
def test_a_section_that_does_not_exist_is_a_usage_error(tmp_path, value):
    done = run_demo(tmp_path, "--section", value)
    assert done.returncode == 2
    assert f"argument --section: {value!r} is not a section: give 1 to 7" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_help_lists_the_sections_and_options(tmp_path):
    done = run_demo(tmp_path, "--help")
    assert done.returncode == 0
    for text in ("--section N", "--real", "--out", "1. One line of integration", "7. Also in the callback"):
        assert text in done.stdout


@pytest.mark.slow
def test_real_tiny_grpo_trainer_run(tmp_path):
    done = run_demo(tmp_path, "--section", "7", "--real", merged=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "== --real: " in done.stdout
    assert re.search(r"^ruledsl: trainer grpo \(from the config class GRPOConfig\); \d+ rules apply$",
                     done.stdout, re.M)
    rows = [json.loads(line) for line in
            (tmp_path / "real-grpo" / "run" / "diagnostics" / "metrics.jsonl").read_text().splitlines()]
    training = [row for row in rows if "completions/clipped_ratio" in row]
    assert [row["step"] for row in training] == [1, 2, 3, 4]  # a real Trainer logged four steps
    # the inline alert of --real, on the real values: a random tiny model rarely ends before 16 tokens
    clipped = [row for row in training if row["completions/clipped_ratio"] > 0.5]
    assert clipped, training
    lines = done.stdout.splitlines()
    head = f"[MEDIUM] completions_clipped at step {clipped[0]['step']}"
    assert head in lines
    assert lines[lines.index(head) + 1].startswith(f"    {clipped[0]['completions/clipped_ratio']:.0%} of")
    assert re.search(r"^  4 real steps in [\d.]+ s", done.stdout, re.M)
