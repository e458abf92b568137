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
from conformance_cases import assert_episodes, load_cases, rule_mapping, wide_frame
from ruledsl.engines.live.monitor import AlertEvent, Monitor
from ruledsl.model.catalog import Catalog
from ruledsl.model.loader import load_rules
from ruledsl.readers import read_archive

CASES = load_cases()
REAL_LOGS = sorted((Path(__file__).parent / "data" / "real_trl_logs").glob("*.jsonl"))
TRAINER_OF_LOG = {"sft_chat": "sft", "grpo_chat": "grpo", "grpo_kl": "grpo"}


def same_records(got: list[dict], expected: list[dict]) -> bool:
    """Equal field by field; floats compared by repr (exact bits, NaN equal to itself)."""
    return repr(got) == repr(expected)


def case_rows(case: dict) -> list[tuple[int, dict]]:
    return [(step, {k: float(v) for k, v in values.items()}) for step, values in case["rows"]]


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


# ================================================================ spec §9 worked cases


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_every_worked_case(case):
    monitor = Monitor([rule_mapping(case)])
    monitor.replay(case_rows(case))
    episodes = monitor.episodes()
    assert_episodes(episodes, case["expect"], case["id"])
    assert same_records(episodes, ruledsl.audit(wide_frame(case), [rule_mapping(case)]).to_dicts())


IN_STEP_ORDER = [c for c in CASES if all(a[0] <= b[0] for a, b in zip(c["rows"], c["rows"][1:]))]
GOING_BACK = [c for c in CASES if c not in IN_STEP_ORDER]


@pytest.mark.parametrize("case", IN_STEP_ORDER, ids=[c["id"] for c in IN_STEP_ORDER])
def test_worked_cases_row_by_row_in_file_order(case):
    """Fed live, one update per row (same-step rows included): the same episodes, announced once."""
    monitor = Monitor([rule_mapping(case)])
    events = [e for step, values in case_rows(case) for e in monitor.update(step, values)]
    events += monitor.finish()
    assert_episodes(monitor.episodes(), case["expect"], case["id"])
    started = [e.record["first_step"] for e in events if e.kind == "started"]
    assert started == [e["first_step"] for e in case["expect"]]


def test_cases_whose_steps_go_back_are_resumed_runs():
    """Rows whose step goes back are skipped live (and said so); replay merges them as audit does."""
    assert [c["id"] for c in GOING_BACK] == ["c029", "c030"]
    for case in GOING_BACK:
        monitor = Monitor([rule_mapping(case)])
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
    monitor = Monitor(["ppo: kl > 0.5 -> high: {metric} {value}"], trainer="ppo")
    monitor.update(1, {"objective/kl": 0.9})
    assert [(r["metric"], r["message"]) for r in monitor.episodes()] == [("objective/kl", "objective/kl 0.9")]


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
    with pytest.raises(TypeError, match="whole number"):
        monitor.update(4.5, {"m": 3.0})
    with pytest.raises(TypeError, match="whole number"):
        monitor.update("5", {"m": 3.0})


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
