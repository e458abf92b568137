"""DiagnosticsCallback pieces that need no training run: detection, validation, output.

The callback subclasses transformers' TrainerCallback: the tests that build one are marked `trl`
and skipped without transformers; the rest need no extra."""

import enum
import io
import json
import math
import subprocess
import sys

import polars as pl
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
    assert "custom alert 2:" in str(error)  # which alert of the list


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
        err = capsys.readouterr().err  # alerts go to stderr, with the Trainer's warnings
        assert ("[HIGH]" in err) is main and (tmp_path / "diagnostics").exists() is main


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
                              "max_grad_norm": "inf",  # flat, nulls left out, JSON as in docs/language.md §4
                              # what the rank rules read (integrations/ranks.py): one process here
                              "ruledsl.world_size": 1, "ruledsl.straggler_factor": 1.5,
                              "ruledsl.memory_imbalance_factor": 1.5}
    # the live engine got the same configuration: 2.0 > 10 × beta, and `when` holds
    started = [json.loads(line) for line in (tmp_path / "diagnostics" / "alerts.jsonl").read_text().splitlines()]
    assert [(e["rule"], e["first_step"]) for e in started if e["event"] == "started"] == [("loss_high_for_beta", 2)]
    assert "[HIGH] loss_high_for_beta at step 2" in capsys.readouterr().err
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



# ================================================================ nothing silent: trainer ids, named alerts,
# what the callback says it runs, what run.json keeps of its rules and its coverage


def _callback(**kwargs):
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    return DiagnosticsCallback(**kwargs)


def _feed(callback, args, rows, main=True):
    """on_train_begin, one on_log per (step, logs), on_train_end; the control object."""
    from types import SimpleNamespace

    state = SimpleNamespace(global_step=0, is_world_process_zero=main)
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(args, state, control)
    for step, logs in rows:
        state.global_step = step
        callback.on_log(args, state, control, logs=dict(logs))
    callback.on_train_end(args, state, control)
    return control


def _events(directory):
    return [json.loads(line) for line in (directory / "alerts.jsonl").read_text().splitlines()]


@pytest.mark.trl
@pytest.mark.parametrize("given, suggested", [("dop", "dpo"), ("DPO", "dpo"), ("GRPOConfig", "grpo")])
def test_a_misspelt_trainer_fails_in_the_constructor_with_a_suggestion(given, suggested):
    with pytest.raises(ValueError, match=f"'{given}' is not a TRL trainer id; did you mean '{suggested}'"):
        _callback(trainer=given, custom_alerts=["sft: loss > 1 -> low: x"])


@pytest.mark.trl
def test_a_custom_alert_for_an_unknown_trainer_fails_in_the_constructor():
    for alerts, label, wrong, right in [({"mine": "dop: loss > 1 -> low: x"}, "custom alert 'mine'", "dop", "dpo"),
                                        (["sfft: loss > 1 -> low: x"], "custom alert 1", "sfft", "sft")]:
        with pytest.raises(ValueError) as caught:
            _callback(custom_alerts=alerts)
        assert f"{label}: '{wrong}' is not a TRL trainer id" in str(caught.value)
        assert f"did you mean '{right}'?" in str(caught.value)
    assert _callback(trainer="all", custom_alerts=["*: loss > 1 -> low: x", "all: loss > 2 -> low: y"])


@pytest.mark.trl
def test_custom_alerts_take_names():
    callback = _callback(custom_alerts={"loss_high": "dpo: loss > 1 -> high: loss {value}",
                                        "kl_big": "grpo: kl > 0.5 for 3 steps -> medium: KL {value:.2f}"},
                         include_builtin=False)
    assert [r.name for r in callback.rules] == ["loss_high", "kl_big"]
    assert callback.rules[1].sustain == 3 and callback.rules[1].trainers == ("grpo",)
    assert callback.custom_alerts == {"loss_high": "dpo: loss > 1 -> high: loss {value}",
                                      "kl_big": "grpo: kl > 0.5 for 3 steps -> medium: KL {value:.2f}"}
    listed = _callback(custom_alerts=["dpo: loss > 1 -> high: loss {value}"], include_builtin=False)
    assert [r.name for r in listed.rules] == [next(iter(listed.custom_alerts))]  # a generated name
    assert listed.rules[0].name.startswith("inline_loss_")


@pytest.mark.trl
def test_a_bad_custom_alert_or_name_fails_in_the_constructor_naming_it():
    with pytest.raises(RuleSyntaxError) as caught:
        _callback(custom_alerts={"fine": "sft: loss > 0 -> high: ok", "kl_big": "grpo: kl >> 3 -> high: broken"})
    assert "custom alert 'kl_big':" in str(caught.value) and caught.value.column == 11
    with pytest.raises(ValueError, match="custom alert name 'Loss High'"):
        _callback(custom_alerts={"Loss High": "sft: loss > 1 -> low: x"})
    with pytest.raises(ValueError, match="custom alert name ''"):
        _callback(custom_alerts={"": "sft: loss > 1 -> low: x"})
    with pytest.raises(ValueError, match="custom alert 'grad_norm_spike': a rule named 'grad_norm_spike' is already"):
        _callback(custom_alerts={"grad_norm_spike": "sft: grad_norm > 1 -> low: x"})
    with pytest.raises(TypeError, match="custom alert 'x': an inline alert is text, not int"):
        _callback(custom_alerts={"x": 3})
    with pytest.raises(ValueError, match="two rules are named|already loaded"):
        _callback(custom_alerts=["sft: loss > 1 -> low: x", "sft: loss > 1 -> low: x"])


DPO_ROWS = [(1, {"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.25}),
            (2, {"loss": 0.8, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5}),
            (3, {"loss": 2.0, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.75}),
            (3, {"train_runtime": 1.0, "train_loss": 1.1, "epoch": 0.75})]


@pytest.mark.trl
def test_named_alerts_are_named_everywhere(tmp_path, capsys, monkeypatch):
    """Console, alerts.jsonl, the stop reason, run.json and the trackers all use the alert's name."""
    import ruledsl.integrations.callback as module

    class Tracker:
        name = "fake"
        alerts: list = []
        stops: list = []
        summaries: list = []

        def alert(self, record):
            self.alerts.append(record["rule"])

        def stopped(self, reason, step):
            self.stops.append(reason)

        def summary(self, summary, text):
            self.summaries.append(text)

        def finish(self, text):
            self.text = text

    monkeypatch.setattr(module, "wanted", lambda args: ["fake"])
    monkeypatch.setattr(module, "make_tracker", lambda name, args: Tracker())
    callback = _callback(custom_alerts={"loss_high": "dpo: loss > 1 -> high: loss {value} at {step}"},
                         stop_on="high", include_builtin=False)
    control = _feed(callback, DPOConfig(tmp_path, beta=0.1), DPO_ROWS)
    captured = capsys.readouterr()
    assert "[HIGH] loss_high at step 3\n    loss 2.0 at 3" in captured.err
    assert "ruledsl: stopped training at step 3: rule loss_high (high) fired" in captured.out
    assert control.should_training_stop and callback.stopped["rule"] == "loss_high"
    events = _events(tmp_path / "diagnostics")
    assert [(e["event"], e["rule"]) for e in events] == [("started", "loss_high"), ("stop", "loss_high"),
                                                         ("episode", "loss_high")]
    assert Tracker.alerts == ["loss_high"] and "rule loss_high (high)" in Tracker.stops[0]
    assert len(Tracker.summaries) == 1 and "| `loss_high` | high | 1 | 3 | 3 |" in Tracker.summaries[0]
    info = json.loads((tmp_path / "diagnostics" / "run.json").read_text())
    assert info["stopped"]["rule"] == "loss_high" and info["rules"] == ["loss_high"]


@pytest.mark.trl
def test_run_json_keeps_the_rules_it_ran(tmp_path, monkeypatch):
    from ruledsl.integrations.diagnostics_files import callback_rules
    from ruledsl.model.rule import rule_from_inline

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_rule.yaml").write_text("name: my_rule\ntrainers: [dpo]\nmetric: loss\n"
                                                    "condition: '> 9'\nseverity: low\nmessage: high loss\n")
    monkeypatch.chdir(tmp_path)
    code_rule = {"name": "in_code", "trainers": ["all"], "metric": "grad_norm", "condition": "> 5",
                 "severity": "low", "message": "g {value}", "min_steps": 2}
    inline_rule = rule_from_inline("dpo: epoch > 0.6 -> low: late")
    callback = _callback(rules_dir="mine", rules=[code_rule, "all: loss < 0 -> low: negative", inline_rule],
                         custom_alerts={"loss_high": "dpo: loss > 1 -> high: loss {value}",
                                        "typo": "dpo: los > 1 -> low: never"})
    _feed(callback, DPOConfig(tmp_path / "out", beta=0.1), DPO_ROWS)
    info = json.loads((tmp_path / "out" / "diagnostics" / "run.json").read_text())
    assert info["include_builtin"] is True
    assert info["rules_dirs"] == [str((tmp_path / "mine").resolve())]  # resolved, not as given
    assert info["code_rules"] == [ruledsl.Rule.from_dict(code_rule).to_dict()]
    assert info["custom_alerts"] == {
        rule_from_inline("all: loss < 0 -> low: negative").name: "all: loss < 0 -> low: negative",
        inline_rule.name: "dpo: epoch > 0.6 -> low: late",
        "loss_high": "dpo: loss > 1 -> high: loss {value}", "typo": "dpo: los > 1 -> low: never"}
    assert info["trainer"] == "dpo" and info["trainer_from"] == "config_class"
    # read back: the very rules the callback ran (in another order: files, code, inline)
    again = callback_rules(info)
    assert sorted(r.name for r in again) == sorted(r.name for r in callback.rules)
    assert {r.name: r for r in again}["typo"] == {r.name: r for r in callback.rules}["typo"]
    assert not any(k in info for k in ("stopped",))


@pytest.mark.trl
@pytest.mark.parametrize("stop_on", [None, "high"])
def test_the_live_episodes_are_the_audit_of_the_rules_run_json_keeps(tmp_path, stop_on):
    """What `ruledsl audit OUTPUT_DIR` should report: builtin rules + the custom alerts, read back
    from run.json, over metrics.jsonl (also when a custom alert stopped the run)."""
    from ruledsl.integrations.diagnostics_files import callback_rules

    rows = [(s, {"loss": 0.3 + 0.1 * s, "grad_norm": 1.0 + (40.0 if s == 9 else 0.0), "learning_rate": 1e-3,
                 "rewards/margins": 0.01, "rewards/accuracies": 0.5, "epoch": s / 12}) for s in range(1, 13)]
    callback = _callback(custom_alerts={"loss_high": "dpo: loss > 1 -> high: loss {value}",
                                        "margin_small": "dpo: rewards/margins < 0.02 for 3 steps -> medium: m"},
                         stop_on=stop_on)
    _feed(callback, DPOConfig(tmp_path, beta=0.1, loss_type="sigmoid"), rows)
    directory = tmp_path / "diagnostics"
    info = json.loads((directory / "run.json").read_text())
    live = [{k: v for k, v in e.items() if k != "event"} for e in _events(directory) if e["event"] == "episode"]
    metrics = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    frame = pl.DataFrame(metrics).with_columns(pl.lit(callback.monitor.run).alias("run"))
    audited = ruledsl.audit(frame, callback_rules(info), trainer=info["trainer"], config=info["config"])
    assert live == json.loads(json.dumps(ruledsl.alerts.json_safe(audited.to_dicts())))
    assert {"loss_high", "margin_small"} <= {e["rule"] for e in live}
    assert (callback.stopped is not None) is (stop_on == "high")


@pytest.mark.trl
def test_ruledsl_audit_of_the_output_directory_re_runs_the_named_custom_alerts(tmp_path):
    """The command itself, on the callback's output directory: the same episodes as the live run,
    the custom alerts by their names (before, the audit said "No alerts" after a run a custom alert
    had stopped)."""
    from cli_helpers import ruledsl as run_ruledsl

    rows = [(s, {"loss": 0.3 + 0.1 * s, "grad_norm": 1.0, "learning_rate": 1e-3, "rewards/margins": 0.01,
                 "rewards/accuracies": 0.5, "epoch": s / 12}) for s in range(1, 13)]
    callback = _callback(custom_alerts={"loss_high": "dpo: loss > 1 -> high: loss {value}"}, stop_on="high")
    _feed(callback, DPOConfig(tmp_path, beta=0.1, loss_type="sigmoid"), rows)
    live = {(e["rule"], e["first_step"], e["last_step"]) for e in _events(tmp_path / "diagnostics")
            if e["event"] == "episode"}
    result = run_ruledsl("audit", str(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    audited = {(r["rule"], r["first_step"], r["last_step"]) for r in json.loads(result.stdout)}
    assert any(rule == "loss_high" and first == 8 for rule, first, _ in live) and audited == live


def test_callback_rules_reads_back_what_run_json_keeps(tmp_path):
    from ruledsl.integrations.diagnostics_files import callback_rules, rules_kept

    assert callback_rules({"trainer": "sft", "config": {}}) is None  # an older callback's run.json
    kept = rules_kept(False, [], [], {"mine": "sft: loss > 1 -> low: x"})
    assert json.loads(json.dumps(kept)) == {"include_builtin": False, "rules_dirs": [], "code_rules": [],
                                            "custom_alerts": {"mine": "sft: loss > 1 -> low: x"}}
    assert [r.name for r in callback_rules(kept)] == ["mine"]
    assert len(callback_rules({**kept, "include_builtin": True})) == len(load_rules()) + 1
    for bad, words in [({"custom_alerts": ["sft: loss > 1 -> low: x"]}, "'custom_alerts' should map names"),
                       ({"custom_alerts": {"Bad": "sft: loss > 1 -> low: x"}}, "custom alert name 'Bad'"),
                       ({"custom_alerts": {"x": "sft: loss >> 1 -> low: x"}}, "custom alert 'x'"),
                       ({"rules_dirs": "rules"}, "'rules_dirs' should be a list"),
                       ({"include_builtin": "yes"}, "'include_builtin' should be true or false"),
                       ({"code_rules": [1]}, "'code_rules' should be a list of rule mappings")]:
        with pytest.raises(ValueError, match=words):
            callback_rules(bad)
    with pytest.raises(ValueError, match="gone"):  # a rule folder no longer there: the loader says which
        callback_rules({"rules_dirs": [str(tmp_path / "gone")], "include_builtin": False})


@pytest.mark.trl
def test_it_says_which_trainer_how_and_how_many_rules_apply(tmp_path, capsys):
    sft_rules = len(load_rules(trainer="sft"))
    _feed(_callback(), DPOConfig(tmp_path / "a"), [])
    assert f"ruledsl: trainer dpo (from the config class DPOConfig); {len(load_rules(trainer='dpo'))} rules apply" \
        in capsys.readouterr().out
    _feed(_callback(trainer="sft"), DPOConfig(tmp_path / "b"), [])
    assert f"ruledsl: trainer sft (given: trainer='sft'; config class DPOConfig); {sft_rules} rules apply" \
        in capsys.readouterr().out
    plain = type("TrainingArguments", (), {"output_dir": str(tmp_path / "c"), "report_to": [], "run_name": None})
    _feed(_callback(), plain(), [])
    out = capsys.readouterr().out
    assert "ruledsl: trainer unknown: every rule runs (TrainingArguments is not a TRL trainer's config class); " \
           f"{len(load_rules())} rules apply" in out
    info = json.loads((tmp_path / "c" / "diagnostics" / "run.json").read_text())
    assert info["trainer"] is None and info["trainer_from"] == "unknown"


@pytest.mark.trl
def test_after_the_first_training_row_it_says_which_rules_see_their_keys(tmp_path, capsys):
    callback = _callback(custom_alerts={"typo": "dpo: los > 1 -> low: never", "fine": "dpo: loss > 9 -> low: x"},
                         rules=[BETA_RULE], include_builtin=False)
    rows = [(1, {"eval_loss": 0.3}),  # an evaluation row first: not the training row the line waits for
            (1, {"loss": 0.5, "grad_norm": 1.0}), (2, {"loss": 0.6})]
    _feed(callback, DPOConfig(tmp_path, beta=0.1, loss_type="ipo"), rows)
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if "see their keys" in line]
    assert said == ["ruledsl: 1 of 3 rules see their keys; not yet: typo (no value of los in the run; did you mean "
                    "loss?); not on this configuration: loss_high_for_beta (when: config.loss_type == 'sigmoid' "
                    "is false on this run)"]
    assert lines.index(said[0]) > lines.index(next(x for x in lines if x.startswith("ruledsl: trainer")))


@pytest.mark.trl
def test_at_the_end_it_says_the_rules_never_evaluated_and_keeps_them_in_run_json(tmp_path, capsys):
    callback = _callback(custom_alerts={"typo": "dpo: los > 1 -> low: never",
                                        "late": "dpo: loss > 0 -> low: x"},
                         rules=[BETA_RULE, {**BETA_RULE, "name": "beta_unknown", "when": "config.nope == 1"}],
                         include_builtin=False)
    _feed(callback, DPOConfig(tmp_path, beta=0.1, loss_type="ipo"), DPO_ROWS)
    out = capsys.readouterr().err  # in the end-of-training summary, on stderr
    assert ("ruledsl: at the end of training, 1 of 4 rules were evaluated on this run\n"
            "  never evaluated: typo (no_key: no value of los in the run; did you mean loss?)\n"
            "  not on this configuration: beta_unknown (config_unknown: the run's configuration has no nope)\n"
            "  not on this configuration: loss_high_for_beta (when_false: when: config.loss_type == 'sigmoid' "
            "is false on this run)\n") in out
    assert out.count("at the end of training") == 1
    info = json.loads((tmp_path / "diagnostics" / "run.json").read_text())
    assert [(r["rule"], r["reason"]) for r in info["coverage"]] == [
        ("beta_unknown", "config_unknown"), ("loss_high_for_beta", "when_false"), ("typo", "no_key")]
    assert info["coverage"][0] == {"run": tmp_path.name, "rule": "beta_unknown", "metric": None,
                                   "reason": "config_unknown", "detail": "the run's configuration has no nope"}
    assert [r.as_dict() for r in callback.coverage] == info["coverage"]


@pytest.mark.trl
def test_when_every_rule_was_evaluated_it_says_so(tmp_path, capsys):
    callback = _callback(custom_alerts={"fine": "dpo: loss > 9 -> low: x"}, include_builtin=False)
    _feed(callback, DPOConfig(tmp_path), DPO_ROWS)
    captured = capsys.readouterr()
    assert "ruledsl: 1 of 1 rules see their keys\n" in captured.out
    assert "ruledsl: at the end of training, 1 of 1 rules were evaluated on this run\n" in captured.err
    assert json.loads((tmp_path / "diagnostics" / "run.json").read_text())["coverage"] == []


@pytest.mark.trl
def test_other_processes_say_no_coverage(tmp_path, capsys):
    callback = _callback(custom_alerts={"typo": "dpo: los > 1 -> low: never"}, include_builtin=False)
    _feed(callback, DPOConfig(tmp_path), DPO_ROWS, main=False)
    assert "see their keys" not in capsys.readouterr().out and callback.coverage is None


@pytest.mark.trl
def test_a_failing_coverage_report_never_stops_training(tmp_path, capsys, monkeypatch):
    from ruledsl.engines.live.monitor import Monitor

    def broken(self):
        raise RuntimeError("no coverage today")

    monkeypatch.setattr(Monitor, "coverage", broken)
    callback = _callback(custom_alerts={"loss_high": "dpo: loss > 1 -> high: loss {value}"}, stop_on="high",
                         include_builtin=False)
    control = _feed(callback, DPOConfig(tmp_path), DPO_ROWS)
    captured = capsys.readouterr()
    assert "the coverage report failed (RuntimeError: no coverage today)" in captured.err
    assert "training goes on" in captured.err and captured.err.count("the coverage report failed") == 1
    assert control.should_training_stop and "[HIGH] loss_high at step 3" in captured.err  # the rules went on
    info = json.loads((tmp_path / "diagnostics" / "run.json").read_text())
    assert "coverage" not in info and info["custom_alerts"] == {"loss_high": "dpo: loss > 1 -> high: loss {value}"}


@pytest.mark.trl
def test_a_rule_built_in_code_that_no_mapping_describes_is_named_as_not_kept(tmp_path):
    import dataclasses

    class OwnTemplate:
        fields = ()

        def render(self, values):
            return "mine"

    own = dataclasses.replace(ruledsl.parse_inline_alert("dpo: loss > 1 -> high: x"), name="own_template",
                              message=OwnTemplate())
    callback = _callback(rules=[own, *load_rules(trainer="dpo")[:1]], include_builtin=False)
    assert callback.rules_not_kept == ["own_template"] and len(callback.code_rules) == 1
    _feed(callback, DPOConfig(tmp_path), DPO_ROWS)
    info = json.loads((tmp_path / "diagnostics" / "run.json").read_text())
    assert info["rules_not_kept"] == ["own_template"]
    assert callback.started and callback.started[0]["message"] == "mine"  # it ran all the same
