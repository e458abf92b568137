"""Static SVG line charts of one metric over steps, written by hand (no plotting library).

A chart shows the metric's finite values as a line, its non-finite rows as
red ticks along the bottom, alert episodes as shaded bands and threshold levels
as dashed horizontal lines. Long series are thinned to the minimum and maximum
of each pixel column, so a chart stays small (a few tens of kB) whatever the
length of the run while every spike stays visible.

Every piece of text that reaches the SVG goes through `escape`: run ids, metric
keys and rule names come from user files. It also shows control characters as
escapes (`report.text.printable`): XML allows none of them, and a chart holding
one would not draw at all (an SVG image in markdown) or draw them raw (html).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape as _html_escape

import polars as pl

from ruledsl.report.text import printable

WIDTH, HEIGHT = 760, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 130, 30, 36  # margins; the right one holds level labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
SEVERITY_COLOURS = {"low": "#8a8f98", "medium": "#e0a100", "high": "#e8590c", "critical": "#c92a2a"}
LINE_COLOUR, MEAN_COLOUR, NONFINITE_COLOUR = "#1f6feb", "#6e40c9", "#c92a2a"


def escape(text: object) -> str:
    """Text safe inside XML/HTML element content and quoted attributes, its control
    characters (a newline too) shown as \\x.. escapes."""
    return _html_escape(printable(text), quote=True)


@dataclass(frozen=True)
class Band:
    """An alert episode: steps first..last, shaded in the colour of its severity."""

    first_step: int
    last_step: int
    severity: str
    label: str


@dataclass(frozen=True)
class Level:
    """A horizontal line at `value`: a threshold of rule `rule`, labelled e.g. "< 0.5"."""

    value: float
    severity: str
    label: str
    rule: str = ""


@dataclass(frozen=True)
class Scale:
    """Data domain → pixel coordinates of the plot area."""

    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, step: float) -> float:
        return LEFT + (step - self.x0) / (self.x1 - self.x0) * PLOT_W

    def y(self, value: float) -> float:
        return TOP + (self.y1 - value) / (self.y1 - self.y0) * PLOT_H


def line_chart(series: pl.DataFrame, bands: list[Band], levels: list[Level], *, title: str,
               mean: pl.DataFrame | None = None, mean_label: str = "") -> str:
    """An SVG chart of `series` (columns step, value; non-finite values allowed).

    `mean`, when given, is a second trace (step, value) drawn over the first:
    the window mean a shorthand condition compares with its threshold.
    """
    series = series.select(pl.col("step").cast(pl.Int64), pl.col("value").cast(pl.Float64)).sort("step")
    finite = series.filter(pl.col("value").is_finite())
    scale = _scale(series, finite, levels)
    parts = [_header(scale, title), _axes(scale)]
    parts += [_band(scale, b) for b in _merged(scale, bands)]
    parts.append(_polyline(scale, thinned(finite, scale), LINE_COLOUR, "series"))
    if mean is not None and not mean.is_empty():
        parts.append(_polyline(scale, thinned(mean.filter(pl.col("value").is_finite()), scale),
                               MEAN_COLOUR, "window-mean"))
    parts += [_level(scale, level, label_y) for level, label_y in _label_places(scale, levels)]
    parts.append(_nonfinite_marks(scale, series.filter(~pl.col("value").is_finite())))
    parts.append(_legend(mean_label if mean is not None else ""))
    parts.append("</svg>")
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------- scale


def _number(value: object) -> float:
    """The min or max of a numeric column (polars types it as any scalar)."""
    if not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _scale(series: pl.DataFrame, finite: pl.DataFrame, levels: list[Level]) -> Scale:
    if series.is_empty():
        x0, x1 = 0.0, 1.0
    else:
        x0, x1 = _number(series["step"].min()), _number(series["step"].max())
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    values = ([_number(finite["value"].min()), _number(finite["value"].max())] if not finite.is_empty() else [])
    values += [lv.value for lv in levels if math.isfinite(lv.value)]
    if not values:
        return Scale(x0, x1, 0.0, 1.0)
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 if hi > lo else max(abs(hi) * 0.1, 1e-9)
    y0, y1 = lo - pad, hi + pad
    if not (math.isfinite(y0) and math.isfinite(y1)) or y1 - y0 <= 0:  # values near the float limits
        y0, y1 = (lo, lo + 1.0) if abs(lo) < 1e300 else (0.0, 1.0)
    return Scale(x0, x1, y0, y1)


# ---------------------------------------------------------------- thinning


def thinned(points: pl.DataFrame, scale: Scale, columns: int = PLOT_W) -> pl.DataFrame:
    """The points worth drawing: per pixel column, the first, minimum, maximum and last.

    At most 4 points a column whatever the series length; the line between
    columns and every extreme stay where they were.
    """
    if points.height <= 4 * columns:
        return points
    span = scale.x1 - scale.x0
    bucket = ((pl.col("step") - scale.x0) * (columns / span)).floor().clip(0, columns - 1).cast(pl.Int32)
    indexed = points.with_row_index("_i").with_columns(bucket.alias("_b"))
    keep = indexed.group_by("_b").agg(
        pl.col("_i").first().alias("first"), pl.col("_i").last().alias("last"),
        pl.col("_i").get(pl.col("value").arg_min()).alias("low"),
        pl.col("_i").get(pl.col("value").arg_max()).alias("high"),
    )
    rows = pl.concat([keep.select(pl.col(c).alias("_i")) for c in ("first", "low", "high", "last")])
    return indexed.join(rows.unique(), on="_i", how="semi").sort("_i").select("step", "value")


def _merged(scale: Scale, bands: list[Band]) -> list[Band]:
    """Bands of one severity that touch on screen merged into one (bounds the SVG size)."""
    merged: list[Band] = []
    for band in sorted(bands, key=lambda b: (b.severity, b.first_step, b.last_step)):
        last = merged[-1] if merged else None
        if last and last.severity == band.severity and scale.x(band.first_step) - scale.x(last.last_step) <= 1:
            label = last.label if band.label in last.label.split(", ") else f"{last.label}, {band.label}"
            merged[-1] = Band(last.first_step, max(last.last_step, band.last_step), band.severity,
                              label if len(label) < 300 else last.label)
        else:
            merged.append(band)
    return merged


# ---------------------------------------------------------------- drawing


def _num(value: float) -> str:
    return f"{value:.1f}"


def _header(scale: Scale, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" font-family="sans-serif" font-size="11" '
            f'data-step-min="{scale.x0!r}" data-step-max="{scale.x1!r}" '
            f'data-value-min="{scale.y0!r}" data-value-max="{scale.y1!r}">\n'
            f"<title>{escape(title)}</title>\n"
            f'<rect class="plot-area" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" '
            f'fill="#ffffff" stroke="#d0d7de"/>\n'
            f'<text x="{LEFT}" y="{TOP - 10}" font-size="13" font-weight="bold">{escape(_short(title, 60))}</text>')


def _axes(scale: Scale) -> str:
    out = []
    for value in nice_ticks(scale.y0, scale.y1):
        y = _num(scale.y(value))
        out.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{y}" y2="{y}" stroke="#eaeef2"/>'
                   f'<text x="{LEFT - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                   f"{escape(_label(value))}</text>")
    for step in nice_ticks(scale.x0, scale.x1, integers=True):
        x = _num(scale.x(step))
        out.append(f'<line x1="{x}" x2="{x}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H + 4}" stroke="#57606a"/>'
                   f'<text x="{x}" y="{TOP + PLOT_H + 16}" text-anchor="middle">{int(step)}</text>')
    out.append(f'<text x="{LEFT + PLOT_W / 2}" y="{HEIGHT - 6}" text-anchor="middle" fill="#57606a">step</text>')
    return "\n".join(out)


def _band(scale: Scale, band: Band) -> str:
    x0, x1 = scale.x(band.first_step), scale.x(band.last_step)
    width = max(x1 - x0, 1.0)  # a one-step episode still shows
    colour = SEVERITY_COLOURS.get(band.severity, "#8a8f98")
    return (f'<rect class="episode" data-first-step="{band.first_step}" data-last-step="{band.last_step}" '
            f'data-severity="{escape(band.severity)}" x="{x0:.2f}" y="{TOP}" width="{width:.2f}" '
            f'height="{PLOT_H}" fill="{colour}" fill-opacity="0.22">'
            f"<title>{escape(band.label)}: steps {band.first_step}–{band.last_step}</title></rect>")


def _polyline(scale: Scale, points: pl.DataFrame, colour: str, name: str) -> str:
    if points.is_empty():
        return ""
    coords = " ".join(f"{_num(scale.x(s))},{_num(scale.y(v))}" for s, v in points.iter_rows())
    if points.height == 1:  # a single value: a dot, since a one-point polyline draws nothing
        s, v = points.row(0)
        return f'<circle class="{name}" cx="{_num(scale.x(s))}" cy="{_num(scale.y(v))}" r="2.5" fill="{colour}"/>'
    return (f'<polyline class="{name}" fill="none" stroke="{colour}" stroke-width="1.5" '
            f'stroke-linejoin="round" points="{coords}"/>')


def _label_places(scale: Scale, levels: list[Level]) -> list[tuple[Level, float]]:
    """Each finite level with the y of its label: beside its line, moved down past a label it would overlap."""
    placed: list[tuple[Level, float]] = []
    for level in sorted((lv for lv in levels if math.isfinite(lv.value)), key=lambda lv: -lv.value):
        label_y = scale.y(level.value) + 4
        if placed and label_y - placed[-1][1] < 12:
            label_y = placed[-1][1] + 12
        placed.append((level, label_y))
    return placed


def _level(scale: Scale, level: Level, label_y: float) -> str:
    y = scale.y(level.value)
    colour = SEVERITY_COLOURS.get(level.severity, "#57606a")
    return (f'<line class="threshold" data-value="{level.value!r}" x1="{LEFT}" x2="{LEFT + PLOT_W}" '
            f'y1="{y:.2f}" y2="{y:.2f}" stroke="{colour}" stroke-width="1.2" stroke-dasharray="5 3">'
            f"<title>{escape(level.rule)}: {escape(level.label)}</title></line>"
            f'<text x="{LEFT + PLOT_W + 4}" y="{label_y:.1f}" fill="{colour}">{escape(_short(level.label))}</text>')


def _nonfinite_marks(scale: Scale, rows: pl.DataFrame) -> str:
    if rows.is_empty():
        return ""
    pixels = sorted({round(scale.x(s)) for s in rows["step"]})  # one mark a pixel column at most
    bottom = TOP + PLOT_H
    path = " ".join(f"M{x} {bottom}v-8" for x in pixels)
    return (f'<path class="nonfinite" data-count="{rows.height}" d="{path}" stroke="{NONFINITE_COLOUR}" '
            f'stroke-width="1.5"><title>{rows.height} non-finite value(s) (NaN/inf)</title></path>')


def _legend(mean_label: str) -> str:
    """Top right, above the plot: what the line colours mean."""
    y = TOP - 10
    items = [(LINE_COLOUR, "value")]
    if mean_label:
        items.append((MEAN_COLOUR, _short(mean_label)))
    out, x = [], WIDTH - 8
    for colour, text in reversed(items):
        x -= 7 * len(text) + 4
        out.append(f'<text x="{x}" y="{y}">{escape(text)}</text>'
                   f'<line x1="{x - 18}" x2="{x - 4}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"/>')
        x -= 30
    return "\n".join(out)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.4g}"


def nice_ticks(low: float, high: float, count: int = 5, integers: bool = False) -> list[float]:
    """About `count` round numbers (1, 2 or 5 × 10^k apart) between low and high."""
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return [low] if math.isfinite(low) else []
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integers:
        step = max(step, 1.0)
    first = math.ceil(low / step)
    ticks = []
    k = first
    while k * step <= high + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks
