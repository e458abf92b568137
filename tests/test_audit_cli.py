"""`ruledsl audit` plumbing through the command (in-process, see cli_helpers): the trainer of
each run, exit codes, JSON records, the streaming engine, the progress line, the coverage
(docs/language.md §4) and the usage errors that keep an audit from being silently empty."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

from cli_helpers import ANY_LOSS, EXAMPLES, audit_json, ruledsl
from log_writers import REAL_LOGS, write_jsonl
from ruledsl.alerts import COVERAGE_FIELDS, RECORD_FIELDS
from ruledsl.cli import progress as progress_module
from ruledsl.model.rule import rule_from_inline


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
    # skipped, and said: an input given and not read (exit status 3, docs/report.md)
    assert result.returncode == 3 and f"warning: {notes}: not a log ruledsl reads" in result.stderr
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


# ---------------------------------------------------------------- coverage (docs/language.md §4)

RULE_FILES = {
    # a key no run logs
    "spread.yaml": 'name: spread_low\ntrainers: [all]\nmetric: reward_spread\ncondition: "< 0.01"\n'
                   'severity: medium\nmessage: "no spread"\n',
    # a key one run logs
    "aux.yaml": 'name: aux_high\ntrainers: [all]\nmetric: aux_loss\ncondition: "> 5"\n'
                'severity: medium\nmessage: "aux {value}"\n',
    # a configuration key no run has
    "beta.yaml": 'name: loss_under_beta\ntrainers: [all]\ncondition: "loss < config.beta"\n'
                 'severity: low\nmessage: "loss under beta"\n',
    # a misspelled key (the runs log rewards/margins)
    "margin.yaml": 'name: margin_negative\ntrainers: [all]\nmetric: rewards/margin\ncondition: "< 0"\n'
                   'severity: high\nmessage: "margin {value}"\n',
}
MISSPELLED_ALERT = "all: los > 3 -> high: loss above 3"
LOSS_SEEN = f"loss_seen={ANY_LOSS}"


def coverage_archive(tmp_path: Path) -> tuple[Path, Path]:
    """Three small runs (alpha and beta log loss and rewards/margins, gamma loss and aux_loss)
    and a folder of RULE_FILES."""
    archive = tmp_path / "archive"
    for run, keys in [("alpha", {"loss": 0.7, "rewards/margins": 0.5}), ("beta", {"loss": 0.6, "rewards/margins": 0.2}),
                      ("gamma", {"loss": 0.9, "aux_loss": 1.0})]:
        write_jsonl(archive / f"{run}.jsonl", [(step, keys) for step in range(1, 7)])
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in RULE_FILES.items():
        (rules / name).write_text(text)
    return archive, rules


def audit_coverage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    archive, rules = coverage_archive(tmp_path)
    return ruledsl("audit", str(archive), "--no-builtin", "--trainer", "sft", "--rules", str(rules),
                   "--alert", MISSPELLED_ALERT, "--alert", LOSS_SEEN, *args)


def expected_coverage() -> list[dict]:
    misspelled = rule_from_inline(MISSPELLED_ALERT).name
    found = []
    for run in ("alpha", "beta", "gamma"):
        entries = [
            (misspelled, "no_key", "no value of los in the run; did you mean loss?"),
            ("loss_under_beta", "config_unknown", "the run's configuration has no beta"),
            ("margin_negative", "no_key", "no value of rewards/margin in the run"
             + ("; did you mean rewards/margins?" if run != "gamma" else "")),
            ("spread_low", "no_key", "no value of reward_spread in the run"),
        ]
        if run != "gamma":
            entries.append(("aux_high", "no_key", "no value of aux_loss in the run"))
        found += [{"run": run, "rule": rule, "metric": None, "reason": reason, "detail": detail}
                  for rule, reason, detail in sorted(entries)]
    return found


def test_coverage_file_holds_the_rules_never_evaluated_on_each_run(tmp_path: Path):
    target = tmp_path / "out" / "coverage.json"
    target.parent.mkdir()
    result = audit_coverage(tmp_path, "--coverage", str(target), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text()) == expected_coverage()
    assert all(tuple(r) == COVERAGE_FIELDS for r in expected_coverage())
    assert f"coverage: 14 record(s) written to {target}" in result.stderr
    assert [p.name for p in target.parent.iterdir()] == ["coverage.json"]  # no temporary file left
    assert {r["rule"] for r in json.loads(result.stdout)} == {"loss_seen"}  # stdout: the records alone

    streamed = tmp_path / "out" / "streamed.json"
    assert audit_coverage(tmp_path / "s", "--coverage", str(streamed), "--streaming").returncode == 0
    assert streamed.read_text() == target.read_text()

    unwritable = audit_coverage(tmp_path / "u", "--coverage", str(tmp_path / "missing" / "coverage.json"))
    assert unwritable.returncode == 2 and "cannot write the coverage to" in unwritable.stderr


def test_table_ends_with_what_was_not_evaluated(tmp_path: Path):
    result = audit_coverage(tmp_path)
    assert result.returncode == 0, result.stderr
    misspelled = rule_from_inline(MISSPELLED_ALERT).name
    section = result.stdout.split("\nNot evaluated ")[1]
    assert section.splitlines() == [
        "(3 config_unknown, 11 no_key):",
        "  loss_under_beta: config_unknown on 3 runs (alpha, beta, gamma): the run's configuration has no beta",
        "  aux_high: no_key on 2 runs (alpha, beta): no value of aux_loss in the run",
        f"  {misspelled}: no_key on 3 runs (alpha, beta, gamma): no value of los in the run; did you mean loss?",
        "  margin_negative: no_key on 2 runs (alpha, beta): no value of rewards/margin in the run; "
        "did you mean rewards/margins?",
        "  margin_negative: no_key on run gamma: no value of rewards/margin in the run",
        "  spread_low: no_key on 3 runs (alpha, beta, gamma): no value of reward_spread in the run",
    ]


def test_rules_that_do_not_apply_are_shown_apart_and_never_fail(tmp_path: Path):
    archive, rules = coverage_archive(tmp_path)
    (tmp_path / "when").mkdir()
    (tmp_path / "when" / "vllm.yaml").write_text(
        'name: vllm_loss\ntrainers: [all]\nmetric: loss\ncondition: "> 100"\nwhen: "config.use_vllm == true"\n'
        'severity: low\nmessage: "x"\n')
    result = ruledsl("audit", str(archive), "--no-builtin", "--trainer", "sft", "--rules", str(tmp_path / "when"),
                     "--config", "use_vllm=false", "--strict-coverage")
    assert result.returncode == 0, result.stderr
    assert "Not evaluated" not in result.stdout
    assert result.stdout.endswith("\nDoes not apply (3 when_false: `when` is false):\n"
                                  "  vllm_loss: on 3 runs (alpha, beta, gamma): when: config.use_vllm == true "
                                  "is false on this run\n")


def test_strict_coverage_fails_on_rules_never_evaluated_and_fail_on_ignores_them(tmp_path: Path):
    assert audit_coverage(tmp_path, "--fail-on", "high").returncode == 0  # loss_seen is low; no alert is high
    strict = audit_coverage(tmp_path / "strict", "--strict-coverage")
    assert strict.returncode == 1
    assert "--strict-coverage: 5 rule(s) never evaluated on 3 run(s) (3 config_unknown, 11 no_key)" in strict.stderr
    archive, _ = coverage_archive(tmp_path / "clean")
    clean = ruledsl("audit", str(archive), "--no-builtin", "--alert", LOSS_SEEN, "--strict-coverage")
    assert clean.returncode == 0 and "Not evaluated" not in clean.stdout


def test_a_path_that_does_not_exist_is_a_usage_error_unless_allowed(tmp_path: Path):
    missing = tmp_path / "runz"
    result = ruledsl("audit", str(EXAMPLES / "dpo_healthy"), str(missing), "--fail-on", "high")
    assert result.returncode == 2 and f"error: {missing}: no such file or directory" in result.stderr
    assert result.stdout == ""
    allowed = ruledsl("audit", str(EXAMPLES / "dpo_healthy"), str(missing), "--fail-on", "high", "--allow-missing")
    assert allowed.returncode == 0 and f"warning: {missing}: no such file or directory" in allowed.stderr


def test_rules_paths_without_a_rule_file_are_usage_errors(tmp_path: Path):
    archive, _ = coverage_archive(tmp_path)
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", archive):  # an empty folder, a folder of logs
        result = ruledsl("audit", str(archive), "--rules", str(path))
        assert result.returncode == 2, result.stderr
        assert f"error: --rules {path}: no rule file (*.yaml, *.yml) found in it" in result.stderr
    result = ruledsl("audit", str(archive), "--rules", str(tmp_path / "nope"))
    assert result.returncode == 2 and f"--rules {tmp_path / 'nope'}: no such file or directory" in result.stderr


def test_misspelled_metric_on_an_example_run_says_what_it_meant(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "margin.yaml").write_text(RULE_FILES["margin.yaml"])
    coverage = tmp_path / "coverage.json"
    result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"), "--no-builtin", "--rules", str(tmp_path / "rules"),
                     "--alert", MISSPELLED_ALERT, "--coverage", str(coverage))
    assert result.returncode == 0, result.stderr
    assert "Audited 1 run(s) with 2 rule(s)" in result.stdout and "No alerts." in result.stdout
    assert {(r["rule"], r["reason"], r["detail"]) for r in json.loads(coverage.read_text())} == {
        ("margin_negative", "no_key", "no value of rewards/margin in the run; did you mean rewards/margins?"),
        (rule_from_inline(MISSPELLED_ALERT).name, "no_key", "no value of los in the run; did you mean loss?")}


def test_named_alerts_name_their_records(tmp_path: Path):
    records, _ = audit_json(str(EXAMPLES / "dpo_stuck"), "--no-builtin", "--alert", LOSS_SEEN,
                            "--alert", "all: loss == 0.5 -> low: a plain one with == and a=b in it")
    assert {r["rule"] for r in records} == {"loss_seen"}
    assert all(r["message"] == "loss seen" for r in records)
    for alerts, words in [
        ([LOSS_SEEN, "loss_seen=all: loss > 1 -> low: again"], "the rule name 'loss_seen' is already used by --alert"),
        (["dpo_loss_stuck_ln2=all: loss > 1 -> low: x"], "the rule name 'dpo_loss_stuck_ln2' is already used by a "
                                                         "loaded rule"),
        (["Loss-Seen=all: loss > 1 -> low: x"], "'Loss-Seen' before '=' is not a rule name"),
    ]:
        result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"), *(a for text in alerts for a in ("--alert", text)))
        assert result.returncode == 2 and words in result.stderr, result.stderr


def test_unknown_trainer_is_a_usage_error_with_a_suggestion():
    for given in ("dop", "DPO"):
        result = ruledsl("audit", str(EXAMPLES / "dpo_healthy"), "--trainer", given)
        assert result.returncode == 2 and result.stdout == ""
        assert f"error: --trainer: '{given}' is not a TRL trainer id; did you mean 'dpo'?" in result.stderr
