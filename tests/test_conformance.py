"""Every worked case of docs/language.md §9 through the batch engine, in every frame form it accepts."""

import polars as pl
import pytest

import ruledsl
from conformance_cases import assert_episodes, config_of, load_cases, long_frame, rule_mapping, wide_frame

CASES = load_cases()
IDS = [c["id"] for c in CASES]


def test_the_suite_has_every_case():
    assert len(CASES) == 92
    conditions = " ".join(c["condition"] for c in CASES)
    for construct in ("<", "<=", ">", ">=", "range(", "outside(", "drop(", "rise(", "spike(", "flat(",
                      "nonfinite", " or ", " and ", "mean(", "delta(", "std(", "baseline(", " - ",
                      "absent(", "step", "config.", ", 1)"):
        assert construct in conditions, construct


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("form", ["wide", "long"])
def test_audit_reproduces_the_worked_case(case, form):
    frame = wide_frame(case) if form == "wide" else long_frame(case)
    records = ruledsl.audit(frame, [rule_mapping(case)], config=config_of(case))
    assert records.columns == ["run", "rule", "severity", "trainer", "metric", "first_step",
                               "last_step", "n_evals", "value", "message"]
    assert_episodes(records.to_dicts(), case["expect"], case["id"])
    if case["metric"] is None:
        assert records["metric"].null_count() == len(records)  # full expressions report no metric
    elif "*" not in case["metric"]:  # a pattern's records name the key they matched (compared above)
        assert set(records["metric"]) <= {case["metric"]}


@pytest.mark.parametrize("case", CASES[:12], ids=IDS[:12])
def test_lazy_and_pandas_frames_give_the_same_episodes(case):
    expected = ruledsl.audit(wide_frame(case), [rule_mapping(case)])
    from_lazy = ruledsl.audit(wide_frame(case).lazy(), [rule_mapping(case)])
    from_pandas = ruledsl.audit(wide_frame(case).to_pandas(), [rule_mapping(case)], output="input")
    assert from_lazy.equals(expected)
    assert type(from_pandas).__module__.startswith("pandas")
    assert pl.from_pandas(from_pandas).select("first_step", "last_step", "n_evals").equals(
        expected.select("first_step", "last_step", "n_evals"))


def test_many_runs_of_different_lengths_in_one_frame_match_each_run_alone():
    """Shuffled rows of several runs of different lengths: each run as if audited alone."""
    cases = [c for c in CASES if c["metric"] == "m" and c["condition"] == "< 0.5"]
    frames = [wide_frame(c).select("step", "m").with_columns(pl.lit(f"run{j}").alias("run"))
              for j, c in enumerate(cases)]
    assert len({len(f) for f in frames}) >= 3
    rule = {"name": "r", "trainers": ["all"], "metric": "m", "condition": "< 0.5", "window": 2,
            "for": 2, "severity": "low", "message": "{value}"}
    columns = ["run", "first_step", "last_step", "n_evals", "value"]
    one_by_one = [row for f in frames for row in ruledsl.audit(f, [rule]).select(columns).rows()]
    mixed = pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=7)
    together = ruledsl.audit(mixed, [rule]).select(columns).rows()
    assert len(one_by_one) >= 3
    assert together == sorted(one_by_one)  # same episodes, sorted by run then first_step


INLINE_CASES = [c for c in CASES if c["window"] == 1 and c["min_steps"] == 0 and not c.get("when")]


def inline_text(case: dict) -> str:
    """The worked case written as an inline alert (docs/language.md §6: window 1, no min_steps)."""
    condition = case["condition"]
    if case["metric"] is not None:
        metric = f"`{case['metric']}`" if "*" in case["metric"] else case["metric"]
        condition = f"{metric} {condition}"  # `m (< 0.5) or (> 2)` reads as m, then the shorthand
    sustain = f" for {case['for']} steps" if case["for"] > 1 else ""
    return f"all: {condition}{sustain} -> high: {{value}} - at {{step}}: ok -> done"


@pytest.mark.parametrize("case", INLINE_CASES, ids=[c["id"] for c in INLINE_CASES])
def test_the_same_case_as_an_inline_alert(case):
    text = inline_text(case)
    records = ruledsl.audit(wide_frame(case), [text], config=config_of(case))
    assert_episodes(records.to_dicts(), case["expect"], case["id"])
    reads_as_shorthand = case["metric"] is not None
    assert ruledsl.parse_inline_alert(text).condition.is_shorthand == reads_as_shorthand
    for record in records.iter_rows(named=True):
        assert record["message"].endswith(f" - at {record['first_step']}: ok -> done")
        if case["metric"] is None or "*" not in case["metric"]:
            assert record["metric"] == case["metric"]


def test_inline_cases_cover_shorthands_and_expressions():
    assert len(INLINE_CASES) >= 30
    assert {c["metric"] is None for c in INLINE_CASES} == {True, False}
