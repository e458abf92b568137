"""DiagnosticsCallback pieces that need no training run: detection, validation, output.

The callback subclasses transformers' TrainerCallback: the tests that build one are marked `trl`
and skipped without transformers; the rest need no extra."""

import enum
import io
import json
import math
import subprocess
import sys

import pytest

import ruledsl
from ruledsl.integrations.console import alert_text, is_plain
from ruledsl.integrations.diagnostics_files import DiagnosticsFiles
from ruledsl.lang.errors import RuleSyntaxError
from ruledsl.model.loader import load_rules
from ruledsl.model.trainers import config_classes, trainer_id
from ruledsl.readers import read_archive


def _config(name, *bases):
    return type(name, bases or (object,), {})


def test_config_classes_map_to_trl_module_names():
    known = config_classes()
    assert known["GRPOConfig"] == "grpo"
    assert known["OnlineDPOConfig"] == "online_dpo"
    assert known["IWOPDConfig"] == "iw_opd"
    assert known["A2POConfig"] == "a2po"
    assert known["ServerDistillationConfig"] == "server_distillation"


def test_subclasses_count_and_unknown_is_none():
    grpo = _config("GRPOConfig")
    mine = _config("MyGRPO", grpo)
    deeper = _config("Deeper", mine)
    assert trainer_id(mine()) == "grpo"
    assert trainer_id(deeper) == "grpo"
    assert trainer_id(_config("TrainingArguments")()) is None
    # the nearest known ancestor wins: ServerDistillationConfig subclasses DistillationConfig
    server = _config("ServerDistillationConfig", _config("DistillationConfig"))
    assert trainer_id(server) == "server_distillation"


@pytest.mark.trl
def test_real_trl_config_classes_are_detected():
    transformers = pytest.importorskip("transformers")
    trl = pytest.importorskip("trl")

    class MyGRPO(trl.GRPOConfig):
        pass

    assert trainer_id(MyGRPO) == "grpo"
    assert trainer_id(trl.SFTConfig) == "sft"
    assert trainer_id(trl.RewardConfig) == "reward"
    assert trainer_id(transformers.TrainingArguments) is None


@pytest.mark.subprocess  # a fresh interpreter: this one has imported transformers already
def test_import_ruledsl_does_not_import_transformers():
    code = "import sys, ruledsl; print(sorted({'transformers', 'trl', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.trl
def test_the_callback_is_a_lazy_attribute_of_the_package():
    transformers = pytest.importorskip("transformers")

    from ruledsl.integrations.callback import DiagnosticsCallback

    assert ruledsl.DiagnosticsCallback is DiagnosticsCallback
    assert issubclass(DiagnosticsCallback, transformers.TrainerCallback)
    with pytest.raises(AttributeError):
        ruledsl.NoSuchThing


@pytest.mark.trl
def test_bad_custom_alert_raises_where():
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    with pytest.raises(RuleSyntaxError) as caught:
        DiagnosticsCallback(custom_alerts=["sft: loss > 0 -> high: ok", "grpo: kl >> 3 -> high: broken"])
    error = caught.value
    assert error.line == 1 and error.column == 11  # the second '>' of '>>'
    assert "grpo: kl >> 3" in str(error) and "^" in str(error)


@pytest.mark.trl
def test_constructor_validates_the_rest():
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    with pytest.raises(ValueError, match="stop_on"):
        DiagnosticsCallback(stop_on="urgent")
    with pytest.raises(ValueError, match="grad_norm_spike"):
        DiagnosticsCallback(rules=[{"name": "grad_norm_spike", "trainers": ["all"], "metric": "loss",
                                    "condition": "> 1", "severity": "low", "message": "dup"}])
    callback = DiagnosticsCallback(custom_alerts=["*: loss > 1 -> low: high loss"], include_builtin=False)
    assert [r.severity for r in callback.rules] == ["low"]
    assert len(DiagnosticsCallback().rules) == len(load_rules())


@pytest.mark.trl
def test_rules_dir_and_rules_add_to_the_library(tmp_path):
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    (tmp_path / "mine.yaml").write_text("name: my_rule\ntrainers: [sft]\nmetric: loss\ncondition: '> 9'\n"
                                        "severity: low\nmessage: high loss\n")
    callback = DiagnosticsCallback(rules_dir=tmp_path, rules=["dpo: loss > 1 -> low: x"])
    names = [r.name for r in callback.rules]
    assert names[:len(load_rules())] == [r.name for r in load_rules()]
    assert names[len(load_rules())] == "my_rule" and names[-1].startswith("inline_loss_")


def test_icons_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert is_plain(io.StringIO()) and not is_plain(Terminal())


def test_alert_text_with_and_without_icons():
    record = {"rule": "grpo_kl_high", "severity": "high", "first_step": 12, "message": "KL is 0.9"}
    assert alert_text(record, plain=False) == "🚨 [HIGH] grpo_kl_high at step 12\n    KL is 0.9"
    assert alert_text(record, plain=True) == "[HIGH] grpo_kl_high at step 12\n    KL is 0.9"
    assert alert_text({**record, "severity": "critical"}, plain=False).startswith("🔥 [CRITICAL]")


def test_files_are_appended_line_by_line_and_readable(tmp_path):
    files = DiagnosticsFiles(tmp_path / "diag")
    files.write_metrics(1, {"loss": 0.5, "grad_norm": math.nan})
    # visible on disk before close: a crash loses nothing already written
    text = (tmp_path / "diag" / "metrics.jsonl").read_text()
    assert json.loads(text) == {"step": 1, "loss": 0.5, "grad_norm": pytest.approx(math.nan, nan_ok=True)}
    files.write_event({"event": "started", "value": math.inf})
    assert json.loads((tmp_path / "diag" / "alerts.jsonl").read_text())["value"] == "inf"
    files.write_run({"trainer": "sft", "rules": ["a"]})
    assert json.loads((tmp_path / "diag" / "run.json").read_text())["trainer"] == "sft"
    files.close()
    again = DiagnosticsFiles(tmp_path / "diag")  # a resumed run appends
    again.write_metrics(2, {"loss": 0.4})
    again.close()
    assert len((tmp_path / "diag" / "metrics.jsonl").read_text().splitlines()) == 2
    archive = read_archive([tmp_path / "diag"])
    assert not archive.problems and [s.run for s in archive.sources] == ["diag"]
    assert archive.sources[0].frame.collect().height == 2


@pytest.mark.trl
def test_other_processes_stop_too_but_write_and_say_nothing(tmp_path, capsys):
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from ruledsl.integrations.callback import DiagnosticsCallback

    args = type("DPOConfig", (), {"output_dir": str(tmp_path), "report_to": [], "run_name": None})()
    callback = DiagnosticsCallback(custom_alerts=["dpo: loss > 1 -> high: loss {value}"], stop_on="high",
                                   include_builtin=False)
    for main in (False, True):
        state = SimpleNamespace(global_step=0, is_world_process_zero=main)
        control = SimpleNamespace(should_training_stop=False)
        callback.on_train_begin(args, state, control)
        for step, loss in enumerate([0.5, 2.0], start=1):
            state.global_step = step
            callback.on_log(args, state, control, logs={"loss": loss})
        callback.on_train_end(args, state, control)
        assert control.should_training_stop and callback.stopped["step"] == 2
        out = capsys.readouterr().out
        assert ("[HIGH]" in out) is main and (tmp_path / "diagnostics").exists() is main


class _Strategy(enum.Enum):
    STEPS = "steps"


class DPOConfig:
    """Stands in for TRL's DPOConfig: what the callback reads of it (`to_dict`, `output_dir`, …)."""

    def __init__(self, output_dir, **fields):
        self.output_dir, self.report_to, self.run_name = str(output_dir), [], None
        self.fields = {"output_dir": str(output_dir), **fields}

    def to_dict(self):
        return self.fields


BETA_RULE = {"name": "loss_high_for_beta", "trainers": ["dpo"], "condition": "loss > 10 * config.beta",
             "when": "config.loss_type == 'sigmoid'", "severity": "high", "message": "loss {value}"}


def _watch(callback, args, losses):
    from types import SimpleNamespace

    state = SimpleNamespace(global_step=0, is_world_process_zero=True)
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(args, state, control)
    for step, loss in enumerate(losses, start=1):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": loss})
    callback.on_train_end(args, state, control)


@pytest.mark.trl
def test_the_trainer_s_arguments_are_the_run_s_configuration(tmp_path, capsys):
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    args = DPOConfig(tmp_path, beta=0.1, loss_type="sigmoid", learning_rate=5e-7, report_to=["wandb", "tensorboard"],
                     eval_strategy=_Strategy.STEPS, model_init_kwargs={"torch_dtype": "bfloat16"},
                     max_length=None, max_grad_norm=math.inf)
    callback = DiagnosticsCallback(rules=[BETA_RULE], include_builtin=False)
    _watch(callback, args, [0.5, 2.0])
    info = json.loads((tmp_path / "diagnostics" / "run.json").read_text())
    assert info["config_class"] == "DPOConfig"
    assert info["config"] == {"output_dir": str(tmp_path), "beta": 0.1, "loss_type": "sigmoid",
                              "learning_rate": 5e-7, "report_to.0": "wandb", "report_to.1": "tensorboard",
                              "eval_strategy": "steps", "model_init_kwargs.torch_dtype": "bfloat16",
                              "max_grad_norm": "inf"}  # flat, nulls left out, JSON as in docs/language.md §4
    # the live engine got the same configuration: 2.0 > 10 × beta, and `when` holds
    started = [json.loads(line) for line in (tmp_path / "diagnostics" / "alerts.jsonl").read_text().splitlines()]
    assert [(e["rule"], e["first_step"]) for e in started if e["event"] == "started"] == [("loss_high_for_beta", 2)]
    assert "[HIGH] loss_high_for_beta at step 2" in capsys.readouterr().out
    # and the audit of the diagnostics folder reads it back from run.json
    archive = read_archive([tmp_path / "diagnostics"])
    assert archive.sources[0].config["report_to.1"] == "tensorboard" and archive.sources[0].config["beta"] == 0.1


@pytest.mark.trl
def test_a_configuration_that_cannot_be_read_never_stops_training(tmp_path, capsys):
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    class Broken(DPOConfig):
        def to_dict(self):
            raise RuntimeError("no dict today")

    callback = DiagnosticsCallback(rules=[BETA_RULE], custom_alerts=["dpo: loss > 1 -> low: loss {value}"],
                                   include_builtin=False)
    _watch(callback, Broken(tmp_path), [0.5, 2.0])
    err = capsys.readouterr().err
    assert "the run's configuration failed (RuntimeError: no dict today)" in err and "training goes on" in err
    info = json.loads((tmp_path / "diagnostics" / "run.json").read_text())
    assert info["config"] == {}
    # the rules that need no configuration still run; the one that does is not evaluated
    assert [r["rule"].startswith("inline_") for r in callback.started] == [True]
