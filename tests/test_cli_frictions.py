"""Issue 15, "the CLI says what it did": each newcomer's friction, run as a user runs the command.

Each test failed on the behaviour the issue describes (said in its docstring) and passes now.
Most run in this process (cli_helpers.ruledsl: the same commands, streams and exit statuses);
those marked `subprocess` run the real console script.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer.main

from cli_helpers import EXAMPLES, ROOT, ruledsl
from ruledsl import __version__ as ruledsl_version
from ruledsl.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # every command registered, present and future

# What a metavar may look like: upper-case words a person reads (`PATH…`, `[NAME=]TEXT`,
# `KEY=VALUE|FILE`, `N`), or the choices themselves (`table|json|csv`).
READABLE_METAVAR = re.compile(r"\[?[A-Z][A-Z0-9_]*(?:[=|\]\[]+[A-Z][A-Z0-9_]*)*\]?…?\]?")
CHOICES = re.compile(r"[a-z0-9_]+(?:\|[a-z0-9_]+)+")
# The names click and typer give types when an option declares no metavar.
TYPE_WORDS = {"TEXT", "INTEGER", "FLOAT", "BOOLEAN", "FILENAME", "DIRECTORY", "UUID", "CHOICE", "RANGE"}


def help_terms(help_text: str) -> list[str]:
    """The left-hand column of the Arguments and Options sections: `-t, --trainer ID`, `PATH…`."""
    terms, in_section = [], False
    for line in help_text.splitlines():
        if line in ("Arguments:", "Options:"):
            in_section = True
        elif not line.startswith("  "):  # a blank line or a heading ends the section
            in_section = False
        elif in_section and re.match(r"  \S", line):
            terms.append(re.split(r"\s{2,}", line.strip())[0])
    return terms


def metavars(term: str) -> list[str]:
    """The metavars of one term: what follows each flag, or the argument's name itself."""
    if not term.startswith("-"):
        return [term]
    found = []
    for declaration in re.split(r", | / ", term):
        flag, _, metavar = declaration.partition(" ")
        if metavar:
            found.append(metavar)
    return found


def unreadable(metavar: str) -> bool:
    words = set(re.findall(r"[A-Za-z]+", metavar))
    if "<" in metavar or ">" in metavar or (words and words <= TYPE_WORDS):  # `[NAME=]TEXT` is fine
        return True
    return not (READABLE_METAVAR.fullmatch(metavar) or CHOICES.fullmatch(metavar))


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_help_text_shows_metavars_a_person_reads(command):
    """Before: `paths... <list[Path]>`, `--max-charts <int range>`, `--trainer <str>`,
    `Usage: ruledsl audit [OPTIONS] {paths}...`."""
    result = ruledsl(*([command] if command else []), "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    terms = help_terms(result.stdout)
    assert any(t.startswith("--help") for t in terms)
    shown = [m for term in terms for m in metavars(term)]
    unread = [m for m in shown if unreadable(m)]
    assert not unread, f"give these a metavar= (ruledsl/cli/readable_help.py says how): {unread}\n{result.stdout}"
    usage = result.stdout.splitlines()[0]
    assert usage.startswith("Usage: ruledsl")
    pieces = usage.split("[OPTIONS]", 1)[1].split() if "[OPTIONS]" in usage else []
    assert not [p for p in pieces if p != "COMMAND" and p != "[ARGS]..." and unreadable(p.strip("[]"))], usage


def test_the_metavar_check_refuses_what_typer_shows_by_default():
    """The check above is no formality: each of these was in a help text before."""
    for shown in ("<list[Path]>", "<int range>", "<str>", "<path>", "paths...", "{paths}...", "INTEGER RANGE",
                  "TEXT", "rule_or_file"):
        assert unreadable(shown), shown
    for fine in ("PATH…", "[PATH…]", "N", "ID", "FILE", "[NAME=]TEXT", "KEY=VALUE|FILE", "URL", "table|json|csv"):
        assert not unreadable(fine), fine


# ---------------------------------------------------------------- --version


@pytest.mark.subprocess
def test_version_from_the_real_console_script():
    """It was there already (tests/test_version.py, in process): here as a new user runs it."""
    result = ruledsl("--version", subprocess=True)
    assert result.returncode == 0 and result.stdout == f"ruledsl {ruledsl_version}\n"


# ---------------------------------------------------------------- --output says where it wrote


@pytest.mark.subprocess
def test_audit_output_says_on_stderr_where_the_report_went(tmp_path: Path):
    """Before: `ruledsl audit examples/runs --output report.html` printed nothing (but notes)."""
    report = tmp_path / "report.html"
    result = ruledsl("audit", str(EXAMPLES), "--output", str(report), subprocess=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and report.is_file()
    assert f"report: 7 alert episode(s) as html written to {report}\n" in result.stderr


def test_lint_output_says_where_it_went_and_an_unwritable_one_is_a_usage_error(tmp_path: Path):
    """Before: silence; and `--output /no/such/dir/x` was a FileNotFoundError traceback."""
    report = tmp_path / "lint.json"
    result = ruledsl("lint", "--no-tests", "--format", "json", "--output", str(report), str(ROOT / "rules" / "dpo"))
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == f"report: json written to {report}\n"
    assert json.loads(report.read_text(encoding="utf-8")) == []
    result = ruledsl("lint", "--no-tests", "--output", str(tmp_path / "missing" / "lint.txt"), str(ROOT / "rules"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: cannot write the report to {tmp_path / 'missing' / 'lint.txt'}:")


@pytest.mark.parametrize("output_format", ["html", "lark"])
def test_grammar_output_file_says_where_it_went(tmp_path: Path, output_format: str):
    """Before: `ruledsl grammar --format html --output grammar.html` printed nothing."""
    page = tmp_path / f"grammar.{output_format}"
    result = ruledsl("grammar", "--format", output_format, "--output", str(page))
    assert result.returncode == 0 and result.stdout == "" and page.is_file()
    assert result.stderr == f"wrote {page}\n"


def test_grammar_output_dir_says_so_on_stderr(tmp_path: Path):
    """Before: the `wrote …` line went to stdout, where the reference goes without --output."""
    result = ruledsl("grammar", "--output", str(tmp_path))
    assert result.returncode == 0 and result.stdout == ""
    diagrams = sorted((tmp_path / "diagrams").glob("*.svg"))
    assert result.stderr == f"wrote {tmp_path / 'grammar.md'} and {len(diagrams)} diagrams in {tmp_path / 'diagrams'}\n"


# ---------------------------------------------------------------- grammar on stdout


def test_grammar_on_stdout_links_no_diagram_file_it_did_not_write(tmp_path: Path):
    """Before: `ruledsl grammar > grammar.md` held 49 image links to diagrams/*.svg, none of them written."""
    result = ruledsl("grammar", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "](diagrams/" not in result.stdout and not list(tmp_path.iterdir())
    assert "printed without its railroad diagrams" in result.stdout
    assert "--format markdown --output DIR" in result.stdout
    committed = (ROOT / "docs" / "grammar.md").read_text(encoding="utf-8")
    assert "](diagrams/" in committed  # the written copy keeps them
    kept = [line for line in committed.splitlines() if "](diagrams/" not in line]
    assert set(kept) <= set(result.stdout.splitlines())  # and nothing else is lost


# ---------------------------------------------------------------- ruledsl new -t all


@pytest.mark.parametrize("trainer", ["all", "common"])
def test_new_for_every_trainer_writes_where_its_help_says(tmp_path: Path, trainer: str):
    """`--dir`'s help: DIR/common/NAME.yaml for a rule of every trainer (-t all), as the builtin
    library keeps them (rules/common/); the help showed `--dir <path>` beside a text saying DIR."""
    help_text = " ".join(ruledsl("new", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "--dir DIR " in help_text and "DIR/common/NAME.yaml for a rule of every trainer (-t all)" in help_text
    result = ruledsl("new", "every_loss_high", "-t", trainer, "-m", "loss", "-c", "> 5", "--dir", "my_rules",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "my_rules" / "common" / "every_loss_high.yaml"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [written]
    assert result.stdout.startswith("wrote my_rules/common/every_loss_high.yaml\n")
    assert (ROOT / "rules" / "common").is_dir()
    assert ruledsl("lint", str(written), cwd=tmp_path).returncode == 0


# ---------------------------------------------------------------- lint: every problem in one pass

GOOD_RULE = "name: my_rule\ntrainers: [dpo]\nmetric: loss\ncondition: '> 5'\nseverity: high\nmessage: 'loss {value}'\n"
# a schema error (severity), an unknown trainer and a name the other file already uses
BROKEN_RULE = GOOD_RULE.replace("[dpo]", "[gpro]").replace("severity: high", "severity: hgh")


def test_lint_shows_a_schema_error_an_unknown_trainer_and_a_duplicate_name_at_once(tmp_path: Path):
    """Before: E020 and E010 only; the duplicate name (E003) appeared once the others were fixed."""
    (tmp_path / "a.yaml").write_text(GOOD_RULE, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(BROKEN_RULE, encoding="utf-8")
    result = ruledsl("lint", "--no-tests", "a.yaml", "b.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "b.yaml:1:7: error[E003] the rule name 'my_rule' is already used by a.yaml\n  name: my_rule\n" \
           "        ^^^^^^^\n" in result.stdout
    assert "b.yaml:2:12: error[E020] 'gpro' is not a TRL trainer id\n  trainers: [gpro]\n             ^^^^\n" \
           "  hint: did you mean 'grpo'?" in result.stdout
    assert "b.yaml:5:11: error[E010] severity: 'hgh' is not one of low, medium, high, critical\n" \
           "  severity: hgh\n            ^^^\n" in result.stdout
    assert result.stdout.endswith("2 file(s) checked: 3 error(s), 0 warning(s).\n")


def test_lint_reports_a_broken_file_reusing_a_builtin_name(tmp_path: Path):
    """The builtin library's names count too (E003 against rules/common/loss_spike.yaml)."""
    (tmp_path / "spike.yaml").write_text(BROKEN_RULE.replace("my_rule", "loss_spike"), encoding="utf-8")
    records = json.loads(ruledsl("lint", "--no-tests", "--format", "json", str(tmp_path)).stdout)
    assert sorted(r["code"] for r in records) == ["E003", "E010", "E020"]
    assert next(r for r in records if r["code"] == "E003")["line"] == 1


def test_lint_names_an_unknown_trainer_written_without_a_list(tmp_path: Path):
    """`trainers: gpro`: before, only "expected a list"; fixing that to `[gpro]` then gave E020."""
    (tmp_path / "r.yaml").write_text(GOOD_RULE.replace("[dpo]", "gpro"), encoding="utf-8")
    records = json.loads(ruledsl("lint", "--no-tests", "--format", "json", str(tmp_path)).stdout)
    assert [(r["code"], r["line"], r["column"]) for r in records] == [("E010", 2, 11), ("E020", 2, 11)]
    assert "expected a list" in records[0]["message"] and "did you mean 'grpo'" in records[1]["hint"]


# ---------------------------------------------------------------- inline alerts without TRAINERS:


@pytest.mark.parametrize(("alert", "hint"), [
    ("loss > 5 -> high: big loss", "for every trainer: `all: loss > 5 -> high: big loss`"),
    ("grpo loss > 5 -> high: big loss", "end the trainers with ':': `grpo: loss > 5 -> high: big loss`"),
    ("mean(loss, 3) > 5 -> high: x", "for every trainer: `all: mean(loss, 3) > 5 -> high: x`"),
    ("> 5 -> high: x", "e.g. `dpo, kto: loss > 1 -> high: loss too high`"),
])
def test_an_inline_alert_without_its_prefix_is_told_the_prefix(alert: str, hint: str):
    """Before: `expected ',' or ':' after 'loss', found '>'`, with no word of `TRAINERS:`."""
    for command in (("audit", str(EXAMPLES / "sft_nan"), "--alert", alert), ("explain", alert)):
        result = ruledsl(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "an inline alert starts with its trainers and ':' (TRAINERS: CONDITION -> SEVERITY: MESSAGE)" \
            in result.stderr
        assert f"  hint: {hint}" in result.stderr


def test_the_suggested_prefix_works():
    result = ruledsl("audit", str(EXAMPLES / "sft_nan"), "--no-builtin", "--alert", "all: loss > 5 -> high: big loss",
                     "--format", "json")
    assert result.returncode == 0 and [r["first_step"] for r in json.loads(result.stdout)] == [510]


# ---------------------------------------------------------------- a rule file given as a log


def test_a_rule_file_given_to_audit_as_a_log_gets_a_hint_for_rules():
    """Before: "not a log ruledsl reads … skipped", then "no readable run", and nothing about --rules."""
    rule = "rules/dpo/dpo_margin_near_zero.yaml"
    result = ruledsl("audit", rule)
    assert result.returncode == 2
    assert f"hint: {rule} is YAML, not a log: did you mean --rules {rule}?" in result.stderr
    assert result.stderr.rstrip().endswith("error: no readable run under the given paths")


def test_a_folder_of_rules_beside_the_logs_gets_the_hint_and_the_logs_are_audited():
    """Before: `ruledsl audit examples/runs/dpo_stuck rules/dpo` audited the log and said nothing
    of the folder (its rules were not used)."""
    result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"), "rules/dpo", "--format", "json")
    assert result.returncode == 0
    assert "hint: rules/dpo holds rule files and no log: did you mean --rules rules/dpo?" in result.stderr
    assert {r["rule"] for r in json.loads(result.stdout)} == {"dpo_loss_stuck_ln2"}
    assert "hint:" not in ruledsl("audit", str(EXAMPLES)).stderr  # logs alone: no hint


def test_the_audit_summary_counts_the_rules_each_run_is_checked_with():
    """Before: `Audited 1 run(s) with 59 rule(s)` for one DPO run: every rule loaded."""
    for_dpo = len(json.loads(ruledsl("list", "--trainer", "dpo", "--format", "json").stdout))
    result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"))
    assert result.stdout.startswith(f"Audited 1 run(s) with {for_dpo} rule(s) for trainer dpo.\n")
    mixed = ruledsl("audit", str(EXAMPLES)).stdout.splitlines()[0]
    assert mixed.startswith("Audited 4 run(s), each with the rules for its trainer: 2 dpo with ")
