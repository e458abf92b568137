"""DiagnosticsCallback inside real TRL trainers on a tiny model (see tests/tiny_trl.py).

Each run is a few real optimizer steps. The problems are injected through the
rules (an inline alert on a real logged key whose values cross a threshold at a
known step) or, for the vLLM importance-sampling ratio that a CPU run cannot
produce, through TRL's own metric buffer in a trainer subclass.
"""

# first: it sets the offline environment, and skips this module without the TRL extra
from tiny_trl import make_trainer, tiny_model_dir

import contextlib
import io
import json
from pathlib import Path

import pytest

trl = pytest.importorskip("trl")

import polars as pl  # noqa: E402

import ruledsl as ruledsl_package  # noqa: E402
from cli_helpers import ruledsl  # noqa: E402
from ruledsl.alerts import json_safe  # noqa: E402
from ruledsl.integrations.callback import DiagnosticsCallback  # noqa: E402
from ruledsl.integrations.diagnostics_files import callback_rules  # noqa: E402
from ruledsl.model.loader import load_rules  # noqa: E402

pytestmark = [pytest.mark.trl, pytest.mark.slow]  # real training runs on a tiny model

# Batch 2 over 8 rows: `epoch` is 0.25 × step for SFT, DPO, KTO and Reward, a real key whose
# values cross a threshold at a step known in advance.
INJECTED = {
    "sft": ("sft: loss > 0 -> high: loss is {value:.3f} at step {step}", 1),
    "dpo": ("dpo: epoch >= 0.75 -> medium: three quarters of an epoch at step {step}", 3),
    "kto": ("kto: epoch >= 0.5 -> low: half an epoch at step {step}", 2),
    "reward": ("reward: epoch > 0.9 -> medium: almost one epoch at step {step}", 4),
}
CONFIG_CLASSES = {"sft": "SFTConfig", "dpo": "DPOConfig", "kto": "KTOConfig", "reward": "RewardConfig"}
TYPO = "typo_loss"  # a custom alert on `los`, a key no trainer logs: the coverage lines must name it
EXTRA_RULE = ("name: extra_from_dir\ntrainers: [all]\nmetric: grad_norm\ncondition: '> 1e9'\n"
              "severity: low\nmessage: huge gradient\n")
IS_RATIOS = [1.0, 0.98, 0.2, 0.1, 0.1]  # per step; collapses at step 3


class FakeVLLMGRPOTrainer(trl.GRPOTrainer):
    """GRPO whose metric buffer also gets the vLLM importance-sampling ratio, as with use_vllm=True."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["sampling/importance_sampling_ratio/mean"].append(IS_RATIOS[self.state.global_step])
        return output


class MyGRPOConfig(trl.GRPOConfig):
    """A user's own config class: still GRPO."""


@contextlib.contextmanager
def console():
    """stdout and stderr in one buffer, in the order written, as a terminal shows them: the
    callback's lines are on stdout, its alerts and summary on stderr (tests/test_callback_summary.py)."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        yield captured


def train(kind, tmp_path, callback, **kwargs):
    with console() as out:  # the trainer is announced at construction (on_init_end)
        trainer = make_trainer(kind, tiny_model_dir(), tmp_path / kind, callbacks=[callback], **kwargs)
        trainer.train()
    return trainer, out.getvalue()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def audit(directory: Path, *args: str) -> list[dict]:
    result = ruledsl("audit", str(directory), "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One real run per trainer, each with its injected alert under a name, an alert on a misspelt
    metric and a rule folder; stop_on='critical' never triggers."""
    root = tmp_path_factory.mktemp("trl-runs")
    (root / "my_rules").mkdir()
    (root / "my_rules" / "extra.yaml").write_text(EXTRA_RULE)
    done = {}
    for kind, (alert, _) in INJECTED.items():
        callback = DiagnosticsCallback(custom_alerts={f"injected_{kind}": alert, TYPO: f"{kind}: los > 100 -> low: x"},
                                       rules_dir=root / "my_rules", stop_on="critical")
        trainer, out = train(kind, root, callback)
        done[kind] = (trainer, callback, out, root / kind / "diagnostics")
    return done


@pytest.mark.parametrize("kind", list(INJECTED))
def test_detects_the_trainer_and_says_so(runs, kind):
    trainer, callback, out, diagnostics = runs[kind]
    expected = [r.name for r in callback.rules if r.applies_to(kind)]
    assert f"ruledsl: trainer {kind} (from the config class {CONFIG_CLASSES[kind]}); {len(expected)} rules apply" in out
    assert out.count("ruledsl: trainer") == 1  # said once, though both on_init_end and on_train_begin ran
    info = json.loads((diagnostics / "run.json").read_text())
    assert info["trainer"] == kind and info["rules"] == expected
    assert not any(name.startswith("grpo_") for name in info["rules"])
    assert info["config_class"] == CONFIG_CLASSES[kind]
    # the trainer's arguments, flattened (docs/language.md §2): what `ruledsl audit` gives the rules as config.KEY
    config = info["config"]
    assert config["learning_rate"] == 1e-3 and config["logging_steps"] == 1 and config["max_steps"] == 5
    assert config["save_strategy"] == "no" and config["use_cpu"] is True and None not in config.values()
    assert all(not isinstance(v, (dict, list)) for v in config.values())
    assert info["versions"]["trl"] == trl.__version__ and "ruledsl_version" in info


@pytest.mark.parametrize("kind", list(INJECTED))
def test_every_log_row_is_in_metrics_jsonl(runs, kind):
    trainer, _, _, diagnostics = runs[kind]
    rows = read_jsonl(diagnostics / "metrics.jsonl")
    # the callback runs before the printer callback that pops total_flos: rows are complete
    assert rows == [{"step": h["step"], **{k: v for k, v in h.items() if k != "step"}}
                    for h in trainer.state.log_history]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 5]
    assert {"loss", "grad_norm", "learning_rate", "epoch"} <= rows[0].keys()


@pytest.mark.parametrize("kind", list(INJECTED))
def test_injected_problem_is_announced_at_its_step(runs, kind):
    trainer, callback, out, diagnostics = runs[kind]
    alert, step = INJECTED[kind]
    severity = alert.split("-> ")[1].split(":")[0]
    events = read_jsonl(diagnostics / "alerts.jsonl")
    started = [e for e in events if e["event"] == "started" and e["rule"] == f"injected_{kind}"]
    assert [(e["first_step"], e["severity"], e["trainer"]) for e in started] == [(step, severity, kind)]
    assert f"[{severity.upper()}] injected_{kind} at step {step}\n    " in out  # plain text: stderr is not a TTY
    assert "inline_" not in out and not any(e.get("rule", "").startswith("inline_") for e in events)
    assert started[0]["message"].endswith(f"at step {step}")
    assert trainer.state.global_step == 5  # stop_on="critical": a lower severity does not stop
    assert not any(e["event"] == "stop" for e in events)


@pytest.mark.parametrize("kind", list(INJECTED))
def test_audit_reads_the_output_dir_and_finds_the_same_episodes(runs, kind):
    _, callback, _, diagnostics = runs[kind]
    builtin = {r.name for r in load_rules()}
    records = audit(diagnostics, "--trainer", kind)
    batch = {(r["rule"], r["first_step"], r["last_step"]) for r in records if r["rule"] in builtin}
    live = {(e["rule"], e["first_step"], e["last_step"])
            for e in read_jsonl(diagnostics / "alerts.jsonl") if e["event"] == "episode" and e["rule"] in builtin}
    assert live == batch


@pytest.mark.parametrize("kind", list(INJECTED))
def test_the_rules_run_json_keeps_audit_to_the_live_episodes(runs, kind):
    """Every episode the callback reported, custom alerts included, is what an audit of metrics.jsonl
    with the rules read back from run.json (diagnostics_files.callback_rules) reports."""
    _, callback, _, diagnostics = runs[kind]
    _, step = INJECTED[kind]
    info = json.loads((diagnostics / "run.json").read_text())
    rules = callback_rules(info)
    assert sorted(r.name for r in rules) == sorted(r.name for r in callback.rules)
    frame = pl.DataFrame(read_jsonl(diagnostics / "metrics.jsonl")).with_columns(
        pl.lit(callback.monitor.run).alias("run"))
    audited = ruledsl_package.audit(frame, rules, trainer=info["trainer"], config=info["config"]).to_dicts()
    live = [{k: v for k, v in e.items() if k != "event"}
            for e in read_jsonl(diagnostics / "alerts.jsonl") if e["event"] == "episode"]
    assert live == json.loads(json.dumps(json_safe(audited)))
    assert any(e["rule"] == f"injected_{kind}" and e["first_step"] == step for e in live)


@pytest.mark.parametrize("kind", list(INJECTED))
def test_run_json_keeps_the_rules_and_the_coverage(runs, kind):
    _, callback, _, diagnostics = runs[kind]
    alert, _ = INJECTED[kind]
    info = json.loads((diagnostics / "run.json").read_text())
    assert info["custom_alerts"] == {f"injected_{kind}": alert, TYPO: f"{kind}: los > 100 -> low: x"}
    assert info["rules_dirs"] == [str((diagnostics.parents[1] / "my_rules").resolve())]
    assert info["include_builtin"] is True and info["trainer_from"] == "config_class"
    assert "extra_from_dir" in info["rules"]
    coverage = {r["rule"]: r for r in info["coverage"]}
    assert coverage[TYPO] == {"run": callback.monitor.run, "rule": TYPO, "metric": None, "reason": "no_key",
                              "detail": "no value of los in the run; did you mean loss?"}
    assert f"injected_{kind}" not in coverage and "extra_from_dir" not in coverage  # they were evaluated
    assert [r.as_dict() for r in callback.coverage] == info["coverage"]


@pytest.mark.parametrize("kind", list(INJECTED))
def test_it_says_which_rules_see_their_keys_and_which_were_never_evaluated(runs, kind):
    _, callback, out, _ = runs[kind]
    seeing = [line for line in out.splitlines() if "rules see their keys" in line]
    assert len(seeing) == 1  # after the first training row
    assert "; not yet: " in seeing[0] and f"{TYPO} (no value of los in the run; did you mean loss?)" in seeing[0]
    total = len(callback.monitor.rules)
    assert seeing[0].startswith("ruledsl: ") and f" of {total} rules see their keys" in seeing[0]
    end = out[out.index("ruledsl: at the end of training"):]
    assert f"  never evaluated: {TYPO} (no_key: no value of los in the run; did you mean loss?)" in end
    never = {r.rule for r in callback.coverage}
    assert end.startswith(f"ruledsl: at the end of training, {total - len(never)} of {total} rules were evaluated")
    assert out.index("rules see their keys") < out.index("at the end of training")


def test_a_misspelt_trainer_is_refused_before_any_training():
    with pytest.raises(ValueError, match="'dop' is not a TRL trainer id; did you mean 'dpo'"):
        DiagnosticsCallback(trainer="dop", custom_alerts={"loss_low": "sft: loss < 0.1 -> low: {value}"})


def test_stop_on_stops_training_at_the_step(tmp_path):
    callback = DiagnosticsCallback(custom_alerts=["dpo: epoch >= 0.75 -> critical: stop at {step}"],
                                   stop_on="high")
    trainer, out = train("dpo", tmp_path, callback, max_steps=8)
    assert trainer.state.global_step == 3
    diagnostics = tmp_path / "dpo" / "diagnostics"
    assert max(r["step"] for r in read_jsonl(diagnostics / "metrics.jsonl")) == 3
    events = read_jsonl(diagnostics / "alerts.jsonl")
    stop = [e for e in events if e["event"] == "stop"]
    assert len(stop) == 1 and stop[0]["step"] == 3 and stop[0]["severity"] == "critical"
    assert "stop_on='high'" in stop[0]["reason"]
    info = json.loads((diagnostics / "run.json").read_text())
    assert info["stopped"]["rule"] == stop[0]["rule"] and info["stopped"]["step"] == 3
    assert "ruledsl: stopped training at step 3" in out


def test_catalog_alias_resolves_on_a_real_grpo_run(tmp_path):
    alert = "grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed to {value:.2f}"
    as_rule = {"name": "is_ratio_alias", "trainers": ["grpo"], "metric": "importance_sampling_ratio",
               "condition": "< 0.9 for 2 steps", "severity": "medium", "message": "IS ratio {value:.2f}"}
    callback = DiagnosticsCallback(custom_alerts=[alert], rules=[as_rule])
    trainer, out = train("grpo", tmp_path, callback, trainer_class=FakeVLLMGRPOTrainer,
                         config_class=MyGRPOConfig)
    assert "ruledsl: trainer grpo (from the config class MyGRPOConfig)" in out
    started = {e["rule"]: e for e in read_jsonl(tmp_path / "grpo" / "diagnostics" / "alerts.jsonl")
               if e["event"] == "started"}
    inline = next(e for name, e in started.items() if name.startswith("inline_"))
    assert (inline["first_step"], inline["metric"]) == (3, "sampling/importance_sampling_ratio/mean")
    assert inline["message"] == "IS ratio collapsed to 0.20"
    assert (started["is_ratio_alias"]["first_step"], started["is_ratio_alias"]["metric"]) == (
        4, "sampling/importance_sampling_ratio/mean")  # below 0.9 at steps 3 and 4
    # the builtin rule (window 3) fires once the mean of three logs is below 0.5: (0.98+0.2+0.1)/3
    assert started["grpo_is_ratio_collapse"]["first_step"] == 4
    rows = read_jsonl(tmp_path / "grpo" / "diagnostics" / "metrics.jsonl")
    assert {"reward", "reward_std", "completions/clipped_ratio", "entropy"} <= rows[0].keys()


def _plain_trainer(tmp_path, callback):
    """transformers' own Trainer with plain TrainingArguments: a trainer ruledsl does not know."""
    from tiny_trl import SENTENCES, common_args

    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir()))
    data = Dataset.from_dict(dict(tokenizer(SENTENCES)))
    return Trainer(model=AutoModelForCausalLM.from_pretrained(str(tiny_model_dir())),
                   args=TrainingArguments(**common_args(tmp_path, max_steps=3)), train_dataset=data,
                   data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[callback])


def test_unknown_trainer_runs_every_rule_and_trainer_overrides(tmp_path):
    callback = DiagnosticsCallback()
    with console() as out:
        _plain_trainer(tmp_path / "plain", callback).train()
    everything = len(load_rules())
    assert ("ruledsl: trainer unknown: every rule runs (TrainingArguments is not a TRL trainer's config class); "
            f"{everything} rules apply") in out.getvalue()
    info = json.loads((tmp_path / "plain" / "diagnostics" / "run.json").read_text())
    assert info["trainer"] is None and len(info["rules"]) == everything

    given = DiagnosticsCallback(trainer="sft", output_dir=tmp_path / "elsewhere")
    with console() as out:
        _plain_trainer(tmp_path / "given", given).train()
    info = json.loads((tmp_path / "elsewhere" / "run.json").read_text())
    assert info["trainer"] == "sft" and info["rules"] == [r.name for r in load_rules(trainer="sft")]
    assert "ruledsl: trainer sft (given: trainer='sft'; config class TrainingArguments)" in out.getvalue()
    assert len(read_jsonl(tmp_path / "elsewhere" / "metrics.jsonl")) == 4  # 3 steps + the summary row
