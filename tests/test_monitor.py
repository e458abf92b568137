"""The incremental engine (ruledsl.monitor.Monitor) against the spec's worked cases, real TRL logs
and the batch audit; same-step rows, resumed steps, faults, events and memory."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import random
import statistics
import sys
import types
from pathlib import Path

import polars as pl
import pytest

import ruledsl
from conformance_cases import assert_episodes, config_of, load_cases, rule_mapping, wide_frame
from ruledsl.engines.live.monitor import AlertEvent, Monitor
from ruledsl.model.catalog import Catalog, builtin_catalog
from ruledsl.model.loader import load_rules
from ruledsl.readers import read_archive

CASES = load_cases()
REAL_LOGS = sorted((Path(__file__).parent / "data" / "real_trl_logs").glob("*.jsonl"))
TRAINER_OF_LOG = {"sft_chat": "sft", "grpo_chat": "grpo", "grpo_kl": "grpo"}


def same_records(got: list[dict], expected: list[dict]) -> bool:
    """Equal field by field; floats compared by repr (exact bits, NaN equal to itself)."""
    return repr(got) == repr(expected)


def case_rows(case: dict) -> list[tuple[int, dict]]:
    """The case's rows as a run logs them: "nan"/"inf" read as floats, a JSON null kept as None."""
    return [(step, {k: None if v is None else float(v) for k, v in values.items()}) for step, values in case["rows"]]


def rule(condition: str, metric: str | None = "m", name: str = "r", **fields) -> dict:
    mapping = {"name": name, "trainers": ["all"], "condition": condition, "severity": "high",
               "message": "{value} at {step}", **fields}
    if metric is not None:
        mapping["metric"] = metric
    return mapping


def audit_rows(rows: list[tuple[int, dict]], rules: list, **options) -> list[dict]:
    """ruledsl.audit over rows given as (step, metrics) in file order."""
    keys = list(dict.fromkeys(k for _, values in rows for k in values))
    records = [{"step": step, **{k: values.get(k) for k in keys}} for step, values in rows]
    frame = pl.DataFrame(records, schema={"step": pl.Int64, **{k: pl.Float64 for k in keys}})
    return ruledsl.audit(frame, rules, **options).to_dicts()


# ================================================================ docs/language.md §9 worked cases


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_every_worked_case(case):
    monitor = Monitor([rule_mapping(case)], config=config_of(case))
    monitor.replay(case_rows(case))
    assert_episodes(monitor.episodes(), case["expect"], case["id"])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_every_worked_case_gives_the_audit_records_to_the_bit(case):
    monitor = Monitor([rule_mapping(case)], config=config_of(case))
    monitor.replay(case_rows(case))
    expected = ruledsl.audit(wide_frame(case), [rule_mapping(case)], config=config_of(case)).to_dicts()
    assert same_records(monitor.episodes(), expected)


IN_STEP_ORDER = [c for c in CASES if all(a[0] <= b[0] for a, b in zip(c["rows"], c["rows"][1:]))]
GOING_BACK = [c for c in CASES if c not in IN_STEP_ORDER]


@pytest.mark.parametrize("case", IN_STEP_ORDER, ids=[c["id"] for c in IN_STEP_ORDER])
def test_worked_cases_row_by_row_in_file_order(case):
    """Fed live, one update per row (same-step rows included): the same episodes, announced once."""
    monitor = Monitor([rule_mapping(case)], config=config_of(case))
    events = [e for step, values in case_rows(case) for e in monitor.update(step, values)]
    events += monitor.finish()
    assert_episodes(monitor.episodes(), case["expect"], case["id"])
    started = [e.record["first_step"] for e in events if e.kind == "started"]
    assert started == [e["first_step"] for e in case["expect"]]


def test_cases_whose_steps_go_back_are_resumed_runs():
    """Rows whose step goes back are skipped live (and said so); replay merges them as audit does."""
    assert [c["id"] for c in GOING_BACK] == ["c030", "c033", "c034"]
    for case in GOING_BACK:
        monitor = Monitor([rule_mapping(case)], config=config_of(case))
        for step, values in case_rows(case):
            monitor.update(step, values)
        assert monitor.skipped_rows >= 1
        assert len(monitor.notices) == 1 and "goes back" in monitor.notices[0]


# ================================================================ real TRL logs


def read_log(path: Path) -> list[tuple[int, dict]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["step"], {k: v for k, v in r.items() if k != "step"}) for r in records]


def lengthened(rows: list[tuple[int, dict]], blocks: int) -> list[tuple[int, dict]]:
    """The real log repeated `blocks` times (steps shifted), with a NaN loss and a grad_norm spike
    injected, so that windows of 50 and `for 50 steps` are reached on real keys and values."""
    if blocks == 1:
        return rows
    last = max(step for step, _ in rows)
    out = []
    for block in range(blocks):
        for step, values in rows:
            values = dict(values)
            if block == blocks // 2 and step == 2 and "loss" in values:
                values["loss"] = math.nan
            if block == blocks // 3 and step == 3 and "grad_norm" in values:
                values["grad_norm"] *= 1000
            out.append((step + block * last, values))
    return out


def inline_alerts(rows: list[tuple[int, dict]]) -> list[str]:
    """Alerts on the log's own keys, thresholds at their medians (so that they fire)."""
    training = [k for k, v in rows[0][1].items() if isinstance(v, float)][:5]
    alerts = []
    for key in training:
        values = [v[key] for _, v in rows if key in v and math.isfinite(v[key])]
        median = statistics.median(values)
        message = "{metric} {value:.3g} at {step} (threshold {threshold}, baseline {baseline})"
        alerts += [f"all: `{key}` > {median!r} -> high: {message}",
                   f"all: `{key}` drop(5%) or rise(5%) -> medium: {message}",
                   f"all: `{key}` spike(1.01x) -> low: {message}",
                   f"all: `{key}` flat(0) or < {median!r} for 2 steps -> low: {message}",
                   f"all: mean(`{key}`, 3) - baseline(`{key}`, 2) > std(`{key}`, 3) -> high: {message}",
                   f"all: `epoch` >= 0.5 and delta(`{key}`, 1) / `{key}` < 0 -> high: {message}"]
    alerts += ["all: `eval_loss` > `loss` -> high: eval {value} above training loss at {step}",
               "all: `train_loss` > max(`loss`, 3) -> low: {value}"]
    return alerts


@pytest.mark.parametrize("path", REAL_LOGS, ids=[p.stem for p in REAL_LOGS])
@pytest.mark.parametrize("blocks", [1, 30])
def test_real_trl_logs_give_the_audit_records(path, blocks):
    """Builtin rules for the log's trainer (and for any trainer) plus inline alerts on its keys."""
    rows = lengthened(read_log(path), blocks)
    alerts = inline_alerts(rows)
    for trainer in (TRAINER_OF_LOG.get(path.stem, path.stem), None):
        rules = [*load_rules(trainer=trainer), *alerts]
        monitor = Monitor(rules, trainer=trainer, run=path.stem)
        events = [e for step, values in rows for e in monitor.update(step, values)] + monitor.finish()
        if blocks == 1:  # audit the file itself, read as `ruledsl audit` reads it
            archive = read_archive([path])
            assert not archive.problems and len(archive.sources) == 1
            frame = archive.sources[0].frame
        else:
            frame = pl.DataFrame([{"step": s, **v} for s, v in rows]).with_columns(pl.lit(path.stem).alias("run"))
        expected = ruledsl.audit(frame, rules, trainer=trainer).to_dicts()
        got = monitor.episodes()
        assert same_records(got, expected)
        assert len(got) >= 10  # the alerts do fire
        assert not monitor.faults and not monitor.skipped_rows
        assert sum(e.kind == "started" for e in events) == len(got)
        assert not [e for e in events if e.kind == "withdrawn"]  # the Trainer repeats only `epoch`, unchanged


def test_a_lengthened_log_fires_the_builtin_rules():
    """The lengthened logs reach builtin windows: nonfinite loss, grad_norm spike, flat SFT loss…"""
    rows = lengthened(read_log(REAL_LOGS[0].parent / "sft.jsonl"), 30)
    monitor = Monitor(load_rules(trainer="sft"), trainer="sft", run="sft")
    monitor.replay(rows)
    assert {r["rule"] for r in monitor.episodes()} >= {"loss_nonfinite", "grad_norm_spike"}


@pytest.mark.parametrize("window", [20, 50, 64])
def test_long_windows_agree_to_the_bit(window):
    """Windows as long as the builtin rules' (50) and up to the batch engine's exact limit (64):
    means, spreads and baselines of values like real logs give the same records. (Beyond 64 the
    batch engine switches to polars' rolling sums, which are not added left to right.)"""
    rng = random.Random(window)
    rows = [(step, {"m": round(rng.uniform(0.0, 2.0), 2)}) for step in range(6 * window)]
    rules = [rule("> 1.0", name="mean", window=window, message="{value}"),
             rule("drop(2%) or rise(2%)", name="change", window=window, message="{value} {baseline}"),
             rule("spike(1.01x)", name="spiky", window=window, message="{value} {baseline}"),
             rule(f"std(m, 20) > 0.57 or mean(m, {window}) - baseline(m, {window}) > 0.01",
                  metric=None, name="spread")]
    monitor = Monitor(rules)
    monitor.replay(rows)
    expected = audit_rows(rows, rules)
    assert len(expected) >= 4
    assert same_records(monitor.episodes(), expected)


# ================================================================ rows of one step


def test_the_trainers_rows_of_one_step_count_together():
    """Training, evaluation and summary rows at one step: a full expression over two of them is
    evaluated as soon as the second arrives, and announced then."""
    monitor = Monitor([rule("eval_loss > 2 * loss", metric=None, name="overfit")])
    assert monitor.update(10, {"loss": 1.0, "epoch": 0.5}) == []
    events = monitor.update(10, {"eval_loss": 3.0, "epoch": 0.5})
    assert [(e.kind, e.step, e.record["first_step"], e.record["value"]) for e in events] == \
        [("started", 10, 10, 3.0)]
    assert monitor.update(10, {"train_loss": 1.0, "epoch": 0.5}) == []
    assert monitor.update(20, {"loss": 1.0}) == []  # no eval_loss: not an evaluation
    events = monitor.update(20, {"eval_loss": 1.5})
    assert [(e.kind, e.record["last_step"], e.record["n_evals"]) for e in events] == [("resolved", 10, 1)]


def test_a_value_replaced_at_the_same_step_withdraws_what_it_caused():
    monitor = Monitor([rule("> 1")])
    started = monitor.update(1, {"m": 5.0})
    assert [e.kind for e in started] == ["started"]
    withdrawn = monitor.update(1, {"m": 0.0})
    assert [(e.kind, e.withdraws, e.record) for e in withdrawn] == [("withdrawn", "started", started[0].record)]
    assert monitor.episodes() == []
    assert monitor.update(1, {"m": 0.0}) == []  # the same value again changes nothing
    assert [e.kind for e in monitor.update(2, {"m": 3.0})] == ["started"]
    resolved = monitor.update(3, {"m": 0.0})
    assert [e.kind for e in resolved] == ["resolved"]
    assert [(e.kind, e.withdraws) for e in monitor.update(3, {"m": 4.0})] == [("withdrawn", "resolved")]
    rows = [(1, {"m": 5.0}), (1, {"m": 0.0}), (2, {"m": 3.0}), (3, {"m": 0.0}), (3, {"m": 4.0})]
    assert same_records(monitor.episodes(), audit_rows(rows, [rule("> 1")]))
    assert monitor.episodes()[0]["n_evals"] == 2


def test_a_replaced_value_at_the_start_of_an_episode_restarts_it_with_the_new_value():
    monitor = Monitor([rule("> 1", window=2)])
    monitor.update(1, {"m": 2.0})
    first = monitor.update(2, {"m": 4.0})
    again = monitor.update(2, {"m": 6.0})
    assert [e.record["value"] for e in first] == [3.0]
    assert [(e.kind, e.record["value"]) for e in again] == [("withdrawn", 3.0), ("started", 4.0)]
    assert [r["value"] for r in monitor.episodes()] == [4.0]


def test_a_nan_replacing_a_value_takes_it_out_of_the_series():
    rows = [(1, {"m": 1.0}), (2, {"m": 1.0}), (2, {"m": math.nan}), (3, {"m": 9.0}), (4, {"m": 1.0})]
    rules = [rule("spike(3x)", window=1, name="spiky"), rule("nonfinite", name="bad")]
    monitor = Monitor(rules)
    for step, values in rows:
        monitor.update(step, values)
    assert [(r["rule"], r["first_step"]) for r in monitor.episodes()] == [("bad", 2), ("spiky", 3)]
    assert same_records(monitor.episodes(), audit_rows(rows, rules))


def test_an_alias_tie_at_one_step_goes_to_the_earlier_candidate():
    """Two candidates first appear at the same step, in two rows: the catalog's order decides."""
    catalog = Catalog({"ratio": {"all": ["rewards/chosen", "a"]}})
    rules = [rule("< 0.5", metric="ratio")]
    rows = [(0, {"a": 0.1}), (0, {"rewards/chosen": 2.0}), (1, {"a": 0.1, "rewards/chosen": 0.2})]
    monitor = Monitor(rules, catalog=catalog)
    events = [e for step, values in rows for e in monitor.update(step, values)]
    assert [(e.kind, e.record["metric"], e.record["first_step"]) for e in events] == \
        [("started", "a", 0), ("withdrawn", "a", 0), ("started", "rewards/chosen", 1)]
    assert same_records(monitor.episodes(), audit_rows(rows, rules, catalog=catalog))


def test_the_builtin_catalog_is_the_default():
    # PPO's objective/kl is a per-sequence sum: the catalog's alias for it is sequence_kl, not kl
    monitor = Monitor(["ppo: sequence_kl > 0.5 -> high: {metric} {value}"], trainer="ppo")
    monitor.update(1, {"objective/kl": 0.9})
    assert [(r["metric"], r["message"]) for r in monitor.episodes()] == [("objective/kl", "objective/kl 0.9")]


# ================================================================ language v2: steps, lags, literals, config


def test_for_and_min_steps_count_training_steps():
    """Logged every 10 steps: `for 50 steps` needs a streak spanning 49 steps (6 evaluations), and
    min_steps is a step, not a count of values."""
    rows = [(s, {"m": 2.0 if s != 100 else 0.0}) for s in range(10, 200, 10)]
    rules = [rule("> 1 for 50 steps", name="sustained"), rule("> 1", name="warm", min_steps=45)]
    monitor = Monitor(rules)
    monitor.replay(rows)
    assert [(r["rule"], r["first_step"], r["last_step"], r["n_evals"]) for r in monitor.episodes()] == \
        [("warm", 50, 90, 5), ("sustained", 60, 90, 4), ("warm", 110, 190, 9), ("sustained", 160, 190, 4)]
    assert same_records(monitor.episodes(), audit_rows(rows, rules))


def test_lagged_windows_read_the_values_before_the_current_one():
    rng = random.Random(7)
    rows = [(step, {"m": round(rng.uniform(0.0, 2.0), 2)}) for step in range(60)]
    rules = [rule("m > mean(m, 3, 2)", metric=None, name="mean_lag"),
             rule("std(m, 4, 1) > 0.6", metric=None, name="std_lag"),
             rule("sum(m, 2, 3) > 3", metric=None, name="sum_lag"),
             rule("min(m, 3, 1) > 0.5 and max(m, 2, 4) < 1.5", metric=None, name="min_max_lag"),
             rule("mean(m, 20, 1) > 0 and m >= 1.8 * mean(m, 20, 1)", metric=None, name="spike_as_lag")]
    monitor = Monitor(rules)
    monitor.replay(rows)
    expected = audit_rows(rows, rules)
    assert {r["rule"] for r in expected} == {"mean_lag", "std_lag", "sum_lag", "min_max_lag", "spike_as_lag"}
    assert same_records(monitor.episodes(), expected)
    # defined once the metric has W + L values: the first evaluation of mean(m, 3, 2) is at index 4
    first = Monitor([rule("m > mean(m, 3, 2) or m <= mean(m, 3, 2)", metric=None)])
    first.replay(rows)
    assert first.episodes()[0]["first_step"] == 4


def test_a_lagged_window_is_summed_left_to_right_from_its_oldest_value():
    from ruledsl.engines.live.series import Series

    series = Series("m", 8, frozenset())
    values = [0.5, 3.0, 1e16, 1.0, 1.0, 0.1, 0.7]  # 1e16 + 1 + 1 depends on the order of the additions
    for step, value in enumerate(values):
        series.put(step, value)
    x = values
    assert series.sum(3, 2) == (x[2] + x[3]) + x[4] and series.sum(3, 2) != x[2] + (x[3] + x[4])
    assert series.sum(3, 4) == (x[0] + x[1]) + x[2]
    assert series.mean(3, 1) == ((x[3] + x[4]) + x[5]) / 3 == series.mean(3, 1)  # cached: the same bits
    assert series.mean(3) == ((x[4] + x[5]) + x[6]) / 3
    mean = ((x[2] + x[3]) + x[4]) / 3
    squares = (x[2] - mean) ** 2 + (x[3] - mean) ** 2 + (x[4] - mean) ** 2
    assert series.std(3, 2) == math.sqrt(squares / 3)
    assert (series.minimum(2, 1), series.maximum(2, 1), series.minimum(2), series.maximum(3, 3)) == \
        (0.1, 1.0, 0.1, 1e16)


def test_step_is_the_rows_training_step_and_not_the_reported_value():
    rows = [(s, {"loss": 0.69}) for s in (10, 20, 30, 40)] + [(50, {"loss": 0.1}), (60, {"loss": 0.69})]
    rules = [rule("step >= 30 and loss > 0.68", metric=None, name="gate"),
             rule("loss * 100 < step", metric=None, name="scaled")]
    monitor = Monitor(rules)
    monitor.replay(rows)
    assert [(r["rule"], r["first_step"], r["last_step"], r["value"]) for r in monitor.episodes()] == \
        [("gate", 30, 40, 0.69), ("scaled", 50, 50, 0.1 * 100), ("gate", 60, 60, 0.69)]
    assert same_records(monitor.episodes(), audit_rows(rows, rules))


def test_literals_compare_by_kind_and_the_row_is_still_an_evaluation():
    rows = [(s, {"loss": v}) for s, v in enumerate([2.0, 2.0, 1.0, 2.0, 2.0])]
    rules = [rule("loss == true", metric=None, name="never"),  # a number is never a boolean
             rule("loss != 'x'", metric=None, name="always"),
             rule("loss > 1 and config.loss_type == 'ipo' for 2 steps", metric=None, name="ipo")]
    ipo = Monitor(rules, config={"loss_type": "ipo"})
    ipo.replay(rows)
    assert [(r["rule"], r["first_step"], r["last_step"], r["n_evals"], r["value"]) for r in ipo.episodes()] == \
        [("always", 0, 4, 5, 2.0), ("ipo", 1, 1, 1, 2.0), ("ipo", 4, 4, 1, 2.0)]
    sigmoid = Monitor(rules, config={"loss_type": "sigmoid"})
    sigmoid.replay(rows)
    assert {r["rule"] for r in sigmoid.episodes()} == {"always"}
    for config, monitor in (({"loss_type": "ipo"}, ipo), ({"loss_type": "sigmoid"}, sigmoid)):
        assert same_records(monitor.episodes(), audit_rows(rows, rules, config=config))


def test_rules_are_bound_to_the_runs_configuration():
    rules = [rule("rewards/margins < config.beta - 0.05", metric=None, name="scaled"),
             rule("< 0.5", name="vllm_only", when="config.use_vllm == true"),
             rule("> 1", name="plain")]
    rows = [(0, {"rewards/margins": 0.0, "m": 0.2}), (1, {"rewards/margins": 0.06, "m": 2.0})]
    monitor = Monitor(rules, config={"beta": 0.1, "use_vllm": True})
    monitor.replay(rows)
    assert [(r["rule"], r["first_step"]) for r in monitor.episodes()] == \
        [("scaled", 0), ("vllm_only", 0), ("plain", 1)]
    assert monitor.not_evaluated == {}
    assert [c.rule.name for c in monitor.rules] == ["scaled", "vllm_only", "plain"]  # what was compiled

    off = Monitor(rules, config={"beta": "high", "use_vllm": False})
    off.replay(rows)
    assert [r["rule"] for r in off.episodes()] == ["plain"]
    assert {name: why.reason for name, why in off.not_evaluated.items()} == \
        {"scaled": "config_unknown", "vllm_only": "when_false"}
    assert "config.beta is text" in off.not_evaluated["scaled"].detail

    unknown = Monitor(rules)  # no configuration at all: every rule that reads one is config_unknown
    unknown.replay(rows)
    assert [r["rule"] for r in unknown.episodes()] == ["plain"]
    assert {name: why.reason for name, why in unknown.not_evaluated.items()} == \
        {"scaled": "config_unknown", "vllm_only": "config_unknown"}


# ================================================================ absent(N)


def test_absent_counts_the_steps_since_the_metric_was_last_logged():
    """Evaluated at every logged step after the key's first, whatever the row holds (here rows with
    only keys no rule reads); a NaN is a value; a None is not."""
    rows = [(10, {"kl": 0.1, "loss": 1.0}), (20, {"kl": math.nan}), (30, {"epoch": 0.3}),
            (40, {"loss": 1.0, "kl": None}), (50, {"other": 1.0}), (60, {"kl": 0.2}), (70, {"loss": 1.0}),
            (95, {"loss": 1.0})]
    rules = [rule("absent(20)", metric="kl", name="gone", message="{metric} absent for {value} steps")]
    monitor = Monitor(rules)
    events = [e for step, values in rows for e in monitor.update(step, values)]
    assert [(e.kind, e.step) for e in events] == [("started", 40), ("resolved", 60), ("started", 95)]
    assert [(r["first_step"], r["last_step"], r["n_evals"], r["value"], r["message"]) for r in monitor.episodes()] \
        == [(40, 50, 2, 20.0, "kl absent for 20.0 steps"), (95, 95, 1, 35.0, "kl absent for 35.0 steps")]
    assert same_records(monitor.episodes(), audit_rows(rows, rules))


def test_absent_sustained_and_warmed_up_in_steps():
    rows = [(s, {"kl": 0.1} if s <= 20 else {"loss": 1.0}) for s in range(0, 100, 5)]
    rules = [rule("absent(10) for 20 steps", metric="kl", name="long_gone"),
             rule("absent(10)", metric="kl", name="late", min_steps=60)]
    monitor = Monitor(rules)
    monitor.replay(rows)
    # kl last logged at 20: absent from 30 on; the streak spans 19 steps at 50; no firing before 60
    assert [(r["rule"], r["first_step"], r["value"]) for r in monitor.episodes()] == \
        [("long_gone", 50, 30.0), ("late", 60, 40.0)]
    assert same_records(monitor.episodes(), audit_rows(rows, rules))


def test_absent_is_evaluated_again_when_a_later_row_of_the_step_brings_the_key():
    monitor = Monitor([rule("absent(2)", metric="kl")])
    assert monitor.update(1, {"kl": 1.0}) == []
    started = monitor.update(3, {"loss": 1.0})  # the step's first row: kl missing for 2 steps
    assert [(e.kind, e.record["value"]) for e in started] == [("started", 2.0)]
    withdrawn = monitor.update(3, {"kl": 1.0})  # the evaluation row of the same step brings it
    assert [(e.kind, e.withdraws) for e in withdrawn] == [("withdrawn", "started")]
    assert monitor.update(3, {"epoch": 1.0}) == []
    assert monitor.episodes() == []
    assert [e.kind for e in monitor.update(5, {"epoch": 1.0})] == ["started"]


def test_absent_follows_the_alias_the_run_uses():
    catalog = Catalog({"kl": {"all": ["kl", "objective/kl"]}})
    rows = [(s, {"objective/kl": 0.1, "loss": 1.0} if s < 3 else {"loss": 1.0}) for s in range(8)]
    rules = [rule("absent(3)", metric="kl")]
    monitor = Monitor(rules, catalog=catalog)
    monitor.replay(rows)
    assert [(r["metric"], r["first_step"], r["last_step"]) for r in monitor.episodes()] == [("objective/kl", 5, 7)]
    assert same_records(monitor.episodes(), audit_rows(rows, rules, catalog=catalog))


# ================================================================ metric patterns


def test_a_pattern_rule_runs_on_every_matching_key_each_with_its_own_series():
    """A key appearing mid-run starts its series then; records carry the key; aliases do not apply;
    a key that is only ever null never runs."""
    rows = [(0, {"rewards/acc/std": 0.5, "rewards/fmt/std": 0.0, "rewards/a/b/std": 0.0, "rewards/nul/std": None}),
            (1, {"rewards/acc/std": 0.0, "rewards/fmt/std": 0.0, "rewards/nul/std": None}),
            (2, {"rewards/acc/std": 0.0, "rewards/fmt/std": 0.3, "rewards/late/std": 0.0}),
            (3, {"rewards/acc/std": 0.2, "rewards/fmt/std": 0.0, "rewards/late/std": 0.0}),
            (4, {"rewards/acc/std": 0.2, "rewards/fmt/std": 0.0, "rewards/late/std": 0.5})]
    rules = [rule("< 1e-6 for 2 steps", metric="rewards/*/std", name="no_signal",
                  message="{metric} flat since {step}"),
             rule("drop(50%)", metric="rewards/*/std", name="drops", window=1),
             rule("< 0.1", metric="rewards/acc/std", name="acc_low")]  # reads one of the keys itself
    monitor = Monitor(rules)
    events = [e for step, values in rows for e in monitor.update(step, values)]
    got = [(r["rule"], r["metric"], r["first_step"], r["last_step"]) for r in monitor.episodes()]
    # ordered by first_step, rule, then metric; drop(50%) never fires where the baseline is 0
    assert got == [("acc_low", "rewards/acc/std", 1, 2), ("drops", "rewards/acc/std", 1, 4),
                   ("no_signal", "rewards/fmt/std", 1, 1), ("no_signal", "rewards/acc/std", 2, 2),
                   ("no_signal", "rewards/late/std", 3, 3), ("no_signal", "rewards/fmt/std", 4, 4)]
    assert monitor.episodes()[2]["message"] == "rewards/fmt/std flat since 1"
    assert same_records(monitor.episodes(), audit_rows(rows, rules))
    # events of one update come in rule order, a pattern rule's keys in key order
    at_1 = [(e.record["rule"], e.record["metric"]) for e in events if e.step == 1]
    assert at_1 == [("no_signal", "rewards/fmt/std"), ("drops", "rewards/acc/std"), ("acc_low", "rewards/acc/std")]


def test_a_pattern_key_logged_again_at_the_same_step_is_merged():
    monitor = Monitor([rule("> 1", metric="loss/*")])
    assert monitor.update(1, {"loss/a": None}) == []  # null: not a value yet
    assert [e.kind for e in monitor.update(1, {"loss/a": 2.0})] == ["started"]
    assert [(e.kind, e.withdraws) for e in monitor.update(1, {"loss/a": 0.0})] == [("withdrawn", "started")]
    assert [(e.record["metric"], e.kind) for e in monitor.update(2, {"loss/a": 3.0, "loss/b": 3.0})] == \
        [("loss/a", "started"), ("loss/b", "started")]
    assert monitor.not_evaluated == {}


# ================================================================ resumed runs, input


def test_a_step_going_back_is_skipped_and_noted_once():
    monitor = Monitor([rule("> 1")])
    monitor.update(5, {"m": 2.0})
    assert monitor.update(3, {"m": 2.0}) == [] and monitor.update(4, {"m": 0.0}) == []
    assert monitor.skipped_rows == 2 and len(monitor.notices) == 1
    monitor.update(6, {"m": 0.0})
    assert [(r["first_step"], r["last_step"]) for r in monitor.episodes()] == [(5, 5)]


def test_replay_puts_rows_in_step_order_as_the_audit_merges_them():
    rows = [(1, {"m": 0.0}), (2, {"m": 2.0}), (3, {"m": 2.0}), (2, {"m": 0.0}), (3, {"m": 0.0}), (4, {"m": 2.0})]
    monitor = Monitor([rule("> 1")])
    monitor.replay(rows)
    assert same_records(monitor.episodes(), audit_rows(rows, [rule("> 1")]))
    assert monitor.skipped_rows == 0


def test_what_a_row_holds_besides_numbers_is_not_a_metric():
    monitor = Monitor([rule("> 1")])
    monitor.update(1, {"m": "5", "other": None})
    monitor.update(2, {"m": True})
    monitor.update(3, {"m": 2})  # an int is a number
    assert [r["first_step"] for r in monitor.episodes()] == [3]
    assert monitor.update(4.0, {"m": 3.0}) == []  # a whole float step is a step
    # steps as the readers take them from a log (ruledsl.readers.common.training_step), never an exception:
    # 4.5 is cut to step 4, as an audit cuts it; a text holding a number is that number
    assert monitor.update(4.5, {"m": 3.0}) == [] and monitor.update("5", {"m": 3.0}) == []
    assert [(r["first_step"], r["last_step"]) for r in monitor.episodes()] == [(3, 5)]
    assert monitor.skipped_rows == 0 and monitor.notices == [  # the text and the boolean of m: one note
        "'m' at step 1 is a text, not a number: skipped for that row (and wherever 'm' holds no number)",
        "step 4.5 is not a whole number: read as step 4, as an audit reads it (steps like it are cut)"]


def test_rules_lists_what_runs():
    monitor = Monitor(load_rules(), trainer="sft")
    expected = ruledsl.compile_rules(load_rules(), trainer="sft")
    assert [c.rule.name for c in monitor.rules] == [c.rule.name for c in expected]
    assert "sft_loss_flat" in {c.rule.name for c in monitor.rules}
    assert "grpo_kl_high" not in {c.rule.name for c in monitor.rules}
    disabled = rule("> 1", name="off", enabled=False)
    assert [c.rule.name for c in Monitor([rule("> 1"), disabled]).rules] == ["r"]


# ================================================================ faults


def test_a_rule_that_raises_is_switched_off_and_reported_once():
    rules = [rule("> 1", name="broken"), rule("> 1", name="fine")]
    monitor = Monitor(rules)
    broken = next(r for r in monitor._runners if r.rule.name == "broken")

    def explode(series):
        if series.count >= 2:
            raise ArithmeticError("boom")
        return True, series.last, None
    broken.shorthand = dataclasses.replace(broken.shorthand, evaluate=explode)
    rows = [(1, {"m": 2.0}), (2, {"m": 2.0}), (3, {"m": 0.0}), (4, {"m": 3.0})]
    events = [e for step, values in rows for e in monitor.update(step, values)]
    assert [(f.rule, f.step, f.error) for f in monitor.faults] == [("broken", 2, "ArithmeticError: boom")]
    assert [(e.record["rule"], e.kind, e.step) for e in events] == \
        [("broken", "started", 1), ("fine", "started", 1), ("fine", "resolved", 3), ("fine", "started", 4)]
    fine = [r for r in monitor.episodes() if r["rule"] == "fine"]
    assert same_records(fine, audit_rows(rows, [rules[1]]))
    broken_episode = [r for r in monitor.episodes() if r["rule"] == "broken"]
    assert [(r["first_step"], r["last_step"], r["n_evals"]) for r in broken_episode] == [(1, 1, 1)]


# ================================================================ events


def test_events_carry_the_records_of_their_episodes():
    rows = [(s, {"m": v}) for s, v in enumerate([0.0, 2.0, 3.0, 0.0, 5.0, 0.0, 0.0, 7.0])]
    monitor = Monitor([rule("> 1")])
    events = [e for step, values in rows for e in monitor.update(step, values)] + monitor.finish()
    episodes = monitor.episodes()
    started = [e for e in events if e.kind == "started"]
    resolved = [e for e in events if e.kind == "resolved"]
    assert all(isinstance(e, AlertEvent) for e in events)
    assert [e.record["first_step"] for e in started] == [r["first_step"] for r in episodes] == [1, 4, 7]
    for event, episode in zip(started, episodes):
        assert event.record == {**episode, "last_step": episode["first_step"], "n_evals": 1}
        assert event.step == episode["first_step"]
    assert [e.record for e in resolved] == episodes[:2]  # the last one is still firing at the end
    assert [e.step for e in resolved] == [3, 5]
    assert list(events[0].record) == ["run", "rule", "severity", "trainer", "metric", "first_step",
                                      "last_step", "n_evals", "value", "message"]


# ================================================================ memory


def deep_size(root) -> int:
    """Bytes of every object reachable from `root` (functions, classes and modules left out: they
    are the compiled rules' code, the same at any time)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)
    seen, stack, total = set(), [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


@pytest.mark.slow  # 100k updates, and the monitor's objects walked twice
def test_memory_does_not_grow_with_the_number_of_updates():
    """100k updates: what the monitor holds after 10k is what it holds after 100k (no history kept)."""
    rules = [*load_rules(trainer="sft"),
             "all: std(loss, 50) > 0.2 and delta(loss, 30) > -2 -> low: {value}",  # fires throughout
             "all: mean(grad_norm, 40) > 2 * baseline(grad_norm, 40) or max(loss, 64) < min(loss, 10) -> low: x",
             "all: loss spike(3x) -> low: {value}", "all: loss drop(60%) or rise(60%) -> low: {value}"]
    monitor = Monitor(rules, trainer="sft")
    rng = random.Random(0)
    values = [{"loss": 1.0 + rng.random(), "grad_norm": 1.0 + rng.random(), "learning_rate": 1e-3,
               "epoch": 0.1} for _ in range(997)]

    def feed(start, stop):
        for step in range(start, stop):
            monitor.update(step, values[step % len(values)])

    feed(0, 10_000)
    episodes_at_10k = len(monitor.episodes())
    size_at_10k = deep_size(monitor)
    feed(10_000, 100_000)
    grown = deep_size(monitor) - size_at_10k
    episodes_grown = len(monitor.episodes()) - episodes_at_10k
    assert episodes_grown == 0  # one episode stays open from the start; the other rules stay silent
    assert abs(grown) <= 2048, grown  # 90k more values of each key were seen
    assert sum(len(s.values) for s in monitor._series.values()) <= 2 * (2 * 64 + 2)


# ================================================================ coverage (docs/language.md §4)


def batch_coverage(rows: list[tuple[int, dict]], rules: list, *, trainer=None, config=None, run="default"):
    """The batch engine's coverage of rows given as (step, metrics) in file order."""
    from ruledsl.compile import compile_rules
    from ruledsl.engines.batch.engine import AuditGroup, audit_groups, configs_of

    keys = list(dict.fromkeys(k for _, values in rows for k in values))
    records = [{"run": run, "step": step, **{k: values.get(k) for k in keys}} for step, values in rows]
    frame = pl.DataFrame(records, schema={"run": pl.String, "step": pl.Int64, **{k: pl.Float64 for k in keys}})
    group = AuditGroup(frame, compile_rules(rules, trainer=trainer), config=configs_of(config))
    return audit_groups([group]).coverage


def live_coverage(rows, rules, *, trainer=None, config=None, run="default"):
    monitor = Monitor(rules, trainer=trainer, config=config, run=run)
    monitor.replay(rows)
    return monitor.coverage()


# Every reason, on a log of three keys: `a` every step, `b` at odd steps only, `c` at even steps only,
# `rewards/x/std` from step 1 on and `rewards/y/std` at the last step only.
COVERAGE_ROWS = [(s, {"a": float(s), **({"b": 1.0} if s % 2 else {"c": 2.0}),
                      **({"rewards/x/std": 0.5} if s >= 1 else {}), **({"rewards/y/std": 0.1} if s == 9 else {})})
                 for s in range(10)]
COVERAGE_RULES = [
    rule("> 0", metric="a", name="covered"),
    rule("> 0", metric="rewards/x/sdt", name="misspelt"),  # no_key, did you mean rewards/x/std?
    rule("> 0", metric="importance_sampling_ratio", name="alias_missing"),  # no_key, the catalog's keys tried
    rule("b > 0 and c > 0", metric=None, name="never_together"),  # no_joint_rows
    rule("b > 0 and a > 0", metric=None, name="together"),
    rule("> 0", metric="a", name="warm_up_too_long", min_steps=100),  # too_short: all 10 evaluations below
    rule("mean(a, 20) > 0", metric=None, name="window_too_long"),  # too_short: no evaluation
    rule("mean(a, 20) > b", metric=None, name="joint_window_too_long"),  # too_short: rows shared, windows short
    rule("drop(50%)", metric="b", name="drop_never_defined", window=5),  # too_short (needs 10 values of b)
    rule("absent(3)", metric="rewards/y/std", name="absent_after_last"),  # too_short: first logged at the end
    rule("> 0", metric="zzz/*/std", name="pattern_unmatched"),  # no_key
    rule("spike(2x)", metric="rewards/*/std", name="pattern_per_key", window=3),  # too_short on rewards/y/std
    rule("a > config.limit", metric=None, name="needs_limit"),  # config_unknown
    rule("> 0", metric="a", name="when_false", when="config.mode == 'other'"),
    rule("> 0", metric="a", name="when_true", when="config.mode == 'fast'"),
    rule("nonfinite", metric="c", name="nonfinite_c"),
]


def test_coverage_gives_every_reason_with_the_batch_wording():
    got = {(r.rule, r.metric): (r.reason, r.detail)
           for r in live_coverage(COVERAGE_ROWS, COVERAGE_RULES, config={"mode": "fast"})}
    tried = ", ".join(builtin_catalog().candidates("importance_sampling_ratio"))
    assert got == {
        ("misspelt", None): ("no_key", "no value of rewards/x/sdt in the run; did you mean rewards/x/std?"),
        ("alias_missing", None): ("no_key", f"no value of importance_sampling_ratio (tried {tried}) in the run"),
        ("never_together", None): ("no_joint_rows", "b, c are never logged at the same step"),
        ("warm_up_too_long", None): ("too_short", "all 10 evaluations fell below min_steps 100"),
        ("window_too_long", None): ("too_short", "the series never reached the values its windows need"),
        ("joint_window_too_long", None): ("too_short", "the series never reached the values its windows need"),
        ("drop_never_defined", None): ("too_short", "the series never reached the values its windows need"),
        ("absent_after_last", None): ("too_short", "the series never reached the values its windows need"),
        ("pattern_unmatched", None): ("no_key", "no key of the run matches zzz/*/std"),
        ("pattern_per_key", "rewards/y/std"): ("too_short", "the series never reached the values its windows need"),
        ("needs_limit", None): ("config_unknown", "the run's configuration has no limit"),
        ("when_false", None): ("when_false", "when: config.mode == 'other' is false on this run"),
    }


@pytest.mark.parametrize("config", [{"mode": "fast"}, {"mode": "other", "limit": 3}, None])
def test_coverage_is_the_batch_audits_coverage(config):
    live = live_coverage(COVERAGE_ROWS, COVERAGE_RULES, config=config, run="r")
    batch = batch_coverage(COVERAGE_ROWS, COVERAGE_RULES, config=config, run="r")
    assert live == batch
    assert len([r for r in live if r in batch]) >= 8
    assert [r.rule for r in live] == sorted(r.rule for r in live)  # ordered by rule, as the audit's


def test_an_unmatched_pattern_is_no_key_in_the_batch_coverage_too():
    rules = [rule("> 0", metric="zzz/*/std", name="pattern_unmatched")]
    assert batch_coverage(COVERAGE_ROWS, rules) == live_coverage(COVERAGE_ROWS, rules)


@pytest.mark.parametrize("name", ["window_too_long", "joint_window_too_long"])
def test_an_expression_whose_windows_never_fill_is_too_short_in_the_batch_coverage_too(name):
    rules = [r for r in COVERAGE_RULES if r["name"] == name]
    assert batch_coverage(COVERAGE_ROWS, rules) == live_coverage(COVERAGE_ROWS, rules)


@pytest.mark.parametrize("path", REAL_LOGS, ids=[p.stem for p in REAL_LOGS])
def test_coverage_of_real_trl_logs_is_the_batch_audits(path):
    """Builtin rules for the log's trainer (and for any trainer), with a misspelt alert, an alert on an
    alias, a warm-up past the end, a pattern and a full expression across training and evaluation rows."""
    rows = read_log(path)
    alerts = ["all: los > 1 -> low: misspelt", "all: importance_sampling_ratio < 0.5 -> high: alias",
              "all: `rewards/*/std` < 0.01 -> low: {metric} flat", "all: eval_loss > loss -> low: eval above",
              "all: entropy < 100 for 1000 steps -> low: long", "all: grad_norm nonfinite -> high: nan"]
    warm_up = rule("> 0", metric="loss", name="warm_up_past_the_end", min_steps=10_000)
    for trainer in (TRAINER_OF_LOG.get(path.stem, path.stem), None):
        rules = [*load_rules(trainer=trainer), *alerts, warm_up]
        live = live_coverage(rows, rules, trainer=trainer, config={"beta": 0.1}, run=path.stem)
        batch = batch_coverage(rows, rules, trainer=trainer, config={"beta": 0.1}, run=path.stem)
        assert live == batch
        assert any(r.rule == "warm_up_past_the_end" and r.reason == "too_short" for r in live)
        misspelt = next(r for r in live if r.rule.startswith("inline_los_"))
        assert misspelt.detail == "no value of los in the run; did you mean loss?"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_coverage_of_every_worked_case_is_the_batch_audits(case):
    rules = [rule_mapping(case)]
    assert live_coverage(case_rows(case), rules, config=config_of(case)) == \
        batch_coverage(case_rows(case), rules, config=config_of(case))


def test_coverage_is_computed_on_demand_as_the_run_goes():
    monitor = Monitor([rule("> 0", metric="loss", name="loss_seen", min_steps=2),
                       rule("eval_loss > loss", metric=None, name="eval_above"),
                       rule("> 0", metric="los", name="typo")])
    assert [(r.rule, r.reason) for r in monitor.coverage()] == [
        ("eval_above", "no_key"), ("loss_seen", "no_key"), ("typo", "no_key")]
    monitor.update(0, {"los": None, "loss": 1.0})  # `los` holds no value: not a key of the run
    assert [(r.rule, r.reason, r.detail) for r in monitor.coverage()] == [
        ("eval_above", "no_key", "no value of eval_loss in the run"),
        ("loss_seen", "too_short", "all 1 evaluations fell below min_steps 2"),
        ("typo", "no_key", "no value of los in the run; did you mean loss?")]
    monitor.update(1, {"loss": 1.0})
    monitor.update(1, {"loss": 2.0})  # the step evaluated again: counted once
    assert monitor.coverage()[1].detail == "all 2 evaluations fell below min_steps 2"
    monitor.update(2, {"loss": 1.0})
    monitor.update(2, {"eval_loss": 0.5})
    assert [r.rule for r in monitor.coverage()] == ["typo"]


def test_a_covered_rule_runs_without_its_watch():
    """Coverage costs a rule nothing per row once it has been evaluated at a step ≥ its min_steps."""
    monitor = Monitor([rule("> 0", metric="loss", name="now"), rule("> 0", metric="loss", name="later", min_steps=5)])
    monitor.update(1, {"loss": 1.0})
    watched = {r.rule.name: "run_step" in vars(r) for r in monitor._runners}
    assert watched == {"now": False, "later": True}
    monitor.update(5, {"loss": 1.0})
    assert not any("run_step" in vars(r) for r in monitor._runners)
    assert monitor.coverage() == []


def test_coverage_of_a_rule_switched_off_by_a_fault_stays_what_it_was():
    monitor = Monitor([rule("> 0", metric="loss", name="broken", min_steps=3)])
    runner = monitor._runners[0]
    monitor.update(1, {"loss": 1.0})

    def raising(*args):
        raise RuntimeError("boom")

    runner.shorthand = dataclasses.replace(runner.shorthand, evaluate=raising)  # still behind its watch
    monitor.update(2, {"loss": 1.0})
    assert [f.rule for f in monitor.faults] == ["broken"]
    assert [(r.rule, r.reason) for r in monitor.coverage()] == [("broken", "too_short")]


def test_open_episodes_are_the_ones_still_firing_patterns_included():
    rules = [ruledsl.parse_inline_alert("all: loss > 1 -> high: loss high"),
             {"name": "std_high", "trainers": ["all"], "metric": "rewards/*/std", "condition": "> 1",
              "severity": "medium", "message": "std {value}"}]
    monitor = Monitor(rules)
    rows = [(1, {"loss": 2.0, "rewards/a/std": 2.0, "rewards/b/std": 0.5}),
            (2, {"loss": 0.5, "rewards/a/std": 2.0, "rewards/b/std": 2.0})]
    for step, row in rows:
        monitor.update(step, row)
    loss_rule = rules[0].name
    assert [(r["rule"], r["metric"], r["first_step"]) for r in monitor.episodes()] == [
        (loss_rule, "loss", 1), ("std_high", "rewards/a/std", 1), ("std_high", "rewards/b/std", 2)]
    # the loss episode ended at step 2; both pattern episodes still fire
    assert [(r["rule"], r["metric"], r["first_step"]) for r in monitor.open_episodes()] == [
        ("std_high", "rewards/a/std", 1), ("std_high", "rewards/b/std", 2)]
    assert all(record in monitor.episodes() for record in monitor.open_episodes())
