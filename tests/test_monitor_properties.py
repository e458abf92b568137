"""Property tests: the incremental engine (ruledsl.monitor.Monitor) equals the batch audit, record for record.

The logs and rules are test_properties.py's strategies (imported, not copied):
several runs, missing keys, NaN/±inf, steps logged again later in the file, an
alias resolved per run, every shorthand and full-expression feature. Each run
goes through its own Monitor, row by row; the records of `Monitor.episodes()`
must equal `ruledsl.audit(...)`'s exactly: first and last step, n_evals, the
value to the bit (NaN equal to NaN, -0.0 apart from 0.0) and the message.

The events the monitor returned on the way must tell the same story as its
episodes (`replay_events` below rebuilds the episodes from them).
"""

from __future__ import annotations

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import ruledsl
from ruledsl.engines.live.monitor import Monitor
from test_properties import (
    CATALOG,
    DECIMAL,
    EXPRESSION_FEATURES,
    FRAMES,
    SETTINGS,
    SHORTHAND_KINDS,
    Case,
    check_parse,
    expression_cases,
    shorthand_cases,
)

pytestmark = pytest.mark.slow  # hundreds of generated logs, each through the monitor and the audit

RUN_OF_FRAME_WITHOUT_RUN = "default"


def same_records(got: list[dict], expected: list[dict]) -> bool:
    """Equal field by field; floats compared by repr (exact bits, NaN equal to itself)."""
    return repr(got) == repr(expected)


def runs_of(case: Case) -> dict[str, list]:
    """run id → its rows (step, metrics) in file order."""
    runs: dict[str, list] = {}
    for run, step, values in case.log.rows:
        run_id = run if case.log.run_column else RUN_OF_FRAME_WITHOUT_RUN
        runs.setdefault(run_id, []).append((step, values))
    return runs


def monitor_records(case: Case, rules: list) -> tuple[list[dict], list[tuple[Monitor, list]]]:
    """Every run through its own Monitor; records sorted as audit sorts them (run, first_step, rule)."""
    records, monitors = [], []
    for run, rows in runs_of(case).items():
        monitor = Monitor(rules, catalog=CATALOG, run=run)
        events = monitor.replay(rows)
        monitors.append((monitor, events))
        records.extend(monitor.episodes())
    return sorted(records, key=lambda r: (r["run"], r["first_step"], r["rule"])), monitors


def replay_events(events: list) -> dict[tuple, dict]:
    """(rule, first_step) → {"started": record, "resolved": record or None}, as the events left them."""
    announced: dict[tuple, dict] = {}
    for event in events:
        key = (event.record["rule"], event.record["first_step"])
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
    episodes = {(r["rule"], r["first_step"]): r for r in monitor.episodes()}
    assert set(announced) == set(episodes)
    for key, record in episodes.items():
        started, resolved = announced[key]["started"], announced[key]["resolved"]
        assert repr(started) == repr({**record, "last_step": record["first_step"], "n_evals": 1})
        if resolved is not None:
            assert repr(resolved) == repr(record)


def check_monitor(case: Case, form: str) -> None:
    rule = check_parse(case)
    expected = ruledsl.audit(FRAMES[form](case.log), [rule], catalog=CATALOG).to_dicts()
    got, monitors = monitor_records(case, [rule])
    note(f"audit:   {[(r['run'], r['first_step'], r['last_step'], r['n_evals'], r['value']) for r in expected]}")
    note(f"monitor: {[(r['run'], r['first_step'], r['last_step'], r['n_evals'], r['value']) for r in got]}")
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
