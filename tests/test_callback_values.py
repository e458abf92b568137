"""The callback and the Monitor hold their contract on any logged value and step (issue: hostile input).

A value that is no number is skipped for that key and row and said once; a number past any float
is ±inf, as the readers read it; a row whose step names no training step is skipped and said once.
Nothing is switched off, and what the callback writes to metrics.jsonl is what it evaluated: an
audit of the file later finds the live episodes (live = batch).

The callback tests drive the real DiagnosticsCallback with transformers' own TrainingArguments,
TrainerState and TrainerControl, one on_log per row, as the Trainer does (no training run)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ruledsl
from ruledsl.alerts import json_safe
from ruledsl.engines.live.monitor import Monitor
from ruledsl.readers import read_archive
from ruledsl.readers.common import training_step as reader_step


class Boom:
    """A value whose float() raises: a tensor on a device that is gone, a lazy metric that fails."""

    def __float__(self):
        raise RuntimeError("device lost")

    def __repr__(self):
        return "Boom()"


class Rude:
    """An object whose every attribute raises, and whose repr does too."""

    def __getattr__(self, name):
        raise RuntimeError(name)

    def __repr__(self):
        raise RuntimeError("no repr")


SKIP, NULL = "skip", "null"  # what a logged value means besides a number: no value, or JSON null
# (value, what it means to the rules: a float, NULL, or SKIP), as the batch readers read the same
# value written to a JSON log (ruledsl/readers/common.py `number`): the oracle, written out by hand
VALUES = [
    (0.5, 0.5), (-0.0, -0.0), (math.nan, math.nan), (math.inf, math.inf), (-math.inf, -math.inf),
    (3, 3.0), (2**70, float(2**70)), (2**53 + 1, float(2**53 + 1)),
    (10**400, math.inf), (-(10**400), -math.inf),  # past any float: ±inf, as a reader reads the integer
    ("nan", math.nan), (" -Inf", -math.inf), ("Infinity", math.inf),  # the texts the spec's readers accept
    (None, NULL),
    (np.float32(0.75), 0.75), (np.float64(0.25), 0.25), (np.int64(7), 7.0), (np.array(1.5), 1.5),
    (Decimal("0.5"), 0.5), (Decimal("NaN"), math.nan), (Decimal("1e400"), math.inf),
    (Fraction(3, 4), 0.75), (Fraction(10**400, 3), math.inf), (Fraction(-(10**400), 3), -math.inf),
    (True, SKIP), (False, SKIP), (np.True_, SKIP), ("0.5", SKIP), ("text", SKIP), ("", SKIP), (b"1", SKIP),
    (1 + 2j, SKIP), (np.complex128(1), SKIP), (Decimal("sNaN"), SKIP), ([1.0], SKIP), ({"a": 1.0}, SKIP),
    (np.array([1.0]), SKIP), (np.array("0.5"), SKIP), (Boom(), SKIP), (Rude(), SKIP), (object(), SKIP),
]


def clean_row(tagged: dict) -> dict:
    """The row a hostile row means, from the oracle: text keys, numbers and nulls."""
    return {k: (None if meaning == NULL else meaning) for k, (_, meaning) in tagged.items()
            if isinstance(k, str) and meaning != SKIP}


def hostile_row(tagged: dict) -> dict:
    return {k: value for k, (value, _) in tagged.items()}


def same(got, expected) -> bool:
    """Equal to the bit: NaN equal to NaN, -0.0 apart from 0.0 (reprs of floats)."""
    return repr(got) == repr(expected)


# ================================================================ the Monitor: values


MONITOR_RULES = ["all: a > 0.5 -> high: a {value}", "all: b nonfinite -> medium: b {value}",
                 "all: c absent(2) -> low: c gone", "all: mean(a, 2) > 0.3 -> low: mean {value}",
                 "all: a + b > 1 -> low: sum {value}", "all: `p/*/std` < 0.01 -> low: flat {value}"]
KEYS = ["a", "b", "c", "p/x/std", "p/y/std", ("t", 1), 7, ""]


@pytest.mark.parametrize("value, meaning", VALUES, ids=[f"{i}" for i in range(len(VALUES))])
def test_the_monitor_reads_each_kind_of_value_as_the_readers_do(value, meaning):
    rules = ["all: a > 0.5 -> high: a {value}", "all: a nonfinite -> medium: a {value}",
             "all: a absent(1) -> low: a gone"]
    hostile, clean = Monitor(rules), Monitor(rules)
    for step in (1, 2, 3, 4):
        hostile.update(step, {"a": value} if step == 2 else {"a": 0.1})
        clean.update(step, clean_row({"a": (value, meaning)}) if step == 2 else {"a": 0.1})
    assert same(hostile.episodes(), clean.episodes()) and not hostile.faults
    noted = [n for n in hostile.notices if "'a' at step 2" in n]
    assert len(noted) == (meaning == SKIP), hostile.notices


def test_a_value_whose_float_raises_is_skipped_for_that_row_and_noted_once():
    monitor = Monitor(["all: x > 1 -> high: x {value}", "all: loss > 1 -> high: loss {value}"])
    for step in range(1, 4):
        assert monitor.update(step, {"x": Boom(), "loss": 0.5}) == []
    assert [e.record["rule"] for e in monitor.update(4, {"x": 5.0, "loss": 2.0})] == [
        c.rule.name for c in monitor.rules]  # both rules still run: nothing was switched off
    assert not monitor.faults and monitor.notices == [
        "'x' at step 1 is a value of type Boom whose float() raised RuntimeError, not a number: skipped for "
        "that row (and wherever 'x' holds no number)"]


def test_a_key_that_is_no_text_is_skipped_and_noted_once_even_with_a_pattern_rule():
    # before: a pattern rule matched its regex against the tuple key, and the update raised TypeError
    monitor = Monitor(["all: `p/*` > 1 -> high: p {value}", "all: loss > 1 -> high: loss {value}"])
    for step in (1, 2):
        monitor.update(step, {("a", 1): 0.5, 3: 2.0, "loss": 2.0, "p/q": 2.0})
    assert {(r["rule"].split("_")[1], r["first_step"]) for r in monitor.episodes()} == {("loss", 1), ("p", 1)}
    assert monitor.notices == ["a key that is no text, ('a', 1), is skipped (no rule can name it)",
                               "a key that is no text, 3, is skipped (no rule can name it)"]
    assert [r.rule for r in monitor.coverage()] == []


def test_a_pattern_key_whose_first_value_is_no_number_is_noted():
    monitor = Monitor(["all: `p/*` > 1 -> high: p {value}"])
    monitor.update(1, {"p/q": "2.0"})
    monitor.update(2, {"p/q": 2.0})
    assert [r["first_step"] for r in monitor.episodes()] == [2]
    assert monitor.notices == ["'p/q' at step 1 is a text, not a number: skipped for that row "
                               "(and wherever 'p/q' holds no number)"]


def test_notes_about_keys_stop_after_ten_keys():
    monitor = Monitor(["all: `k/*` > 1 -> high: k {value}"])
    for step in range(1, 30):
        monitor.update(step, {f"k/{step}": "odd"})
    assert len(monitor.notices) == 10 and monitor.notices[-1].endswith("; 10 keys said so, later ones go unsaid")


@given(rows=st.lists(st.tuples(st.sampled_from([0, 1, 1, 2]),
                               st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=6)),
                     max_size=12))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_hostile_row_is_evaluated_as_its_clean_row(rows):
    """Whatever the values: no exception, no fault, the values that are no number skipped, every
    other key evaluated exactly as in the row holding only the numbers and nulls (the oracle)."""
    hostile, clean = Monitor(MONITOR_RULES), Monitor(MONITOR_RULES)
    step = 0
    for increment, tagged in rows:
        step += increment
        got = hostile.update(step, hostile_row(tagged))
        expected = clean.update(step, clean_row(tagged))
        assert same([(e.kind, e.record) for e in got], [(e.kind, e.record) for e in expected])
    assert same(hostile.episodes(), clean.episodes()) and same(hostile.coverage(), clean.coverage())
    assert not hostile.faults and hostile.skipped_rows == clean.skipped_rows == 0
    skipped = {k for _, tagged in rows for k, (_, meaning) in tagged.items()
               if meaning == SKIP and k in ("a", "b", "c")}  # the keys the rules read
    assert {k for k in skipped if any(n.startswith(f"'{k}' at step") for n in hostile.notices)} == skipped


# ================================================================ the Monitor: steps


STEPS = [10**30, 2**63, -(2**63) - 1, 10**400, math.nan, math.inf, -math.inf, True, False, None, "x", "nan",
         "1e30", 1 + 2j, [3], Boom(), Rude(), Decimal("sNaN")]


@pytest.mark.parametrize("step", STEPS, ids=[f"{i}" for i in range(len(STEPS))])
def test_a_row_whose_step_names_no_training_step_is_skipped_and_noted_once(step):
    monitor = Monitor(["all: loss > 1 -> high: loss {value}"])
    assert monitor.update(step, {"loss": 2.0}) == [] and monitor.update(step, {"loss": 3.0}) == []
    assert monitor.skipped_rows == 2 and len(monitor.notices) == 1
    assert "names no training step" in monitor.notices[0] and not monitor.faults
    assert [e.kind for e in monitor.update(5, {"loss": 2.0})] == ["started"]  # nothing switched off
    assert monitor.replay([(step, {"loss": 2.0}), (6, {"loss": 2.0})]) == [] and monitor.skipped_rows == 3


JSON_STEPS = st.one_of(st.integers(), st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: n * 2**40),
                       st.floats(), st.booleans(), st.none(),
                       st.sampled_from(["7", " 12 ", "-3", "4.5", "1e3", "nan", "inf", "x", "", "1" * 30]))


@given(step=JSON_STEPS)
@settings(max_examples=300, deadline=None)
def test_the_monitor_places_a_row_at_the_step_the_readers_read(step):
    """Live = batch for steps: the step a line of a JSON log names (ruledsl.readers.common.training_step,
    negative and cut fractional steps included), or the row skipped where it names none."""
    monitor = Monitor(["all: loss > 1 -> high: loss {value}"])
    monitor.update(step, {"loss": 2.0})
    expected = reader_step(step)
    assert monitor._step == expected  # the step the row was merged at (None: no row yet)
    assert [r["first_step"] for r in monitor.episodes()] == ([expected] if expected is not None and expected >= 0
                                                            else [])  # min_steps 0: no alert below step 0
    assert monitor.skipped_rows == (expected is None)


def test_a_row_that_is_no_mapping_is_skipped_and_noted_once():
    monitor = Monitor(["all: loss > 1 -> high: loss {value}"])
    for row in (None, [("loss", 2.0)], "loss"):
        assert monitor.update(1, row) == []  # type: ignore[arg-type]
    assert monitor.skipped_rows == 3 and len(monitor.notices) == 1 and "not a mapping" in monitor.notices[0]
    assert [e.kind for e in monitor.update(2, {"loss": 2.0})] == ["started"]


# ================================================================ the callback, with transformers' own objects


def _training(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], run_name="hostile")
    return args, transformers.TrainerState(), transformers.TrainerControl()


def _callback(alerts: list[str], **kwargs):
    from ruledsl.integrations.callback import DiagnosticsCallback

    return DiagnosticsCallback(custom_alerts=alerts, include_builtin=False, **kwargs)


def _train(callback, tmp_path: Path, rows: list) -> Path:
    """on_train_begin, one on_log per (step, logs) at state.global_step = step, on_train_end:
    the diagnostics folder."""
    args, state, control = _training(tmp_path)
    callback.on_train_begin(args, state, control)
    for step, logs in rows:
        state.global_step = step
        callback.on_log(args, state, control, logs=logs)
    callback.on_train_end(args, state, control)
    return tmp_path / "diagnostics"


def _metric_lines(directory: Path) -> list[dict]:
    """metrics.jsonl, each line checked: JSON, and every value a number float() takes, or null."""
    lines = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        assert isinstance(line["step"], int)
        assert all(v is None or (type(v) in (int, float) and isinstance(float(v), float)) for v in line.values())
    return lines


def _live_and_audited(callback, directory: Path) -> tuple[list[dict], list[dict]]:
    """The episodes the callback wrote at the end of training, and those `ruledsl audit` finds in
    its folder (the real readers, the rules read back from run.json)."""
    from ruledsl.integrations.diagnostics_files import callback_rules

    live = [{k: v for k, v in e.items() if k != "event"}
            for e in map(json.loads, (directory / "alerts.jsonl").read_text().splitlines()) if e["event"] == "episode"]
    info = json.loads((directory / "run.json").read_text())
    archive = read_archive([directory])
    assert not archive.problems and len(archive.sources) == 1
    frame = archive.sources[0].frame.with_columns(pl.lit(callback.monitor.run).alias("run"))  # the live run's id
    audited = ruledsl.audit(frame, callback_rules(info), trainer=info["trainer"], config=info["config"])
    return live, json.loads(json.dumps(json_safe(audited.to_dicts())))


LOSS_RULES = ["all: loss > 1 -> high: loss {value}", "all: loss nonfinite -> medium: loss {value}"]


@pytest.mark.trl
def test_a_number_past_any_float_is_infinite_live_and_in_metrics_jsonl(tmp_path, capsys):
    # before: metrics.jsonl held the 400-digit integer (read as inf by the audit) while the monitor
    # skipped it: `nonfinite` fired in the audit only
    callback = _callback(LOSS_RULES)
    directory = _train(callback, tmp_path, [(1, {"loss": 10**400}), (2, {"loss": -(10**400)}), (3, {"loss": 2.0})])
    assert callback.fuse.blown == {}
    assert _metric_lines(directory) == [{"step": 1, "loss": math.inf}, {"step": 2, "loss": -math.inf},
                                        {"step": 3, "loss": 2.0}]
    assert '"loss": Infinity' in (directory / "metrics.jsonl").read_text()
    live, audited = _live_and_audited(callback, directory)
    assert [(e["rule"].split("_")[0], e["first_step"]) for e in live] == [("inline", 1), ("inline", 3)]
    assert live == audited
    assert "left out" not in capsys.readouterr().err  # a number: nothing to say


@pytest.mark.trl
def test_a_value_whose_float_raises_is_left_out_of_that_row_and_said_once(tmp_path, capsys):
    # before: write_metrics raised on it and metrics.jsonl was switched off for the rest of the run
    callback = _callback(["all: x > 1 -> high: x {value}", *LOSS_RULES])
    rows = [(1, {"loss": 0.5, "x": Boom()}), (2, {"loss": 0.5, "x": Boom()}), (3, {"loss": 2.0, "x": 5.0})]
    directory = _train(callback, tmp_path, rows)
    assert callback.fuse.blown == {}
    assert _metric_lines(directory) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.5},
                                        {"step": 3, "loss": 2.0, "x": 5.0}]
    assert sorted(r["first_step"] for r in callback.started) == [3, 3]  # the x rule and the loss rule
    err = capsys.readouterr().err
    assert err.count("'x' is a value of type Boom whose float() raised RuntimeError, not a number") == 1
    assert "ruledsl: at step 1, 'x' is a value of type Boom" in err and "left out of the rules and metrics.jsonl" in err
    live, audited = _live_and_audited(callback, directory)
    assert live == audited


@pytest.mark.trl
def test_a_key_that_is_no_text_is_left_out_and_said_once(tmp_path, capsys):
    # before: metrics.jsonl was switched off (json.dumps refuses the key), then the whole callback
    # (the training-row test called key.startswith): no rule ran for the rest of the run. A tuple
    # key is a bug in the code that logged it, and str() of it is a name no rule means: it is left
    # out and said, rather than written under a made-up name.
    callback = _callback(LOSS_RULES)
    directory = _train(callback, tmp_path, [(1, {("a", 1): 0.5, "loss": 1.0}), (2, {("a", 1): 0.5, "loss": 2.0})])
    assert callback.fuse.blown == {} and [r["first_step"] for r in callback.started] == [2]
    assert _metric_lines(directory) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    captured = capsys.readouterr()
    assert captured.err.count("the key ('a', 1) is no text") == 1
    assert "ruledsl: 2 of 2 rules see their keys" in captured.out  # the coverage line after the first training row


@pytest.mark.trl
def test_a_logged_step_or_run_key_is_left_out_as_the_line_s_own_field(tmp_path, capsys):
    # before: a logged `run` went into the line, and the audit split the file into runs named by it
    callback = _callback(LOSS_RULES)
    directory = _train(callback, tmp_path, [(1, {"loss": 2.0, "run": 3, "step": 99}), (2, {"loss": 0.5, "run": 4})])
    assert _metric_lines(directory) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 0.5}]
    err = capsys.readouterr().err
    assert err.count("the key 'run' is a field of metrics.jsonl's lines") == 1 and "the key 'step'" in err
    live, audited = _live_and_audited(callback, directory)
    assert live == audited and [e["first_step"] for e in live] == [1]


@pytest.mark.trl
@pytest.mark.parametrize("global_step", [None, math.nan, 2**64, "x"])
def test_a_state_whose_global_step_names_no_step_skips_the_row_and_says_so_once(tmp_path, capsys, global_step):
    # before: int(state.global_step) raised (or made a step past 64 bits) and the whole callback was switched off
    callback = _callback(LOSS_RULES)
    args, state, control = _training(tmp_path)
    callback.on_train_begin(args, state, control)
    for step in (global_step, global_step, 3):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": 2.0})
    callback.on_train_end(args, state, control)
    assert callback.fuse.blown == {} and [r["first_step"] for r in callback.started] == [3]
    assert _metric_lines(tmp_path / "diagnostics") == [{"step": 3, "loss": 2.0}]
    assert capsys.readouterr().err.count("which names no training step: the row is skipped") == 1


@pytest.mark.trl
def test_logs_that_are_no_mapping_are_skipped_and_said_once(tmp_path, capsys):
    callback = _callback(LOSS_RULES)
    directory = _train(callback, tmp_path, [(1, [("loss", 2.0)]), (2, "loss"), (3, {"loss": 2.0})])
    assert callback.fuse.blown == {} and [r["first_step"] for r in callback.started] == [3]
    assert _metric_lines(directory) == [{"step": 3, "loss": 2.0}]
    assert capsys.readouterr().err.count("not a mapping of keys to values: the row is skipped") == 1


@pytest.mark.trl
def test_a_step_going_back_is_said_on_the_console_not_only_in_the_log(tmp_path, capsys):
    # before: the monitor's notice went to the `ruledsl.callback` logger only, which an application
    # that configures no logging never shows: the rules went blind on those rows without a word
    callback = _callback(LOSS_RULES)
    _train(callback, tmp_path, [(5, {"loss": 0.5}), (3, {"loss": 2.0}), (4, {"loss": 2.0})])
    err = capsys.readouterr().err
    assert err.count("ruledsl: step 3 came after step 5: rows whose step goes back are skipped") == 1


@pytest.mark.trl
def test_every_kind_of_value_is_written_as_the_rules_read_it_and_read_back_so(tmp_path, capsys):
    """Each value of the oracle under its own key, through the callback: metrics.jsonl holds the
    number the rules read (or null), nothing for what is no number, and the readers read it back so."""
    torch = pytest.importorskip("torch")
    tensors = [(torch.tensor(0.25), 0.25), (torch.tensor(3), 3.0), (torch.tensor(math.nan), math.nan),
               (torch.tensor(True), SKIP), (torch.tensor([1.0]), SKIP), (torch.tensor(1 + 2j), SKIP)]
    tagged = {f"k{i}": pair for i, pair in enumerate(VALUES + tensors)}
    callback = _callback(["all: k0 > 1 -> low: k0"])
    directory = _train(callback, tmp_path, [(1, hostile_row(tagged))])
    assert callback.fuse.blown == {}
    (line,) = _metric_lines(directory)
    # an int is written as the int (exact): its float is what the rules read
    assert same({k: (v if v is None else float(v)) for k, v in line.items() if k != "step"},
                {k: (None if m == NULL else m) for k, (_, m) in tagged.items() if m != SKIP})
    assert line["k6"] == 2**70 and type(line["k6"]) is int
    frame = read_archive([directory]).sources[0].frame.collect()
    read = {k: frame[k][0] for k in frame.columns if k not in ("run", "step") and frame[k][0] is not None}
    assert same(read, {k: m for k, (_, m) in tagged.items() if m not in (SKIP, NULL)})
    assert capsys.readouterr().err.count("left out of the rules and metrics.jsonl") == 10  # then no more names


# No None here: a null after a value of the same key at the same step leaves the key absent there
# (docs/language.md §2), which the Monitor does, while the batch engine reads a JSON log into a wide
# frame, where a null cell cannot override the earlier value (ruledsl.audit of a wide frame fires an
# `absent` rule that the long frame and the Monitor do not). A batch-side question, reported apart;
# the null itself is checked against its oracle above.
HOSTILE_MIX = [Boom(), "0.5", True, [1.0], {"a": 1}, 1 + 2j, 10**400, "nan", np.float32(0.5), Decimal("2")]


@pytest.mark.trl
@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_live_equals_the_audit_of_metrics_jsonl_for_rows_of_hostile_values(tmp_path_factory, data):
    """The round trip: rows mixing numbers and every kind of odd value, odd keys ("", "a\\nb", a tuple)
    included, through the real callback; an audit of the folder it wrote finds the live episodes."""
    keys = ["loss", "kl", "grad_norm", "rewards/a/std", "rewards/b/std", "", "a\nb", ("t", 1)]
    numbers = st.one_of(st.floats(min_value=-3, max_value=3), st.sampled_from([math.nan, math.inf, 0.0, 2**70]))
    values = st.one_of(numbers, numbers, st.sampled_from(HOSTILE_MIX))
    rows, step = [], 0
    for _ in range(data.draw(st.integers(min_value=1, max_value=12))):
        step += data.draw(st.sampled_from([0, 1, 1, 2]))
        rows.append((step, data.draw(st.dictionaries(st.sampled_from(keys), values, min_size=1, max_size=6))))
    callback = _callback(["all: loss > 1 -> high: loss {value}", "all: loss nonfinite -> medium: nf {value}",
                          "all: kl absent(2) -> low: kl gone", "all: mean(grad_norm, 2) > 1 -> low: g {value}",
                          "all: `rewards/*/std` < 0.5 -> low: flat {value}", "all: loss + kl > 2 -> low: sum {value}"],
                         console=False)
    directory = _train(callback, tmp_path_factory.mktemp("run"), rows)
    assert callback.fuse.blown == {} and not callback.monitor.faults
    _metric_lines(directory)
    live, audited = _live_and_audited(callback, directory)
    assert live == audited
