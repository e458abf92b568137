"""`ruledsl audit` plumbing through the command (in-process, see cli_helpers): the trainer of
each run, exit codes, JSON records, the streaming engine, and the progress line."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from cli_helpers import EXAMPLES, audit_json, ruledsl
from log_writers import REAL_LOGS
from ruledsl.alerts import RECORD_FIELDS
from ruledsl.cli import progress as progress_module


def copy_example(run: str, target: Path) -> Path:
    shutil.copytree(EXAMPLES / run, target)
    return target


def rules_by_run(records: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in records:
        found.setdefault(r["run"], set()).add(r["rule"])
    return found


def test_each_run_gets_its_own_trainer_guessed_from_its_keys():
    records, stderr = audit_json(str(EXAMPLES))
    trainers = {r["run"]: r["trainer"] for r in records}
    assert trainers == {"dpo_stuck": "dpo", "grpo_is_collapse": "grpo", "sft_nan": "sft"}
    # with the trainer known, the SFT rule no longer fires on the DPO run (examples/README.md)
    assert "sft_loss_flat" not in rules_by_run(records)["dpo_stuck"]
    assert "trainer dpo guessed from the metric keys of 2 run(s): dpo_healthy, dpo_stuck" in stderr


def test_run_metadata_beats_the_guess_and_the_option_beats_both(tmp_path: Path):
    run = copy_example("dpo_stuck", tmp_path / "out" / "diagnostics")
    (run / "run.json").write_text(json.dumps({"trainer": "sft"}))
    records, stderr = audit_json(str(tmp_path))
    assert {r["trainer"] for r in records} == {"sft"} and "guessed" not in stderr
    assert rules_by_run(records)["out"] == {"sft_loss_flat"}  # no DPO rule for an SFT run

    records, _ = audit_json(str(tmp_path), "--trainer", "dpo")
    assert {r["trainer"] for r in records} == {"dpo"}
    assert "dpo_loss_stuck_ln2" in rules_by_run(records)["out"] and "sft_loss_flat" not in rules_by_run(records)["out"]


def test_unguessable_run_runs_the_rules_of_the_trainers_its_keys_fit(tmp_path: Path):
    # A real GRPO capture: RLOO logs the very same keys, so the guess is left open,
    # but a DPO rule has no business on it.
    shutil.copy(REAL_LOGS / "grpo.jsonl", tmp_path / "grpo.jsonl")
    records, stderr = audit_json(str(tmp_path), "--no-builtin",
                                 "--alert", "grpo: loss > -1e30 -> low: a GRPO rule",
                                 "--alert", "rloo: loss > -1e30 -> low: an RLOO rule",
                                 "--alert", "dpo: loss > -1e30 -> low: a DPO rule",
                                 "--alert", "all: loss > -1e30 -> low: a rule for every trainer")
    assert {r["trainer"] for r in records} == {None}
    assert sorted(r["message"] for r in records) == ["a GRPO rule", "a rule for every trainer", "an RLOO rule"]
    assert "trainer unknown (its keys fit several trainers (" in stderr
    assert "), the rules of any of them run" in stderr
    fitting = stderr.split("several trainers (")[1].split(")")[0].split(", ")
    assert {"grpo", "rloo"} <= set(fitting) and "dpo" not in fitting


def test_run_no_trainer_fits_runs_every_rule(tmp_path: Path):
    (tmp_path / "plain.jsonl").write_text("".join(f'{{"step": {s}, "loss": 1.0}}\n' for s in range(1, 4)))
    records, stderr = audit_json(str(tmp_path), "--no-builtin", "--alert", "dpo: loss > 0 -> low: a DPO rule")
    assert [r["message"] for r in records] == ["a DPO rule"]
    assert "no key that a known trainer logs), every rule runs" in stderr


def test_unreadable_metadata_is_said_and_the_guess_used(tmp_path: Path):
    run = copy_example("dpo_stuck", tmp_path / "out" / "diagnostics")
    (run / "run.json").write_text('{"trainer": ')
    records, stderr = audit_json(str(tmp_path))
    assert f"{run / 'run.json'}: unreadable run metadata" in stderr
    assert {r["trainer"] for r in records} == {"dpo"}


def test_fail_on_gates_on_the_worst_severity():
    assert ruledsl("audit", str(EXAMPLES), "--fail-on", "critical").returncode == 1  # sft_nan
    assert ruledsl("audit", str(EXAMPLES / "dpo_stuck"), "--fail-on", "critical").returncode == 0  # high only
    assert ruledsl("audit", str(EXAMPLES / "dpo_stuck"), "--fail-on", "high").returncode == 1
    result = ruledsl("audit", str(EXAMPLES), "--fail-on", "severe")
    assert result.returncode == 2 and "--fail-on takes one of" in result.stderr


def test_json_records_fields_and_order(tmp_path: Path):
    records, _ = audit_json(str(EXAMPLES))
    assert records and all(tuple(r) == RECORD_FIELDS for r in records)
    assert records == sorted(records, key=lambda r: (r["run"], r["first_step"], r["rule"]))
    output = tmp_path / "alerts.json"
    result = ruledsl("audit", str(EXAMPLES), "--format", "json", "--output", str(output))
    assert result.returncode == 0 and result.stdout == ""
    assert json.loads(output.read_text()) == records


def test_streaming_engine_gives_the_same_records():
    streamed, _ = audit_json(str(EXAMPLES), "--streaming")
    in_memory, _ = audit_json(str(EXAMPLES), "--no-streaming")
    assert streamed == in_memory and streamed


def test_nothing_readable_is_a_usage_error(tmp_path: Path):
    (tmp_path / "notes.jsonl").write_text("hello\n")
    result = ruledsl("audit", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'notes.jsonl'}:1: truncated or corrupt line" in result.stderr
    assert "no readable run" in result.stderr and "Traceback" not in result.stderr


def test_progress_line_only_when_asked_and_never_on_stdout(monkeypatch):
    monkeypatch.setattr(progress_module, "DELAY_SECONDS", 0.0)
    monkeypatch.setenv(progress_module.FORCE_VARIABLE, "1")
    stream = io.StringIO()  # not a terminal, but forced
    line = progress_module.ProgressLine("reading logs", stream)
    for done in range(1, 4):
        line(done, 3)
    line.close()
    assert stream.getvalue().endswith("] 3/3\n") and stream.getvalue().startswith("\rreading logs [")
    monkeypatch.delenv(progress_module.FORCE_VARIABLE)
    quiet = io.StringIO()
    line = progress_module.ProgressLine("reading logs", quiet)
    line(1, 1), line.close()
    assert quiet.getvalue() == ""  # not a terminal


def test_forced_progress_keeps_json_clean():
    records, _ = audit_json(str(EXAMPLES), env={"RULEDSL_PROGRESS": "1"})
    assert records  # stdout parsed as JSON: the progress line (if any) went to stderr


def test_a_file_of_another_kind_is_said(tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("step 1: fine\n")
    result = ruledsl("audit", str(notes), str(EXAMPLES / "sft_nan"), "--format", "json")
    assert result.returncode == 0 and f"warning: {notes}: not a log ruledsl reads" in result.stderr
    assert {r["run"] for r in json.loads(result.stdout)} == {"sft_nan"}


# ---------------------------------------------------------------- --config (docs/language.md §2)

BETA_RULE = """name: loss_over_beta
trainers: [all]
condition: "loss > config.scale * config.beta"
when: "config.loss_type == 'sigmoid'"
severity: low
message: "loss {value:.2f}"
"""


def beta_run(tmp_path: Path, config: dict) -> tuple[Path, Path]:
    """A callback output folder whose run.json keeps `config`, and a folder with BETA_RULE."""
    run = copy_example("dpo_stuck", tmp_path / "out" / "diagnostics")
    (run / "run.json").write_text(json.dumps({"trainer": "dpo", "config": config}))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "beta.yaml").write_text(BETA_RULE)
    return tmp_path / "out", tmp_path / "rules"


def fired_rules(out: Path, rules: Path, *config: str) -> set[str]:
    records, _ = audit_json(str(out), "--no-builtin", "--rules", str(rules), *config)
    return {r["rule"] for r in records}


def test_config_options_win_over_what_the_logs_keep(tmp_path: Path):
    out, rules = beta_run(tmp_path, {"beta": 0.1, "scale": 1, "loss_type": "sigmoid"})
    assert fired_rules(out, rules) == {"loss_over_beta"}  # dpo_stuck's loss ≈ 0.69 > 0.1
    assert fired_rules(out, rules, "--config", "beta=10") == set()
    assert fired_rules(out, rules, "--config", "loss_type=hinge") == set()  # `when` no longer holds
    assert fired_rules(out, rules, "--config", "beta=10", "--config", "beta=0.1") == {"loss_over_beta"}  # later wins
    assert fired_rules(out, rules, "--config", "beta=null") == set()  # removed: the rule cannot be evaluated


def test_config_file_and_options_together(tmp_path: Path):
    out, rules = beta_run(tmp_path, {"loss_type": "sigmoid"})
    settings = tmp_path / "settings.yaml"
    settings.write_text("beta: 0.1\nscale: 100\n")
    assert fired_rules(out, rules, "--config", str(settings)) == set()  # 0.69 < 10
    assert fired_rules(out, rules, "--config", str(settings), "--config", "scale=1") == {"loss_over_beta"}
    (tmp_path / "settings.json").write_text('{"beta": 0.1, "scale": 1}')
    assert fired_rules(out, rules, "--config", str(tmp_path / "settings.json")) == {"loss_over_beta"}


def test_malformed_config_options_are_usage_errors(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("beta: [0.1\n")
    (tmp_path / "list.json").write_text("[1]")
    for value, words in [("beta", "'beta' is not KEY=VALUE"), ("=1", "has no key before '='"),
                         (str(tmp_path / "missing.yaml"), f"{tmp_path / 'missing.yaml'}: cannot read"),
                         (str(tmp_path / "bad.yaml"), f"{tmp_path / 'bad.yaml'}:2:1: not valid YAML"),
                         (str(tmp_path / "list.json"), "holds a mapping of keys to values, this one holds a list")]:
        result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"), "--config", value)
        assert result.returncode == 2, (value, result.stderr)
        assert "error: --config: " in result.stderr and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
