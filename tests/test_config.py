"""A run's configuration (docs/language.md §2): its shape (ruledsl.model.config), and every place an audit
finds it, read from real files: the callback's run.json, an MLflow file store's params (the real
mlflow client), a W&B run's config (config.yaml in W&B's layout, and a real offline run's
transaction log), the `args` text summary of a TensorBoard event file (tensorboard's writer, and
torch's SummaryWriter as transformers uses it). A configuration that cannot be read is a warning
naming its file, never a failed audit; `--config` wins over all of them."""

from __future__ import annotations

import enum
import json
import math
import sys
from pathlib import Path

import pytest

from cli_helpers import audit_json, ruledsl
from log_writers import (
    real_rows,
    write_jsonl,
    write_mlflow,
    write_state,
    write_table,
    write_tensorboard,
    write_torch_tensorboard,
    write_wandb_config,
    write_wandb_offline,
)
from ruledsl.model.config import (
    ConfigError,
    flatten,
    from_text,
    is_wandb_config,
    looks_like_config_file,
    merge,
    normalize,
    parse_override,
    read_config_file,
)
from ruledsl.readers import read_archive
from ruledsl.readers.mlflow_store import param_values

# ---------------------------------------------------------------- the shape of a configuration


class Strategy(enum.Enum):
    STEPS = "steps"


class Level(str, enum.Enum):  # transformers' ExplicitEnum is a str Enum like this one
    TOKEN = "token"


def test_flatten_spreads_nested_values_into_dotted_keys():
    numpy = pytest.importorskip("numpy")
    nested = {"beta": 0.1, "report_to": ["wandb", "tensorboard"], "eval_strategy": Strategy.STEPS,
              "importance_sampling_level": Level.TOKEN, "model_init_kwargs": {"torch_dtype": "bfloat16",
                                                                              "device_map": {"": 0}},
              "seeds": (1, 2), "max_length": None, "empty": [], "nothing": {}, "n": numpy.int64(3),
              "x": numpy.float32(0.5), "flag": numpy.bool_(True), "path": Path("out"), 3: "three"}
    assert flatten(nested) == {
        "beta": 0.1, "report_to.0": "wandb", "report_to.1": "tensorboard", "eval_strategy": "steps",
        "importance_sampling_level": "token", "model_init_kwargs.torch_dtype": "bfloat16",
        "model_init_kwargs.device_map.": 0, "seeds.0": 1, "seeds.1": 2, "max_length": None, "n": 3, "x": 0.5,
        "flag": True, "path": "out", "3": "three"}
    assert type(flatten({"n": numpy.int64(3)})["n"]) is int
    assert flatten({"a": [{"b": 1}]}, "top") == {"top.a.0.b": 1}


@pytest.mark.parametrize("text, value", [
    ("0.1", 0.1), ("1e-3", 0.001), ("3", 3), ("-2", -2), ("true", True), ("false", False), ("null", None),
    (' "quoted" ', "quoted"), ("sigmoid", "sigmoid"), ("True", "True"), ("[1, 2]", "[1, 2]"),
    ('{"a": 1}', '{"a": 1}'), ("NaN", "NaN"), ("nan", "nan"), ("Infinity", "Infinity"), ("", ""), ("0.1.2", "0.1.2"),
])
def test_text_is_read_as_a_json_scalar_where_it_parses_as_one(text, value):
    assert from_text(text) == value and type(from_text(text)) is type(value)


def test_from_text_leaves_values_that_are_not_text():
    assert from_text(0.5) == 0.5 and from_text(True) is True and from_text(None) is None


def test_normalize_flattens_drops_nulls_and_reads_text_when_asked():
    mapping = {"beta": "0.1", "use_vllm": "true", "max_length": None, "nested": {"gone": None, "kept": "x"}}
    assert normalize(mapping) == {"beta": "0.1", "use_vllm": "true", "nested.kept": "x"}
    assert normalize(mapping, text_values=True) == {"beta": 0.1, "use_vllm": True, "nested.kept": "x"}
    assert normalize({"null_text": "null"}, text_values=True) == {}  # null counts as a missing key


def test_merge_lets_overrides_win_and_null_remove_a_key():
    assert merge({"beta": 0.1, "loss_type": "sigmoid"}, {"beta": 0.5, "loss_type": None, "seed": 1}) == \
        {"beta": 0.5, "seed": 1}
    base = {"a": 1}
    merge(base, {"a": 2})
    assert base == {"a": 1}  # a new mapping: the logs' own configuration is left as it was


@pytest.mark.parametrize("text, entries", [
    ("beta=0.1", {"beta": 0.1}), ("learning_rate=1e-6", {"learning_rate": 1e-6}), ("max_steps=500", {"max_steps": 500}),
    ("use_vllm=true", {"use_vllm": True}), ("use_vllm=True", {"use_vllm": True}), ("use_vllm=no", {"use_vllm": False}),
    ("loss_type=sigmoid", {"loss_type": "sigmoid"}), ('seed="42"', {"seed": "42"}), ("seed='42'", {"seed": "42"}),
    ("beta=null", {"beta": None}), ("beta=~", {"beta": None}), ("run_name=", {"run_name": ""}),
    (" beta = 0.1 ", {"beta": 0.1}), ("a.b=1", {"a.b": 1}), ("url=http://h:1/x?a=b", {"url": "http://h:1/x?a=b"}),
    ("report_to=[wandb, tensorboard]", {"report_to.0": "wandb", "report_to.1": "tensorboard"}),
    ("model_init_kwargs={torch_dtype: bfloat16}", {"model_init_kwargs.torch_dtype": "bfloat16"}),
    ("report_to=[]", {"report_to": "[]"}), ("day=2024-01-01", {"day": "2024-01-01"}),
    ("odd=a: b: c", {"odd": "a: b: c"}), ("run_name=exp #3", {"run_name": "exp #3"}), ("open=[", {"open": "["}),
    ("x=.nan", {"x": ".nan"}),
])
def test_overrides_are_typed_as_json_then_yaml_scalars(text, entries):
    parsed = parse_override(text)
    assert parsed == entries
    assert [type(v) for v in parsed.values()] == [type(v) for v in entries.values()]


@pytest.mark.parametrize("text, words", [("beta", "is not KEY=VALUE"), ("=0.1", "has no key"),
                                         ("  =1", "has no key"), ("", "is not KEY=VALUE")])
def test_an_override_without_a_key_or_an_equals_sign_is_a_clear_error(text, words):
    with pytest.raises(ValueError, match=words):
        parse_override(text)


def test_what_names_a_config_file(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings").write_text("beta: 1\n")
    assert looks_like_config_file("settings")  # an existing file, whatever its name
    assert looks_like_config_file("missing.yaml") and looks_like_config_file("x.JSON")
    assert not looks_like_config_file("deepspeed=ds_config.json")  # KEY=VALUE whose value names a file
    assert not looks_like_config_file("beta=0.1") and not looks_like_config_file("nothing")
    assert not looks_like_config_file("x" * 5000)  # too long a name for a file


# ---------------------------------------------------------------- configuration files


def test_a_yaml_file_nested_or_flat(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("beta: 0.1\nreport_to: [wandb]\nmodel_init_kwargs:\n  torch_dtype: bfloat16\n"
                    "max_length: null\nlearning_rate: 1.0e-6\nloss_type: sigmoid\n")
    assert read_config_file(path) == {"beta": 0.1, "report_to.0": "wandb", "model_init_kwargs.torch_dtype": "bfloat16",
                                      "learning_rate": 1e-6, "loss_type": "sigmoid"}


def test_a_json_file(tmp_path: Path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"beta": 0.1, "use_vllm": False, "report_to": [], "seed": 0}))
    assert read_config_file(path) == {"beta": 0.1, "use_vllm": False, "seed": 0}


def test_w_and_b_s_config_yaml_is_unwrapped(tmp_path: Path):
    path = write_wandb_config(tmp_path / "run", {"beta": 0.1, "report_to": ["wandb"], "max_length": None})
    assert read_config_file(path) == {"beta": 0.1, "report_to.0": "wandb"}  # `_wandb` left out
    assert is_wandb_config({"lr": {"value": 1}, "beta": {"desc": None, "value": 2}})
    assert not is_wandb_config({"model": {"value": 1, "name": "x"}}) and not is_wandb_config({})


@pytest.mark.parametrize("name, text, words", [
    ("bad.yaml", "beta: [0.1\n", "bad.yaml:2:1: not valid YAML"),
    ("bad.json", '{"beta": 0.1,}', "bad.json:1:14: not valid JSON"),
    ("list.yaml", "- beta\n- 0.1\n", "holds a mapping of keys to values, this one holds a list"),
    ("text.yaml", "beta=0.1\n", "this one holds the text 'beta=0.1'"),
    ("number.json", "3", "this one holds the value 3 (int)"),
    ("binary.yaml", b"\xff\xfe\x00", "cannot read the configuration file"),
])
def test_a_malformed_file_is_an_error_naming_it(tmp_path: Path, name, text, words):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as caught:
        read_config_file(path)
    assert str(path) in str(caught.value)


def test_an_empty_file_configures_nothing(tmp_path: Path):
    (tmp_path / "empty.yaml").write_text("")
    assert read_config_file(tmp_path / "empty.yaml") == {}
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        read_config_file(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- sources, in an audit

ROWS = real_rows("dpo")  # a real DPO capture: loss from 0.69 down to 0.48 over steps 1-5
TRAINER_ARGS = {"output_dir": "out", "beta": 0.1, "loss_type": ["sigmoid"], "use_vllm": False, "max_length": 1024,
                "learning_rate": 5e-7, "report_to": ["tensorboard"], "eval_strategy": "steps",
                "hub_token": "<HUB_TOKEN>", "model_init_kwargs": {"torch_dtype": "bfloat16"}, "max_prompt_length": None}
FLAT_ARGS = {"output_dir": "out", "beta": 0.1, "loss_type.0": "sigmoid", "use_vllm": False, "max_length": 1024,
             "learning_rate": 5e-7, "report_to.0": "tensorboard", "eval_strategy": "steps", "hub_token": "<HUB_TOKEN>",
             "model_init_kwargs.torch_dtype": "bfloat16"}
# Fires on every row of the DPO capture (loss 0.69 … 0.48 > 4 × 0.1) of a sigmoid run with beta 0.1.
WHEN_RULE = """name: sigmoid_loss_high
trainers: [all]
condition: "loss > 4 * config.beta"
when: "config.loss_type.0 == 'sigmoid' and config.use_vllm == false"
severity: medium
message: "loss {value:.2f} on a sigmoid run"
"""


def one_config(paths: list[Path]) -> tuple[dict, list[str]]:
    """The configuration of the one run under `paths`, and the reading problems."""
    archive = read_archive(paths)
    assert len(archive.sources) == 1, archive.sources
    return archive.sources[0].config, [str(p) for p in archive.problems]


def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "sigmoid.yaml").write_text(WHEN_RULE)
    return folder


def fired(tmp_path: Path, target: Path, *options: str) -> list[tuple]:
    records, stderr = audit_json(str(target), "--no-builtin", "--rules", str(rules_dir(tmp_path)), *options)
    return [(r["rule"], r["first_step"], r["last_step"]) for r in records]


def test_run_json_of_the_callback(tmp_path: Path):
    diagnostics = tmp_path / "out" / "diagnostics"
    write_jsonl(diagnostics / "metrics.jsonl", ROWS)
    (diagnostics / "run.json").write_text(json.dumps({"trainer": "dpo", "config_class": "DPOConfig",
                                                      "config": FLAT_ARGS | {"max_grad_norm": "inf"}}))
    config, problems = one_config([tmp_path])
    assert config == FLAT_ARGS | {"max_grad_norm": "inf"} and not problems
    assert one_config([diagnostics / "metrics.jsonl"])[0] == config  # the log given alone, run.json beside it
    assert fired(tmp_path, tmp_path / "out") == [("sigmoid_loss_high", 1, 5)]


def test_run_json_without_a_config_is_a_run_without_one(tmp_path: Path):
    write_jsonl(tmp_path / "out" / "diagnostics" / "metrics.jsonl", ROWS)
    (tmp_path / "out" / "diagnostics" / "run.json").write_text(json.dumps({"trainer": "dpo"}))
    assert one_config([tmp_path]) == ({}, [])
    assert fired(tmp_path, tmp_path / "out") == []  # the rule needs config.beta: not evaluated


@pytest.mark.subprocess  # the MLflow store is written by the real client in a child process
def test_mlflow_params_as_the_trainer_s_mlflow_callback_logs_them(tmp_path: Path):
    params = {**TRAINER_ARGS, "model/num_parameters": 124439808, "run_name": "dpo/beta=0.1", "seed": "42"}
    (experiment_run,) = write_mlflow(tmp_path / "mlruns", {"dpo": ROWS}, {"dpo": params})
    params_dir = tmp_path / "mlruns" / experiment_run / "params"
    assert (params_dir / "use_vllm").read_text() == "False" and (params_dir / "max_prompt_length").read_text() == "None"
    assert (params_dir / "report_to").read_text() == "['tensorboard']"  # mlflow keeps str(value)
    assert (params_dir / "model" / "num_parameters").is_file()  # a key with `/`: a subdirectory
    config, problems = one_config([tmp_path])
    # Python's words and literals read back; other text as JSON scalars (the text "42" is the number 42)
    assert config == FLAT_ARGS | {"model/num_parameters": 124439808, "run_name": "dpo/beta=0.1", "seed": 42}
    assert not problems
    assert fired(tmp_path, tmp_path) == [("sigmoid_loss_high", 1, 5)]
    assert fired(tmp_path, tmp_path, "--config", "use_vllm=true") == []  # the command line wins


@pytest.mark.parametrize("text, entries", [
    ("True", {"k": True}), ("None", {"k": None}), ("0.1", {"k": 0.1}), ("sigmoid", {"k": "sigmoid"}),
    ("['a', 'b']", {"k.0": "a", "k.1": "b"}), ("{'x': 1, 'y': [2]}", {"k.x": 1, "k.y.0": 2}), ("[]", {}),
    ("(1, 2)", {"k.0": 1, "k.1": 2}), ("[not python", {"k": "[not python"}),
    ("{__import__('os')}", {"k": "{__import__('os')}"}),  # literals only: never code
    ("nan", {"k": "nan"}),
])
def test_mlflow_param_text(text, entries):
    assert param_values("k", text) == entries


def test_mlflow_param_file_that_cannot_be_read_is_said(tmp_path: Path):
    run_dir = tmp_path / "mlruns" / "0" / "abc"
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "meta.yaml").write_text("lifecycle_stage: active\n")
    losses = [f"1700000000000 {values['loss']} {step}\n" for step, values in ROWS if "loss" in values]
    (run_dir / "metrics" / "loss").write_text("".join(losses))
    (run_dir / "params").mkdir()
    (run_dir / "params" / "beta").write_text("0.1")
    (run_dir / "params" / "broken").write_bytes(b"\xff\xfe")
    config, problems = one_config([tmp_path])
    assert config == {"beta": 0.1}
    assert [p for p in problems if "broken" in p and "the run is audited without 'broken'" in p]


def training_dir(root: Path) -> Path:
    """An output directory as the Trainer leaves it: trainer_state.json (the log audited)."""
    write_state(root, ROWS)
    return root


def test_w_and_b_config_yaml_in_the_output_dir(tmp_path: Path):
    out = training_dir(tmp_path / "out")
    write_wandb_config(out / "wandb" / "run-20250101_120000-old1", {"beta": 0.5})
    write_wandb_config(out / "wandb" / "offline-run-20250102_090000-new2",
                       TRAINER_ARGS | {"vocab_size": 50257, "_name_or_path": "gpt2"})
    (out / "wandb" / "latest-run").symlink_to(out / "wandb" / "run-20250101_120000-old1")
    config, problems = one_config([tmp_path])
    assert config == FLAT_ARGS | {"vocab_size": 50257} and not problems  # the newest W&B run; `_…` left out
    assert fired(tmp_path, tmp_path) == [("sigmoid_loss_high", 1, 5)]


def test_run_json_wins_over_w_and_b_and_tensorboard(tmp_path: Path):
    out = tmp_path / "out"
    write_jsonl(out / "diagnostics" / "metrics.jsonl", ROWS)
    (out / "diagnostics" / "run.json").write_text(json.dumps({"trainer": "dpo", "config": {"beta": 0.3}}))
    write_tensorboard(out / "runs" / "Jan01_host", ROWS, args=json.dumps({"beta": 0.2, "seed": 7, "use_vllm": True}))
    write_wandb_config(out / "wandb" / "run-20250101_120000-abc", {"beta": 0.1, "seed": 1, "vocab_size": 8})
    config, problems = one_config([tmp_path])
    assert config == {"beta": 0.3, "seed": 7, "use_vllm": True, "vocab_size": 8} and not problems


@pytest.mark.subprocess  # W&B starts its own service process, offline too
def test_a_real_offline_w_and_b_run_keeps_its_config_in_the_run_file(tmp_path: Path):
    out = training_dir(tmp_path / "out")
    run_dir = write_wandb_offline(out, {"project_note": "x"}, TRAINER_ARGS)  # WANDB_DIR=the output dir
    assert not (run_dir / "files" / "config.yaml").exists()  # current W&B versions write none offline
    config, problems = one_config([tmp_path])
    assert config == FLAT_ARGS | {"project_note": "x"} and not problems
    assert fired(tmp_path, tmp_path) == [("sigmoid_loss_high", 1, 5)]


def test_a_damaged_w_and_b_run_file_is_a_warning(tmp_path: Path):
    pytest.importorskip("wandb")
    out = training_dir(tmp_path / "out")
    run_dir = out / "wandb" / "offline-run-20250101_120000-abc"
    run_dir.mkdir(parents=True)
    (run_dir / "run-abc.wandb").write_bytes(b"not a W&B file at all")
    config, problems = one_config([tmp_path])
    assert config == {} and any("run-abc.wandb: not a W&B run file; the run is audited without it" in p
                                for p in problems)


def test_without_the_wandb_package_the_run_file_is_said_and_skipped(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb.proto", None)  # as if wandb were not installed
    out = training_dir(tmp_path / "out")
    run_dir = out / "wandb" / "offline-run-20250101_120000-abc"
    run_dir.mkdir(parents=True)
    (run_dir / "run-abc.wandb").write_bytes(b":W&B\xbe\xe1\x00")
    config, problems = one_config([tmp_path])
    assert config == {} and any("pip install 'ruledsl[wandb]'" in p for p in problems)


def test_tensorboard_args_text_summary(tmp_path: Path):
    write_tensorboard(tmp_path / "runs" / "Jan01_host", ROWS, args=json.dumps(TRAINER_ARGS, indent=2))
    config, problems = one_config([tmp_path])
    assert config == FLAT_ARGS and not problems
    assert fired(tmp_path, tmp_path) == [("sigmoid_loss_high", 1, 5)]


def test_tensorboard_of_a_resumed_run_takes_the_newest_args(tmp_path: Path):
    logdir = tmp_path / "runs" / "Jan01_host"
    first = write_tensorboard(tmp_path / "first", ROWS[:2], args=json.dumps({"beta": 0.1, "seed": 1}))
    second = write_tensorboard(tmp_path / "second", ROWS[2:], args=json.dumps({"beta": 0.2}))
    logdir.mkdir(parents=True)
    first.rename(logdir / "events.out.tfevents.1000.host.1.0")  # the older file (by name, as the Trainer's)
    second.rename(logdir / "events.out.tfevents.2000.host.1.0")
    (tmp_path / "first").rmdir(), (tmp_path / "second").rmdir()
    assert one_config([tmp_path]) == ({"beta": 0.2}, [])  # the later file's, as a whole


@pytest.mark.trl  # torch
def test_tensorboard_args_written_by_torch_s_summary_writer(tmp_path: Path):
    write_torch_tensorboard(tmp_path / "runs" / "Jan01_host", ROWS, json.dumps(TRAINER_ARGS, indent=2))
    config, problems = one_config([tmp_path])
    assert config == FLAT_ARGS and not problems


@pytest.mark.parametrize("args, words", [
    ("{'beta': 0.1}", "the 'args' text summary is not JSON"),
    ('["beta"]', "the 'args' text summary holds list, not the trainer's arguments"),
])
def test_malformed_tensorboard_args_are_a_warning_and_the_run_is_audited(tmp_path: Path, args, words):
    event_file = write_tensorboard(tmp_path / "runs" / "Jan01_host", ROWS, args=args)
    records, stderr = audit_json(str(tmp_path), "--no-builtin", "--rules", str(rules_dir(tmp_path)),
                                 "--alert", "all: loss > 0 -> low: loss seen")
    assert f"warning: {event_file}: {words}" in stderr
    assert [r["message"] for r in records] == ["loss seen"]  # audited, without a configuration


def test_malformed_w_and_b_config_yaml_is_a_warning_naming_the_line(tmp_path: Path):
    out = training_dir(tmp_path / "out")
    path = write_wandb_config(out / "wandb" / "run-20250101_120000-abc", {"beta": 0.1})
    path.write_text(path.read_text() + "beta: [unclosed\n")
    records, stderr = audit_json(str(tmp_path), "--no-builtin", "--alert", "all: loss > 0 -> low: loss seen")
    assert f"warning: {path}:" in stderr and "W&B's config is not valid YAML" in stderr
    assert "the run is audited without it" in stderr and len(records) == 1


@pytest.mark.parametrize("text, words", [
    ('{"trainer": "dpo", "config": ["beta"]}', "'config' should be a mapping of keys to values, not list"),
    ('{"trainer": "dpo", "config": ', "unreadable run metadata"),
])
def test_malformed_run_json_is_a_warning(tmp_path: Path, text, words):
    write_jsonl(tmp_path / "out" / "diagnostics" / "metrics.jsonl", ROWS)
    (tmp_path / "out" / "diagnostics" / "run.json").write_text(text)
    records, stderr = audit_json(str(tmp_path), "--no-builtin", "--alert", "all: loss > 0 -> low: loss seen")
    assert words in stderr and len(records) == 1


def test_a_table_of_several_runs_has_only_the_command_line_s_configuration(tmp_path: Path):
    write_table(tmp_path / "runs.csv", ROWS, run="a")
    archive = read_archive([tmp_path])
    assert archive.sources[0].multi_run and archive.sources[0].config == {}
    assert fired(tmp_path, tmp_path / "runs.csv") == []
    assert fired(tmp_path, tmp_path / "runs.csv", "--config", "beta=0.1", "--config", "use_vllm=false",
                 "--config", "loss_type=[sigmoid]") == [("sigmoid_loss_high", 1, 5)]


def test_non_finite_and_odd_values_survive_the_round_trip(tmp_path: Path):
    diagnostics = tmp_path / "out" / "diagnostics"
    write_jsonl(diagnostics / "metrics.jsonl", ROWS)
    (diagnostics / "run.json").write_text(json.dumps({"config": {"a": math.nan, "b": None, "c": "x"}}))
    config, _ = one_config([tmp_path])
    assert set(config) == {"a", "c"} and math.isnan(config["a"])  # Python's json reads NaN back


def test_help_describes_the_option():
    result = ruledsl("audit", "--help")
    assert result.returncode == 0 and "--config" in result.stdout and "KEY=VALUE" in result.stdout


# ---------------------------------------------------------------- rule tests with a configuration (docs/language.md §7)

RULE_WITH_CASES = """name: margin_small_for_beta
trainers: [dpo]
metric: "rewards/*/std"
condition: "< 0.01"
when: "config.use_vllm == false"
severity: low
message: "{metric} at {value}"
tests:
  - name: fires on a run without vLLM, on the matched key
    series: {rewards/accuracy/std: [0.5, 0.001, 0.002]}
    config: {use_vllm: false, beta: null}
    expect: [{first_step: 1, last_step: 2, metric: rewards/accuracy/std}]
  - name: does not apply with vLLM
    series: {rewards/accuracy/std: [0.5, 0.001, 0.002]}
    config: {use_vllm: true}
    expect: []
  - name: a wrong metric is reported
    series: {rewards/accuracy/std: [0.5, 0.001]}
    config: {use_vllm: false}
    expect: [{first_step: 1, metric: rewards/other/std}]
"""


def test_rule_test_cases_carry_a_configuration_and_expect_a_metric(tmp_path: Path):
    from ruledsl.authoring.rule_tests import run_rule_tests
    from ruledsl.model.loader import load_rules

    (tmp_path / "rule.yaml").write_text(RULE_WITH_CASES)
    (rule,) = load_rules([tmp_path], include_builtin=False)
    results = run_rule_tests(rule)
    assert [r.passed for r in results] == [True, True, False], [r.failures for r in results]
    assert all("expected metric 'rewards/other/std', got 'rewards/accuracy/std'" in f for f in results[2].failures)
    assert len(results[2].failures) == 2  # both engines were given the case's configuration
