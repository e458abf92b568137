"""The healthy and failure corpus (tests/data/corpus/, written by tools/make_corpus.py).

Reader level: the committed corpus is what the generator writes, every run is read with its own
trainer and configuration and without a read warning, every TRL 1.16 trainer has a healthy run,
and the manifest's failure entries are well formed.

Alert level (the builtin library against the corpus), in separate tests at the end: no alert of
medium severity or above on a healthy run, and every rule a failure run lists in `expect_rules`
fires at or after its onset and by its `detect_by`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from cli_helpers import ROOT, audit_json
from ruledsl.alerts import at_least
from ruledsl.model import trainers
from ruledsl.model.loader import load_rules
from ruledsl.readers import read_archive

CORPUS = ROOT / "tests" / "data" / "corpus"
MANIFEST = CORPUS / "manifest.yaml"

# Every trainer TRL 1.16 ships (trl/trainer/ and trl/experimental/, /work/scratch/trl116/inventory.md)
STABLE = ("sft", "dpo", "grpo", "rloo", "kto", "reward", "distillation")
EXPERIMENTAL = ("a2po", "async_distillation", "async_grpo", "cpo", "gkd", "gmpo", "gold", "iw_opd", "online_dpo",
                "orpo", "sdft", "sdpo", "server_distillation", "tpo")
BIG = ("sft", "dpo", "grpo", "rloo", "kto", "reward")  # more than one healthy variant each
# failures that are not about one trainer: the corpus has each under at least two trainers
GENERIC = ("grad_norm_nonfinite", "grad_norm_zero", "grad_norm_spike", "loss_spike", "loss_zero", "no_learning",
           "overfitting", "lr_zero_early")

ENTRY_FIELDS = {"path", "trainer", "kind", "scenario", "logging_steps", "max_steps", "config"}
FAILURE_FIELDS = {"failure", "onset_step", "detect_by", "expect_rules"}


@functools.cache
def manifest() -> list[dict]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["runs"]


@functools.cache
def builtin_rule_names() -> frozenset[str]:
    return frozenset(rule.name for rule in load_rules(include_builtin=True))


def runs_of(kind: str) -> list[dict]:
    return [entry for entry in manifest() if entry["kind"] == kind]


def rows(entry: dict) -> list[dict]:
    text = (CORPUS / entry["path"] / "diagnostics" / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def warmup_end(config: dict) -> int:
    """The first step at the peak learning rate: warmup_steps < 1 is a ratio (transformers 5)."""
    warmup = config.get("warmup_steps", 0)
    return (math.ceil(warmup * config["max_steps"]) if 0 < warmup < 1 else int(warmup)) + 1


# ---------------------------------------------------------------- (a) the corpus is what the generator writes


def load_generator():
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "tools" / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_corpus", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_committed_corpus_is_what_the_generator_writes(capsys):
    assert load_generator().main(["--check"]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------- (b) read with the right trainer, no warnings


@pytest.fixture(scope="module")
def archive():
    return read_archive([CORPUS])


@pytest.fixture(scope="module")
def audited() -> tuple[list[dict], str]:
    """`ruledsl audit tests/data/corpus` with the builtin library: its records and its stderr."""
    return audit_json(str(CORPUS))


def test_every_run_is_read_without_a_problem(archive):
    assert [str(problem) for problem in archive.problems] == []
    assert archive.notes == []
    assert sorted(source.run for source in archive.sources) == sorted(entry["path"] for entry in manifest())


def test_every_run_has_the_manifest_trainer_from_its_run_json(archive):
    by_path = {entry["path"]: entry for entry in manifest()}
    wrong = []
    for source in archive.sources:
        notes: list[str] = []
        choice = trainers.choose(None, source.metadata, source.keys, notes)
        if (choice.trainer, choice.origin, notes) != (by_path[source.run]["trainer"], "metadata", []):
            wrong.append(f"{source.run}: {choice.trainer} ({choice.origin}) {notes}")
    assert wrong == []


def test_every_run_has_its_manifest_configuration(archive):
    by_path = {entry["path"]: entry for entry in manifest()}
    for source in archive.sources:
        config = by_path[source.run]["config"]
        assert source.config == config, source.run
        assert (config["logging_steps"], config["max_steps"]) == \
            (by_path[source.run]["logging_steps"], by_path[source.run]["max_steps"])


def test_the_audit_command_reads_every_run_without_a_warning_or_a_guess(audited):
    _, stderr = audited
    lines = [line for line in stderr.splitlines() if line.startswith(("warning:", "note: trainer"))]
    assert lines == []


# ---------------------------------------------------------------- (c) every TRL 1.16 trainer


def test_every_trl_trainer_has_a_healthy_run():
    healthy = defaultdict(int)
    for entry in runs_of("healthy"):
        healthy[entry["trainer"]] += 1
    assert sorted(set(STABLE + EXPERIMENTAL) - set(healthy)) == []
    assert [t for t in BIG if healthy[t] < 3] == []


def test_generic_failures_are_under_several_trainers():
    trainers_of = defaultdict(set)
    for entry in runs_of("failure"):
        trainers_of[entry["failure"]].add(entry["trainer"])
    assert {failure: sorted(trainers_of[failure]) for failure in GENERIC if len(trainers_of[failure]) < 2} == {}


# ---------------------------------------------------------------- (d) the manifest's entries


def test_manifest_entries_are_well_formed():
    entries = manifest()
    assert len({entry["path"] for entry in entries}) == len(entries)
    for entry in entries:
        extra = FAILURE_FIELDS if entry["kind"] == "failure" else set()
        assert set(entry) == ENTRY_FIELDS | extra, entry["path"]
        assert entry["kind"] in ("healthy", "failure")
        assert entry["path"] == f"{entry['kind']}/{entry['trainer']}/{entry['path'].split('/')[-1]}"
        assert isinstance(entry["scenario"], str) and entry["scenario"]
        assert 300 <= entry["max_steps"] <= 2000, entry["path"]
        assert entry["logging_steps"] in (1, 10)
        config = json.loads((CORPUS / entry["path"] / "diagnostics" / "run.json").read_text())
        assert config["trainer"] == entry["trainer"]


@pytest.mark.parametrize("entry", runs_of("failure"), ids=lambda entry: entry["path"])
def test_failure_entry_is_well_formed(entry):
    onset, detect_by, max_steps = entry["onset_step"], entry["detect_by"], entry["max_steps"]
    assert isinstance(entry["failure"], str) and entry["failure"].isidentifier()
    assert all(isinstance(value, int) for value in (onset, detect_by))
    # mid-run, after warm-up, with room for the alert before the end
    assert warmup_end(entry["config"]) <= onset < detect_by <= max_steps
    assert onset >= 20 and max_steps - onset >= 100
    # a training row shows the failure by detect_by
    logged = [row["step"] for row in rows(entry) if "learning_rate" in row]
    assert any(onset <= step <= detect_by for step in logged)
    assert isinstance(entry["expect_rules"], list)
    assert all(isinstance(rule, str) for rule in entry["expect_rules"])
    assert set(entry["expect_rules"]) <= builtin_rule_names()


def test_manifest_says_why_each_detect_by():
    """A comment block right above every `detect_by:` line, opening with "# detect_by:"."""
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("detect_by:"):
            above = i - 1
            while lines[above].strip().startswith("#   "):
                above -= 1
            assert lines[above].strip().startswith("# detect_by: "), f"manifest.yaml line {i + 1}"


# ---------------------------------------------------------------- the builtin library against the corpus


@pytest.fixture(scope="module")
def records(audited) -> list[dict]:
    return audited[0]


def medium_or_worse(records: list[dict], path: str) -> list[str]:
    return [f"{r['run']}: {r['rule']} ({r['severity']}) steps {r['first_step']}-{r['last_step']}, value {r['value']}"
            for r in records if r["run"] == path and at_least(r["severity"], "medium")]


def test_healthy_runs_raise_no_medium_or_worse_alert(records):
    found = [alert for entry in runs_of("healthy") for alert in medium_or_worse(records, entry["path"])]
    assert found == []


def test_failure_runs_alert_by_detect_by(records):
    missed = []
    for entry in runs_of("failure"):
        for rule in entry["expect_rules"]:
            starts = [r["first_step"] for r in records if r["run"] == entry["path"] and r["rule"] == rule]
            if not starts:
                missed.append(f"{entry['path']}: {rule} never fires")
            elif min(starts) < entry["onset_step"]:
                missed.append(f"{entry['path']}: {rule} fires at {min(starts)}, before the onset")
            elif min(starts) > entry["detect_by"]:
                missed.append(f"{entry['path']}: {rule} first fires at {min(starts)}, after {entry['detect_by']}")
    assert missed == []


def test_every_builtin_rule_is_expected_on_some_failure_run():
    expected = {rule for entry in runs_of("failure") for rule in entry["expect_rules"]}
    assert sorted(builtin_rule_names() - expected) == []


def test_corpus_stays_small():
    size = sum(path.stat().st_size for path in Path(CORPUS).rglob("*") if path.is_file())
    assert size < 15_000_000


@pytest.mark.subprocess
@pytest.mark.parametrize("log", sorted(Path(__file__).parent.joinpath("data", "real_trl_logs").glob("*.jsonl")),
                         ids=lambda path: path.stem)
def test_real_trl_captures_raise_no_medium_or_worse_alert(log: Path):
    """The real TRL 1.16 captures (tiny model, healthy by construction) beside the simulated corpus."""
    trainer = log.stem.removesuffix("_chat").removesuffix("_kl")
    records, _ = audit_json(str(log), "--trainer", trainer)
    assert [r["rule"] for r in records if at_least(r["severity"], "medium")] == []
