"""Property tests: the incremental engine (ruledsl.monitor.Monitor) equals the batch audit, record for record.

The logs and rules are test_properties.py's strategies (imported, not copied):
several runs, missing keys, NaN/±inf, steps logged again later in the file, an
alias resolved per run, every shorthand and full-expression feature. Each run
goes through its own Monitor, row by row; the records of `Monitor.episodes()`
must equal `ruledsl.audit(...)`'s exactly: first and last step, n_evals, the
value to the bit (NaN equal to NaN, -0.0 apart from 0.0) and the message.

The events the monitor returned on the way must tell the same story as its
episodes (`replay_events` below rebuilds the episodes from them).

Version 2 of the language (test_properties.py's v2 strategies): sparse and uneven
steps with `for N steps` and `min_steps` in training steps, absent(N), lagged
windows, `step` and `config.KEY` in full expressions, `when` (each run's Monitor
gets that run's configuration), metric patterns (a runner per matching key,
started late), JSON nulls, and windows up to 200, all compared to the bit.
"""

from __future__ import annotations

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import ruledsl
from ruledsl.engines.live.monitor import Monitor
from test_properties import (
    CATALOG,
    COARSE,
    DECIMAL,
    EXPRESSION_FEATURES,
    FRAMES,
    NULL_CASES,
    PATTERN_KINDS,
    SETTINGS,
    SHORTHAND_KINDS,
    V2_FEATURES,
    V2_SHORTHAND_KINDS,
    Case,
    audit_config,
    check_parse,
    expression_cases,
    frame_rows,
    long_window_cases,
    pattern_cases,
    shorthand_cases,
    show_case,
    sparse_shorthand_cases,
    v2_expression_cases,
)

pytestmark = pytest.mark.slow  # hundreds of generated logs, each through the monitor and the audit

RUN_OF_FRAME_WITHOUT_RUN = "default"


def same_records(got: list[dict], expected: list[dict]) -> bool:
    """Equal field by field; floats compared by repr (exact bits, NaN equal to itself)."""
    return repr(got) == repr(expected)


def runs_of(case: Case, form: str = "wide") -> dict[str, list]:
    """run id → its rows (step, metrics) in file order, as a frame of that form holds them
    (test_properties.frame_rows: a long frame carries JSON nulls, a wide one cannot)."""
    runs: dict[str, list] = {}
    for run, step, values in frame_rows(case.log, form):
        run_id = run if case.log.run_column else RUN_OF_FRAME_WITHOUT_RUN
        runs.setdefault(run_id, []).append((step, values))
    return runs


def monitor_records(case: Case, rules: list, form: str = "wide") -> tuple[list[dict], list[tuple[Monitor, list]]]:
    """Every run through its own Monitor (with the run's configuration); records sorted as audit
    sorts them (run, first_step, rule, metric)."""
    records, monitors = [], []
    for run, rows in runs_of(case, form).items():
        config = case.configs.of_run(run) if case.configs is not None else None
        monitor = Monitor(rules, catalog=CATALOG, run=run, config=config)
        events = monitor.replay(rows)
        monitors.append((monitor, events))
        records.extend(monitor.episodes())
    return sorted(records, key=lambda r: (r["run"], r["first_step"], r["rule"], r["metric"] or "")), monitors


def replay_events(events: list) -> dict[tuple, dict]:
    """(rule, metric, first_step) → {"started": record, "resolved": record or None}, as the events
    left them (a pattern rule's keys may start episodes at the same step)."""
    announced: dict[tuple, dict] = {}
    for event in events:
        key = (event.record["rule"], event.record["metric"], event.record["first_step"])
        if event.kind == "started":
            announced[key] = {"started": event.record, "resolved": None}
        elif event.kind == "resolved":
            announced[key]["resolved"] = event.record
        elif event.withdraws == "started":
            del announced[key]
        else:  # a resolution withdrawn: the episode goes on
            announced[key]["resolved"] = None
    return announced


def check_events(monitor: Monitor, events: list) -> None:
    """Started events are the episodes as they began; resolved events carry the finished records."""
    announced = replay_events(events)
    episodes = {(r["rule"], r["metric"], r["first_step"]): r for r in monitor.episodes()}
    assert set(announced) == set(episodes)
    for key, record in episodes.items():
        started, resolved = announced[key]["started"], announced[key]["resolved"]
        assert repr(started) == repr({**record, "last_step": record["first_step"], "n_evals": 1})
        if resolved is not None:
            assert repr(resolved) == repr(record)


def check_monitor(case: Case, form: str) -> None:
    rule = check_parse(case)
    show_case(case, form)
    expected = ruledsl.audit(FRAMES[form](case.log), [rule], catalog=CATALOG, config=audit_config(case)).to_dicts()
    got, monitors = monitor_records(case, [rule], form)
    shown = ("run", "metric", "first_step", "last_step", "n_evals", "value", "message")
    note(f"audit   (run, metric, first, last, n, value, message): {[tuple(r[k] for k in shown) for r in expected]}")
    note(f"monitor (run, metric, first, last, n, value, message): {[tuple(r[k] for k in shown) for r in got]}")
    for monitor, _ in monitors:
        if monitor.faults or monitor.not_evaluated:
            note(f"monitor of {monitor.run}: faults {monitor.faults}, not evaluated {monitor.not_evaluated}")
    assert same_records(got, expected)
    for monitor, events in monitors:
        assert not monitor.faults and monitor.skipped_rows == 0
        check_events(monitor, events)


@settings(max_examples=120, **SETTINGS)
@given(case=st.sampled_from(SHORTHAND_KINDS).flatmap(shorthand_cases), form=st.sampled_from(["wide", "long"]))
def test_shorthand_rules_give_the_audit_records(case, form):
    check_monitor(case, form)


@settings(max_examples=120, **SETTINGS)
@given(case=st.sampled_from(EXPRESSION_FEATURES).flatmap(expression_cases), form=st.sampled_from(["wide", "long"]))
def test_full_expressions_give_the_audit_records(case, form):
    check_monitor(case, form)


@settings(max_examples=60, **SETTINGS)
@given(case=st.one_of(st.sampled_from(SHORTHAND_KINDS[:-1]).flatmap(lambda k: shorthand_cases(k, DECIMAL)),
                      st.sampled_from(EXPRESSION_FEATURES).flatmap(lambda f: expression_cases(f, DECIMAL))))
def test_decimal_values_give_the_audit_records_to_the_bit(case):
    """Values like real logs (0.01 steps): rounded window means, std, baselines equal to the bit."""
    check_monitor(case, "wide")


@settings(max_examples=40, **SETTINGS)
@given(shorthand=st.sampled_from(SHORTHAND_KINDS).flatmap(shorthand_cases), data=st.data())
def test_several_rules_in_one_monitor(shorthand, data):
    """A shorthand rule and full expressions on the same log, in one monitor: no cross-talk."""
    expression = data.draw(expression_cases())
    rules = [ruledsl.Rule.from_dict(dict(shorthand.mapping, name="short")),
             ruledsl.Rule.from_dict(dict(expression.mapping, name="expr")),
             ruledsl.Rule.from_dict(dict(shorthand.mapping, name="short_again", window=1, min_steps=0))]
    expected = ruledsl.audit(FRAMES["wide"](shorthand.log), rules, catalog=CATALOG).to_dicts()
    got, monitors = monitor_records(shorthand, rules)
    assert same_records(got, expected)
    for monitor, events in monitors:
        check_events(monitor, events)


# ---------------------------------------------------------------- version 2


@settings(max_examples=100, **SETTINGS)
@given(case=st.sampled_from(V2_SHORTHAND_KINDS).flatmap(sparse_shorthand_cases), form=st.sampled_from(["wide", "long"]))
def test_sparse_logs_shorthand_rules_give_the_audit_records(case, form):
    """Steps with gaps, every k, uneven; for/min_steps in steps; absent(N); keys that come and go; when."""
    check_monitor(case, form)


@settings(max_examples=100, **SETTINGS)
@given(case=st.sampled_from(V2_FEATURES).flatmap(v2_expression_cases), form=st.sampled_from(["wide", "long"]))
def test_v2_full_expressions_give_the_audit_records(case, form):
    """Lagged windows, `step`, `config.KEY` (each run's configuration), `when`."""
    check_monitor(case, form)


@settings(max_examples=60, **SETTINGS)
@given(case=st.sampled_from(PATTERN_KINDS).flatmap(pattern_cases), form=st.sampled_from(["wide", "long"]))
def test_metric_patterns_give_the_audit_records(case, form):
    """A runner per matching key, started at the key's first value (keys that appear late)."""
    check_monitor(case, form)


@settings(max_examples=60, **SETTINGS)
@given(case=NULL_CASES, form=st.sampled_from(["wide", "long"]))
def test_json_nulls_give_the_audit_records(case, form):
    """JSON nulls fed to the monitor as None (a long frame's null records): overrides, null-only steps."""
    check_monitor(case, form)


@settings(max_examples=40, **SETTINGS)
@given(case=st.sampled_from([COARSE, DECIMAL]).flatmap(long_window_cases), form=st.sampled_from(["wide", "long"]))
def test_long_windows_give_the_audit_records_to_the_bit(case, form):
    """W up to 200 (past 64, where the batch engine's exact kernel takes over) and lags 0..5."""
    check_monitor(case, form)


@settings(max_examples=30, **SETTINGS)
@given(shorthand=st.sampled_from(V2_SHORTHAND_KINDS).flatmap(sparse_shorthand_cases), data=st.data())
def test_several_v2_rules_in_one_monitor(shorthand, data):
    """A shorthand (maybe absent, maybe with `when`), a v2 full expression and a pattern rule on one
    log, in one monitor per run with the run's configuration: no cross-talk."""
    expression = data.draw(st.sampled_from(V2_FEATURES).flatmap(v2_expression_cases), label="expression")
    configs = shorthand.configs if shorthand.configs is not None else expression.configs
    case = Case(shorthand.log, shorthand.mapping, shorthand.tree, configs)
    rules = [ruledsl.Rule.from_dict(dict(shorthand.mapping, name="short")),
             ruledsl.Rule.from_dict(dict(expression.mapping, name="expr")),
             ruledsl.Rule.from_dict(dict(shorthand.mapping, name="short_again", window=1, min_steps=0)),
             ruledsl.Rule.from_dict({"name": "pattern", "trainers": ["all"], "severity": "low", "message": "{value}",
                                     "metric": "*", "condition": "> 1"})]
    show_case(case, "wide")
    expected = ruledsl.audit(FRAMES["wide"](case.log), rules, catalog=CATALOG, config=audit_config(case)).to_dicts()
    got, monitors = monitor_records(case, rules)
    shown = ("run", "rule", "metric", "first_step", "last_step", "n_evals")
    note(f"audit:   {[tuple(r[k] for k in shown) for r in expected]}")
    note(f"monitor: {[tuple(r[k] for k in shown) for r in got]}")
    assert same_records(got, expected)
    for monitor, events in monitors:
        check_events(monitor, events)
