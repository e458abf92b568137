"""The Python API of the batch engine: frames in, evaluations and episodes out."""

import math

import pandas as pd
import polars as pl
import pytest

import ruledsl
from ruledsl import Catalog, FrameError

RULE = {"name": "low", "trainers": ["all"], "metric": "m", "condition": "< 0.5", "severity": "high",
        "message": "{metric}={value:.2f} at {step} ({run}, W={window}, t={threshold}, b={baseline})"}


def wide():
    return pl.DataFrame({"run": ["a"] * 4 + ["b"] * 3, "step": [1, 2, 3, 4, 1, 2, 3],
                         "m": [1.0, 0.4, 0.3, 0.9, 0.2, None, 0.1]})


def test_audit_records_have_exactly_the_spec_fields():
    records = ruledsl.audit(wide(), [RULE])
    assert records.columns == list(ruledsl.alerts.RECORD_FIELDS)
    assert records.rows() == [
        ("a", "low", "high", None, "m", 2, 3, 2, 0.4, "m=0.40 at 2 (a, W=1, t=0.5, b=n/a)"),
        ("b", "low", "high", None, "m", 1, 3, 2, 0.2, "m=0.20 at 1 (b, W=1, t=0.5, b=n/a)"),
    ]


def test_trainer_is_reported_and_filters_rules():
    only_dpo = RULE | {"name": "dpo_only", "trainers": ["dpo"]}
    records = ruledsl.audit(wide(), [RULE, only_dpo], trainer="grpo")
    assert set(records["rule"]) == {"low"} and set(records["trainer"]) == {"grpo"}
    assert set(ruledsl.audit(wide(), [RULE, only_dpo])["rule"]) == {"low", "dpo_only"}  # unknown: all


def test_disabled_rules_do_not_run():
    assert ruledsl.audit(wide(), [RULE | {"enabled": False}]).is_empty()


def test_duplicate_names_are_an_error():
    with pytest.raises(ValueError, match="two rules are named 'low'"):
        ruledsl.compile_rules([RULE, RULE])


def test_evaluate_lists_every_evaluation():
    evaluations = ruledsl.evaluate(wide(), [RULE])
    assert evaluations.columns == ["run", "step", "rule", "fired", "value"]
    assert evaluations.select("run", "step", "fired").rows() == [
        ("a", 1, False), ("a", 2, True), ("a", 3, True), ("a", 4, False), ("b", 1, True), ("b", 3, True)]
    assert isinstance(ruledsl.evaluate(wide(), [RULE], lazy=True), pl.LazyFrame)


def test_long_form_is_the_same_as_wide_form():
    long = wide().unpivot(index=["run", "step"], variable_name="key").drop_nulls("value")
    assert ruledsl.audit(long, [RULE]).equals(ruledsl.audit(wide(), [RULE]))


def test_pandas_in_pandas_out_on_request():
    frame = wide().to_pandas()
    assert isinstance(ruledsl.audit(frame, [RULE]), pl.DataFrame)
    out = ruledsl.audit(frame, [RULE], output="input")
    assert isinstance(out, pd.DataFrame) and list(out["first_step"]) == [2, 1]
    assert isinstance(ruledsl.evaluate(wide(), [RULE], output="pandas"), pd.DataFrame)


def test_without_run_column_there_is_one_run():
    records = ruledsl.audit(wide().filter(pl.col("run") == "a").drop("run"), [RULE])
    assert records["run"].to_list() == ["default"]


def test_empty_results_keep_the_schema():
    records = ruledsl.audit(wide(), [RULE | {"condition": "> 100"}])
    assert records.is_empty() and records.columns == list(ruledsl.alerts.RECORD_FIELDS)
    assert ruledsl.audit(wide(), []).is_empty()


def test_a_metric_absent_from_the_frame_yields_nothing():
    assert ruledsl.audit(wide(), [RULE | {"metric": "nope"}]).is_empty()


def test_non_finite_values_are_set_aside_and_seen_by_nonfinite():
    frame = pl.DataFrame({"step": [1, 2, 3, 4], "m": [0.4, math.nan, math.inf, 0.3]})
    assert ruledsl.audit(frame, [RULE])[["first_step", "last_step", "n_evals"]].rows() == [(1, 4, 2)]
    nonfinite = ruledsl.audit(frame, [RULE | {"condition": "nonfinite", "message": "{value}"}])
    assert nonfinite[["first_step", "last_step", "message"]].rows() == [(2, 3, "nan")]


def test_templates_see_baseline_and_threshold():
    frame = pl.DataFrame({"step": range(6), "m": [1.0, 1.0, 1.0, 0.4, 0.3, 0.3]})
    drop = RULE | {"condition": "drop(50%)", "window": 2, "message": "{baseline:.2f} {threshold} {window}"}
    assert ruledsl.audit(frame, [drop])["message"].to_list() == ["1.00 50.0 2"]
    spike = RULE | {"condition": "spike(3x)", "window": 2, "message": "{baseline:.2f}"}
    frame = pl.DataFrame({"step": range(4), "m": [1.0, 1.0, 5.0, 1.0]})
    assert ruledsl.audit(frame, [spike])["message"].to_list() == ["1.00"]


def test_full_expression_threshold_and_value():
    rule = {k: v for k, v in RULE.items() if k != "metric"} | {
        "condition": "a - b < -1", "message": "{value} {threshold} {window} {metric}"}
    frame = pl.DataFrame({"step": [1, 2], "a": [0.0, 0.0], "b": [0.5, 2.0]})
    records = ruledsl.audit(frame, [rule])
    assert records[["metric", "value", "message"]].rows() == [(None, -2.0, "-2.0 -1.0 n/a n/a")]


def test_division_by_zero_makes_the_comparison_false_but_counts_as_an_evaluation():
    rule = {k: v for k, v in RULE.items() if k != "metric"} | {"condition": "a / b > 1 for 2 steps"}
    frame = pl.DataFrame({"step": [1, 2, 3, 4], "a": [2.0, 2.0, 2.0, 2.0], "b": [1.0, 0.0, 1.0, 1.0]})
    assert ruledsl.audit(frame, [rule])[["first_step", "last_step"]].rows() == [(4, 4)]


# ---------------------------------------------------------------- alias resolution (docs/language.md §2)

CATALOG = Catalog({"is_ratio": {"grpo": ["sampling/importance_sampling_ratio/mean", "is_ratio_old"]}})
ALIAS_RULE = RULE | {"name": "is", "metric": "is_ratio", "trainers": ["grpo"], "message": "{metric}"}


def test_an_alias_resolves_per_run_to_the_key_that_appears_first():
    frame = pl.DataFrame({
        "run": ["new"] * 3 + ["old"] * 3,
        "step": [1, 2, 3, 1, 2, 3],
        "sampling/importance_sampling_ratio/mean": [1.0, 0.2, 0.1, None, None, 0.1],
        "is_ratio_old": [None, None, None, 1.0, 0.3, 0.9],
    })
    records = ruledsl.audit(frame, [ALIAS_RULE], catalog=CATALOG)
    assert records[["run", "metric", "first_step", "last_step"]].rows() == [
        ("new", "sampling/importance_sampling_ratio/mean", 2, 3), ("old", "is_ratio_old", 2, 2)]


def test_a_tie_goes_to_the_earlier_candidate_and_the_name_itself_comes_first():
    frame = pl.DataFrame({"step": [1, 2], "is_ratio_old": [0.1, 0.1],
                          "sampling/importance_sampling_ratio/mean": [0.9, 0.1]})
    assert ruledsl.audit(frame, [ALIAS_RULE], catalog=CATALOG)["metric"].to_list() == \
        ["sampling/importance_sampling_ratio/mean"]
    frame = frame.with_columns(pl.lit(0.2).alias("is_ratio"))
    assert ruledsl.audit(frame, [ALIAS_RULE], catalog=CATALOG)["metric"].to_list() == ["is_ratio"]


def test_alias_resolution_in_long_form():
    long = pl.DataFrame({"run": ["r"] * 3, "step": [1, 2, 2], "key": ["is_ratio_old", "is_ratio_old", "x"],
                         "value": [0.1, 0.1, 1.0]})
    assert ruledsl.audit(long, [ALIAS_RULE], catalog=CATALOG)["metric"].to_list() == ["is_ratio_old"]


# ---------------------------------------------------------------- bad frames


@pytest.mark.parametrize("frame, words", [
    (pl.DataFrame({"m": [1.0]}), "no 'step' column"),
    (pl.DataFrame({"step": ["a"], "m": [1.0]}), "must hold numbers"),
    (pl.DataFrame({"step": [1, None], "m": [1.0, 2.0]}), "have no 'step'"),
    ([1, 2, 3], "expected a polars"),
])
def test_bad_frames_get_a_frame_error(frame, words):
    with pytest.raises(FrameError, match=words):
        ruledsl.audit(frame, [RULE])


def test_the_builtin_catalog_resolves_an_alias_to_the_key_trl_logs():
    """A rule in the earlier tool's format names `importance_sampling_ratio`; TRL's GRPO logs
    `sampling/importance_sampling_ratio/mean` (trl_metrics.yaml, aliases)."""
    rule = {"name": "is_ratio", "trainers": ["grpo", "ppo"], "metric": "importance_sampling_ratio",
            "condition": "< 0.5", "severity": "high", "message": "{metric} at {value:.2f}"}
    frame = pl.DataFrame({"step": [1, 2, 3], "sampling/importance_sampling_ratio/mean": [0.98, 0.3, 0.2]})
    for trainer in ("grpo", None):
        records = ruledsl.audit(frame, [rule], trainer=trainer)
        assert records[["metric", "first_step", "message"]].rows() == [
            ("sampling/importance_sampling_ratio/mean", 2, "sampling/importance_sampling_ratio/mean at 0.30")]
    assert ruledsl.audit(frame, [rule], catalog=Catalog()).is_empty()  # no catalog: no alias


@pytest.mark.parametrize("runs", [[None, None, "a", "a"], ["a", "a", None, None]])
def test_rows_without_a_run_id_are_one_run_of_their_own(runs):
    # Not dropped, wherever they sort, and one episode: null ids are equal to each other.
    frame = pl.DataFrame({"run": runs, "step": [1, 2, 1, 2], "m": [5.0] * 4})
    records = ruledsl.audit(frame, ["all: m > 1 -> low: high m"])
    assert sorted(((r["run"] or ""), r["first_step"], r["n_evals"]) for r in records.to_dicts()) == \
        [("", 1, 2), ("a", 1, 2)]
