"""The SVG charts and the pieces of the report formats, without the command line."""

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest

from ruledsl.report import Format, choose_format
from ruledsl.report.charts import PLOT_W, Band, Level, Scale, line_chart, nice_ticks, thinned
from ruledsl.report.markdown import md_text
from ruledsl.report.table import printable

SVG = "{http://www.w3.org/2000/svg}"


def chart(values, steps=None, bands=(), levels=(), title="t") -> ET.Element:
    steps = list(range(len(values))) if steps is None else steps
    frame = pl.DataFrame({"step": steps, "value": values}, schema={"step": pl.Int64, "value": pl.Float64})
    return ET.fromstring(line_chart(frame, list(bands), list(levels), title=title))


def test_thinning_keeps_every_extreme_and_bounds_the_points():
    n = 200_000
    values = [math.sin(i / 97.0) for i in range(n)]
    values[123_457] = 50.0
    values[7] = -50.0
    frame = pl.DataFrame({"step": range(n), "value": values}).with_columns(pl.col("step").cast(pl.Int64))
    kept = thinned(frame, Scale(0, n - 1, -50, 50))
    assert kept.height <= 4 * PLOT_W
    assert kept["value"].max() == 50.0 and kept["value"].min() == -50.0
    assert kept["step"].is_sorted() and kept["step"][0] == 0 and kept["step"][-1] == n - 1
    small = frame.head(100)
    assert thinned(small, Scale(0, 99, -1, 1)).equals(small)  # short series are drawn whole


def test_many_episodes_merge_into_a_bounded_number_of_bands():
    root = chart([1.0] * 100_000, bands=[Band(s, s, "high", "r") for s in range(0, 100_000, 3)])
    rects = root.findall(f"{SVG}rect[@class='episode']")
    assert 0 < len(rects) <= PLOT_W
    assert int(rects[0].get("data-first-step")) == 0 and int(rects[-1].get("data-last-step")) == 99_999


def test_separate_episodes_stay_separate_with_their_severity():
    root = chart([float(i) for i in range(1000)], bands=[Band(100, 200, "high", "a"), Band(600, 600, "low", "b")])
    rects = root.findall(f"{SVG}rect[@class='episode']")
    assert [(r.get("data-first-step"), r.get("data-last-step"), r.get("data-severity")) for r in rects] == \
        [("100", "200", "high"), ("600", "600", "low")]
    assert float(rects[1].get("width")) >= 1.0  # a one-step episode is still visible


def test_all_nonfinite_series_draws_marks_and_no_line():
    root = chart([math.nan, math.inf, -math.inf], levels=[Level(0.5, "high", "< 0.5")])
    assert root.find(f"{SVG}polyline") is None
    assert root.find(f"{SVG}path[@class='nonfinite']").get("data-count") == "3"
    assert root.find(f"{SVG}line[@class='threshold']") is not None


def test_one_value_is_a_dot_and_a_constant_series_has_a_range():
    assert chart([3.0]).find(f"{SVG}circle[@class='series']") is not None
    root = chart([2.0] * 10)
    low, high = float(root.get("data-value-min")), float(root.get("data-value-max"))
    assert low < 2.0 < high


def test_threshold_outside_the_data_is_still_in_view():
    root = chart([1.0, 1.1, 0.9], levels=[Level(5.0, "high", "> 5")])
    assert float(root.get("data-value-max")) >= 5.0
    y = float(root.find(f"{SVG}line[@class='threshold']").get("y1"))
    area = root.find(f"{SVG}rect[@class='plot-area']")
    assert float(area.get("y")) <= y <= float(area.get("y")) + float(area.get("height"))


def test_text_in_the_svg_is_escaped():
    hostile = "<script>alert(1)</script> & \" '"
    root = chart([1.0, 2.0], bands=[Band(0, 1, "high", hostile)], levels=[Level(1.5, "high", hostile, hostile)],
                 title=hostile)
    assert root.find(f"{SVG}title").text == hostile
    assert not any(el.tag.endswith("script") for el in root.iter())


@pytest.mark.parametrize("low, high, expected", [(0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1]), (3, 97, [20, 40, 60, 80]),
                                                 (-0.013, 0.011, [-0.01, -0.005, 0, 0.005, 0.01])])
def test_nice_ticks(low, high, expected):
    assert nice_ticks(low, high) == pytest.approx(expected)


def test_step_ticks_are_whole_steps():
    assert nice_ticks(-1, 1, integers=True) == [-1, 0, 1]


def test_md_text_neutralizes_markup():
    """Markup and HTML are escaped; a control character (a newline too, which would end a
    table row) is shown as its escape, as in the table, and the escape's backslash is itself
    escaped, so it renders as the literal text \\n and never as markup or a line break."""
    text = md_text("a|b `c` *d* <e> & [f](g)\nnext\x1b[2J")
    assert text == r"a\|b \`c\` \*d\* &lt;e&gt; &amp; \[f\](g)\\nnext\\x1b\[2J"
    assert "\n" not in text and "\x1b" not in text


def test_printable_escapes_control_characters():
    assert printable("ok\x1b[2J\nline") == "ok\\x1b[2J\\nline"


@pytest.mark.parametrize("requested, output, expected, warns", [
    (None, None, Format.table, False),
    (None, "r.HTML", Format.html, False),
    (None, "r.md", Format.markdown, False),
    (None, "alerts.ndjson", Format.jsonl, False),
    (None, "alerts.log", Format.table, False),
    (Format.json, "alerts.json", Format.json, False),
    (Format.json, "alerts.html", Format.json, True),
    (Format.csv, "alerts.log", Format.csv, False),
])
def test_choose_format(requested, output, expected, warns):
    chosen, warning = choose_format(requested, Path(output) if output else None)
    assert chosen is expected and (warning is not None) == warns


# ---------------------------------------------------------------- reports from Python


def _charts_of(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="chart" data-run="([^"]*)" data-metric="([^"]*)" data-chart="\d+">', html)


@pytest.mark.parametrize("form", ["wide", "long"])
def test_render_from_python_frames(form):
    from ruledsl.engines.batch import engine
    from ruledsl.model.rule import rule_from_inline
    from ruledsl.report import ReportContext, render

    steps = list(range(20))
    loss = [1.0] * 10 + [3.0] * 10
    if form == "wide":
        frame = pl.DataFrame({"step": steps, "loss": loss, "lr": [1e-3] * 20})  # no run column: "default"
    else:
        frame = pl.DataFrame({"run": ["r"] * 20, "step": steps, "key": ["loss"] * 20, "value": loss})
    rules = ["all: loss > 2 -> high: loss {value}", "all: mean(loss, 2) > 2.5 -> low: mean high"]
    records = engine.audit(frame, rules)
    html = render(records, Format.html, ReportContext(frame, [rule_from_inline(r) for r in rules], n_runs=1))
    run = "default" if form == "wide" else "r"
    assert _charts_of(html) == [(run, "loss")]  # both rules on one chart
    assert html.count('class="episode"') == 2 and html.count('class="threshold"') == 1


def test_drop_draws_the_level_its_window_mean_crosses():
    from ruledsl.engines.batch import engine
    from ruledsl.model.rule import Rule
    from ruledsl.report import ReportContext, render

    rule = Rule.from_dict({"name": "entropy_drop", "trainers": ["all"], "metric": "entropy", "window": 2,
                           "condition": "drop(80%)", "severity": "medium", "message": "m"})
    frame = pl.DataFrame({"step": range(8), "entropy": [2.0, 3.0, 2.4, 2.6, 0.3, 0.2, 0.1, 0.1]})
    records = engine.audit(frame, [rule])
    assert records["first_step"].to_list() == [5]  # mean(0.3, 0.2) = 0.25 <= 2.5 * 0.2
    html = render(records, Format.html, ReportContext(frame, [rule], n_runs=1))
    (value,) = re.findall(r'class="threshold" data-value="([^"]+)"', html)
    assert float(value) == pytest.approx(2.5 - 2.5 * 0.8)
    assert "drop 80% of 2.5" in html


def test_chart_json_cannot_close_its_script_element():
    import json

    from ruledsl.report.plotdata import script_json

    hostile = {"run": "</script><script>alert(1)</script>", "text": "a & b <!-- \u2028\u2029 -->"}
    text = script_json(hostile)
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == hostile  # the same characters once parsed
