"""A chart as data for the HTML report's interactive charts (assets/report.js draws it with uPlot).

One JSON object per chart: the steps on the x axis and, aligned with them, the values of
each series (the metric, the window mean the rules compare, a healthy run of the same
trainer), the steps of its non-finite values, the alert episodes and the threshold levels.
Series are thinned as the SVG charts are (first, min, max, last of each of ~1000 columns),
so a chart stays small whatever the run's length and keeps every spike.

The JSON is put inside a <script> element: `script_json` escapes `<`, `>` and `&` so that
no text from a log (a run named `</script>…`) can end that element or start another.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from ruledsl.report.charts import Band, Level, Scale, thinned
from ruledsl.report.text import printable

COLUMNS = 1000  # thinning: columns of a wide chart; at most 4 points a column and series
HEAVY_TAILED = ("grad_norm",)  # keys shown on a log scale from the start (when every value is > 0)
LOG_SPAN = 1e3  # or when their largest value is this many times their smallest


@dataclass(frozen=True)
class Trace:
    """One line of a chart: its label, its role (value, mean, healthy) and its (step, value) rows."""

    label: str
    role: str
    points: pl.DataFrame


def chart_spec(title: str, key: str, traces: list[Trace], bands: list[Band], levels: list[Level],
               nonfinite_steps: list[int], kind: str = "alert") -> dict[str, Any]:
    """The JSON-ready description of one chart (see the module docstring)."""
    kept = [Trace(t.label, t.role, _thin(t.points)) for t in traces if not t.points.is_empty()]
    # the non-finite rows' steps too: their ticks, and the episodes they start, are on the axis
    steps = sorted({int(s) for t in kept for s in t.points["step"]} | {int(s) for s in nonfinite_steps})
    series: list[dict[str, Any]] = []
    for trace in kept:
        by_step = dict(zip(trace.points["step"].to_list(), trace.points["value"].to_list()))
        series.append({"label": printable(trace.label), "role": trace.role,
                       "values": [_number(by_step.get(s)) for s in steps]})
    finite: list[float] = [v for s in series for v in s["values"] if isinstance(v, float)]
    finite += [lv.value for lv in levels if math.isfinite(lv.value)]
    positive = bool(finite) and min(finite) > 0
    return {
        "title": printable(title), "key": printable(key), "kind": kind, "steps": steps, "series": series,
        "nonfinite": sorted(set(nonfinite_steps)),
        "bands": [{"first": b.first_step, "last": b.last_step, "severity": b.severity, "label": printable(b.label)}
                  for b in bands],
        "levels": [{"value": lv.value, "severity": lv.severity, "label": printable(lv.label),
                    "rule": printable(lv.rule)} for lv in levels if math.isfinite(lv.value)],
        "logAllowed": positive,
        "log": positive and (any(h in key for h in HEAVY_TAILED) or max(finite) > LOG_SPAN * min(finite)),
    }


def _thin(points: pl.DataFrame) -> pl.DataFrame:
    finite = points.select(pl.col("step").cast(pl.Int64), pl.col("value").cast(pl.Float64)) \
        .filter(pl.col("value").is_finite()).sort("step")
    if finite.is_empty():
        return finite
    low, high = float(finite["step"][0]), float(finite["step"][-1])
    return thinned(finite, Scale(low, high if high > low else low + 1, 0.0, 1.0), COLUMNS)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def script_json(value: Any) -> str:
    """`value` as JSON safe inside an HTML <script> element: `<`, `>`, `&` and the two line
    separators JavaScript once read as line ends are written as \\u escapes, which JSON.parse
    reads back as the same characters."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text
