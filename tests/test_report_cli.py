"""`ruledsl audit --format …`: every report format through the command on the bundled examples
(in-process; the terminal test runs the real command on a pty)."""

import base64
import csv
import functools
import io
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cli_helpers import ruledsl
from ruledsl.alerts import RECORD_FIELDS
from ruledsl.lang import ast
from ruledsl.lang.meaning import threshold_of
from ruledsl.model.loader import load_rules

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "runs"
RUN_FILES = {"dpo_stuck": EXAMPLES / "dpo_stuck" / "metrics.jsonl",
             "grpo_is_collapse": EXAMPLES / "grpo_is_collapse" / "trainer_state.json",
             "sft_nan": EXAMPLES / "sft_nan" / "metrics.jsonl"}
SEVERITIES = ("critical", "high", "medium", "low")



def audit_examples(*args: str) -> subprocess.CompletedProcess:
    result = ruledsl("audit", str(EXAMPLES), *args)
    assert result.returncode == 0, result.stderr
    return result


@functools.cache
def examples_report(fmt: str) -> str:
    """The report of the example runs in one format (each command runs once per test session)."""
    return audit_examples("--format", fmt).stdout


@pytest.fixture(scope="module")
def json_records() -> list[dict]:
    return json.loads(examples_report("json"))


def rows_of(path: Path) -> list[dict]:
    """The logged rows of an example run, read independently of ruledsl's readers."""
    if path.name == "trainer_state.json":
        return json.loads(path.read_text())["log_history"]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series_of(run: str, key: str) -> list[tuple[int, float]]:
    return [(row["step"], float(row[key])) for row in rows_of(RUN_FILES[run]) if row.get(key) is not None]


# ---------------------------------------------------------------- parsing helpers


class ChartParser(HTMLParser):
    """The charts of an HTML report: their run, metric, svg domain, plot area, episodes, thresholds."""

    def __init__(self):
        super().__init__()
        self.charts: list[dict] = []
        self.start_tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.start_tags.append(tag)
        self.attributes += attrs
        if tag == "div" and a.get("class") == "chart":
            self.charts.append({"run": a["data-run"], "metric": a["data-metric"], "svg": [], "episodes": [],
                                "thresholds": [], "area": None})
        elif tag == "svg":
            self.charts[-1]["svg"].append(a)
        elif tag == "rect" and a.get("class") == "plot-area":
            self.charts[-1]["area"] = {k: float(a[k]) for k in ("x", "y", "width", "height")}
        elif tag == "rect" and a.get("class") == "episode":
            self.charts[-1]["episodes"].append(a)
        elif tag == "line" and a.get("class") == "threshold":
            self.charts[-1]["thresholds"].append(a)

    def handle_data(self, data):
        self.text.append(data)


# An HTML report's own <script> elements: the charts' JSON data, uPlot, the code drawing the charts.
OWN_SCRIPTS = 3


def without_provenance(html: str) -> str:
    return re.sub(r'<dl class="provenance">.*?</dl>', "", html, count=1, flags=re.S)


def parse_html(text: str) -> ChartParser:
    parser = ChartParser()
    parser.feed(text)
    parser.close()
    return parser


def md_svgs(markdown: str) -> list[str]:
    return [base64.b64decode(m).decode("utf-8")
            for m in re.findall(r'<img alt="[^"]*" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)">', markdown)]


@functools.cache
def builtin_rule(rule_name: str):
    return next(r for r in load_rules([], trainer=None, include_builtin=True) if r.name == rule_name)


def plotted_keys(record: dict) -> list[str]:
    """The keys an alert record is drawn on: a shorthand's metric; for a full expression
    (metric null in the record) each metric its rule reads that the run logs."""
    if record["metric"] is not None:
        return [record["metric"]]
    return [m for m in builtin_rule(record["rule"]).metrics if series_of(record["run"], m)]


def expected_charts(records: list[dict]) -> set[tuple[str, str]]:
    """One chart per alerted (run, key), every key a string (never a full expression's null metric)."""
    return {(r["run"], key) for r in records for key in plotted_keys(r)}


def expected_threshold(rule_name: str) -> float | None:
    """The spec's threshold where it is a level of the metric: comparisons, range, outside.

    (drop/rise take a percentage, spike a factor, flat a tolerance: no line for those;
    nor for a full expression.)
    """
    rule = builtin_rule(rule_name)
    first = ast.leaves(rule.condition.body)[0]
    if rule.condition.is_shorthand and isinstance(first, (ast.ShorthandCompare, ast.Between)):
        return threshold_of(rule.condition)
    return None


# ---------------------------------------------------------------- csv, json, jsonl


def test_csv_reads_back_as_the_json_records(json_records):
    text = examples_report("csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(RECORD_FIELDS)

    def typed(row):
        out = {k: (None if v == "" else v) for k, v in row.items()}
        for k in ("first_step", "last_step", "n_evals"):
            out[k] = int(out[k])
        out["value"] = out["value"] if out["value"] in ("nan", "inf", "-inf") else float(out["value"])
        return out

    assert [typed(r) for r in rows] == json_records
    assert any(r["value"] == "nan" for r in rows)  # non-finite values as in JSON


def test_jsonl_holds_the_json_records(json_records):
    lines = examples_report("jsonl").splitlines()
    assert [json.loads(line) for line in lines] == json_records


# ---------------------------------------------------------------- html


def test_html_has_one_chart_per_alerted_metric_with_bands_and_thresholds(json_records):
    page = parse_html(examples_report("html"))
    # full-expression rules (metric null) fire on the examples too: their records are charted
    # on each metric they read, and nothing compares a null metric with a run's keys
    assert any(r["metric"] is None for r in json_records)
    alerted = expected_charts(json_records)
    assert sorted((c["run"], c["metric"]) for c in page.charts) == sorted(alerted)
    assert all(len(c["svg"]) == 1 for c in page.charts)
    charts = {(c["run"], c["metric"]): c for c in page.charts}
    checked_levels = 0
    for record, key in ((r, k) for r in json_records for k in plotted_keys(r)):
        chart = charts[(record["run"], key)]
        svg, area = chart["svg"][0], chart["area"]
        x0, x1 = float(svg["data-step-min"]), float(svg["data-step-max"])
        y0, y1 = float(svg["data-value-min"]), float(svg["data-value-max"])
        series = series_of(record["run"], key)
        assert (x0, x1) == (min(s for s, _ in series), max(s for s, _ in series))
        finite = [v for _, v in series if math.isfinite(v)]
        assert y0 <= min(finite) and max(finite) <= y1

        def px(step, area=area, x0=x0, x1=x1):
            return area["x"] + (step - x0) / (x1 - x0) * area["width"]

        band = next(e for e in chart["episodes"] if int(e["data-first-step"]) == record["first_step"]
                    and e["data-severity"] == record["severity"])
        assert int(band["data-last-step"]) == record["last_step"]
        assert band["data-severity"] == record["severity"]
        assert float(band["x"]) == pytest.approx(px(record["first_step"]), abs=0.01)
        width = max(px(record["last_step"]) - px(record["first_step"]), 1.0)  # a one-step episode still shows
        assert float(band["width"]) == pytest.approx(width, abs=0.01)
        threshold = expected_threshold(record["rule"])
        if threshold is None:
            continue
        checked_levels += 1
        line = next(t for t in chart["thresholds"] if float(t["data-value"]) == threshold)
        y = area["y"] + (y1 - threshold) / (y1 - y0) * area["height"]
        assert float(line["y1"]) == pytest.approx(y, abs=0.01) and line["y1"] == line["y2"]
    assert checked_levels == 2  # IS ratio, logp difference (the others fired are full expressions or spikes)
    shorthand_charts = {(r["run"], r["metric"]) for r in json_records if r["metric"] is not None}
    assert all(c["thresholds"] == [] for k, c in charts.items() if k not in shorthand_charts)


def test_chart_cap_keeps_the_most_severe_and_says_what_it_left_out(json_records):
    alerted = expected_charts(json_records)
    critical = {(r["run"], r["metric"]) for r in json_records if r["severity"] == "critical"}
    # sft_nan's loss and grad_norm; 7 alerted metrics (dpo_loss_stuck_ln2 reads 3 of dpo_stuck's)
    assert len(critical) == 2 and len(alerted) == 7
    page = parse_html(audit_examples("--format", "html", "--max-charts", "2").stdout)
    assert {(c["run"], c["metric"]) for c in page.charts} == critical
    assert "Charts of 2 of 7 alerted metrics" in " ".join(page.text)
    uncharted = audit_examples("--format", "html", "--max-charts", "0").stdout
    assert len(re.findall(r'<tr class="alert"', uncharted)) == len(json_records)  # every alert still in the table
    assert 'class="chart' not in uncharted  # and no chart, not even the most severe one's at the top
    markdown = audit_examples("--format", "markdown", "--max-charts", "3").stdout
    assert len(md_svgs(markdown)) == 3 and "Charts of 3 of 7 alerted metrics" in markdown
    assert "Charts of" not in examples_report("html")  # under the default cap: no sentence
    bad = ruledsl("audit", str(EXAMPLES), "--max-charts", "-1")
    assert bad.returncode == 2 and "--max-charts" in bad.stderr


def test_html_levels_only_where_they_mean_a_level():
    """nonfinite and spike draw no line; range() draws both bounds (the rules given here,
    independent of the builtin library's)."""
    result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"), str(EXAMPLES / "sft_nan"), "--no-builtin",
                     "--format", "html",
                     "--alert", "stuck=all: loss range(0.68, 0.71) -> high: loss {value:.3f} near ln 2",
                     "--alert", "nan=all: grad_norm nonfinite -> critical: grad_norm is {value}",
                     "--alert", "jump=all: grad_norm spike(10x) -> medium: grad_norm jumped to {value}")
    assert result.returncode == 0, result.stderr
    page = parse_html(result.stdout)
    charts = {(c["run"], c["metric"]): c for c in page.charts}
    assert {e["data-severity"] for e in charts[("sft_nan", "grad_norm")]["episodes"]} == {"critical", "medium"}
    assert charts[("sft_nan", "grad_norm")]["thresholds"] == []  # spike(10x) and nonfinite
    loss_levels = sorted(float(t["data-value"]) for t in charts[("dpo_stuck", "loss")]["thresholds"])
    assert loss_levels == [0.68, 0.71]  # range(0.68, 0.71): both bounds
    assert page.start_tags.count("script") == OWN_SCRIPTS


def test_full_expression_alert_plots_each_metric_without_threshold():
    result = ruledsl("audit", str(EXAMPLES / "dpo_stuck"), "--no-builtin", "--format", "html", "--alert",
                     "dpo: mean(loss, 5) > 0.69 and rewards/margins < 0.01 -> low: stuck at {step}")
    assert result.returncode == 0, result.stderr
    page = parse_html(result.stdout)
    assert [c["metric"] for c in page.charts] == ["loss", "rewards/margins"]
    for chart in page.charts:
        assert chart["thresholds"] == [] and chart["episodes"]


# ---------------------------------------------------------------- markdown


def test_markdown_has_sections_charts_and_descriptions(json_records):
    text = examples_report("markdown")
    for heading in ("# ruledsl audit report", "## Summary", "## Alerts", "## Charts", "## Rules that fired"):
        assert f"\n{heading}\n" in f"\n{text}"
    svgs = md_svgs(text)
    assert len(svgs) == len(expected_charts(json_records))
    for svg in svgs:
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"  # well-formed XML
    for severity in SEVERITIES:
        count = sum(r["severity"] == severity for r in json_records)
        assert f"| {severity} | {count} |" in text
    alerts_table = text.split("\n## Alerts\n")[1].split("\n## ")[0]  # not the runs table, which lists it too
    alert_rows = [line for line in alerts_table.splitlines() if line.startswith("| ") and "dpo\\_stuck" in line]
    assert len(alert_rows) == sum(r["run"] == "dpo_stuck" for r in json_records)
    assert "no preference is being learned" in text  # a message (dpo_loss_stuck_ln2's)
    rule = next(r for r in load_rules([], trainer=None, include_builtin=True) if r.name == "loss_nonfinite")
    assert rule.description and rule.description.split()[0] in text


# ---------------------------------------------------------------- hostile names


HOSTILE_RUN = "<script>alert(1)</script>|`x`&amp"
HOSTILE_KEY = "<img src=x onerror=alert(2)>|&_k*"  # (a backtick cannot be written inside `…`)
HOSTILE_MESSAGE = "<script>alert(3)</script> | `code` & **bold** [link](javascript:x) \"quoted\", comma"


@pytest.fixture
def hostile_run(tmp_path: Path) -> Path:
    """A folder holding one run whose id (its path under the folder) is HOSTILE_RUN."""
    path = tmp_path / f"{HOSTILE_RUN}.jsonl"  # the "/" of "</script>" makes a subfolder
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"step": s, HOSTILE_KEY: float(s)}) + "\n" for s in range(1, 11)))
    return tmp_path


def hostile_audit(path: Path, fmt: str) -> subprocess.CompletedProcess:
    result = ruledsl("audit", str(path), "--no-builtin", "--format", fmt,
                     "--alert", f"all: `{HOSTILE_KEY}` > 5 -> high: {HOSTILE_MESSAGE}")
    assert result.returncode == 0, result.stderr
    return result


def test_hostile_strings_are_escaped_in_html(hostile_run: Path):
    page = parse_html(hostile_audit(hostile_run, "html").stdout)
    assert page.start_tags.count("script") == OWN_SCRIPTS and "img" not in page.start_tags
    assert not any(name.startswith("on") for name, _ in page.attributes)
    assert [(c["run"], c["metric"]) for c in page.charts] == [(HOSTILE_RUN, HOSTILE_KEY)]
    text = "".join(page.text)
    assert HOSTILE_RUN in text and HOSTILE_KEY in text and HOSTILE_MESSAGE in text  # shown, as text


def test_hostile_strings_are_escaped_in_markdown(hostile_run: Path):
    text = hostile_audit(hostile_run, "markdown").stdout
    assert "<script" not in text and "<img src=x" not in text
    (row,) = [line for line in text.splitlines() if line.startswith("| ") and "alert(3)" in line]
    cells = re.split(r"(?<!\\)\|", row)[1:-1]  # a `|` in a value is escaped, so it splits nothing
    assert len(cells) == 8
    assert "\\`code\\`" in cells[7] and "&amp;" in cells[7] and "&lt;script&gt;" in cells[7]
    (svg,) = md_svgs(text)
    root = ET.fromstring(svg)
    assert not any(el.tag.endswith("script") for el in root.iter())
    assert root.find("{http://www.w3.org/2000/svg}title").text == f"{HOSTILE_RUN} · {HOSTILE_KEY}"


def test_hostile_strings_round_trip_through_csv(hostile_run: Path):
    rows = list(csv.DictReader(io.StringIO(hostile_audit(hostile_run, "csv").stdout)))
    records = json.loads(hostile_audit(hostile_run, "json").stdout)
    assert [(r["run"], r["metric"], r["message"]) for r in rows] == \
        [(r["run"], r["metric"], r["message"]) for r in records] == [(HOSTILE_RUN, HOSTILE_KEY, HOSTILE_MESSAGE)]


def test_csv_cells_a_spreadsheet_would_run_start_with_an_apostrophe(tmp_path: Path):
    (tmp_path / "=1+1.jsonl").write_text("".join(json.dumps({"step": s, "loss": -1.5}) + "\n" for s in (1, 2)))
    args = (str(tmp_path), "--no-builtin", "--alert", "all: loss < 0 -> high: @SUM(A1) {value}")
    rows = list(csv.DictReader(io.StringIO(ruledsl("audit", *args, "--format", "csv").stdout)))
    records = json.loads(ruledsl("audit", *args, "--format", "json").stdout)
    assert [(r["run"], r["message"], r["value"]) for r in records] == [("=1+1", "@SUM(A1) -1.5", -1.5)]
    assert [(r["run"], r["message"], r["value"]) for r in rows] == [("'=1+1", "'@SUM(A1) -1.5", "-1.5")]


def test_table_shows_control_characters_escaped(hostile_run: Path):
    result = ruledsl("audit", str(hostile_run), "--no-builtin",
                     "--alert", f"all: `{HOSTILE_KEY}` > 5 -> high: clear\x1b[2Jscreen")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "clear\\x1b[2Jscreen" in result.stdout


# ---------------------------------------------------------------- coverage (docs/language.md §4)


def coverage_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two runs that log a loss and no kl, and two rules: one on kl, one whose `when` is false."""
    (tmp_path / "logs").mkdir(parents=True)
    for run in ("first", "second"):
        (tmp_path / "logs" / f"{run}.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 5)))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "kl.yaml").write_text(
        'name: kl_high\ntrainers: [all]\nmetric: kl_value\ncondition: "> 5"\nseverity: medium\nmessage: "kl"\n')
    (tmp_path / "rules" / "vllm.yaml").write_text(
        'name: vllm_loss\ntrainers: [all]\nmetric: loss\ncondition: "> 100"\nwhen: "config.use_vllm == true"\n'
        'severity: low\nmessage: "x"\n')
    return tmp_path / "logs", tmp_path / "rules"


def coverage_report(tmp_path: Path, fmt: str, *args: str) -> str:
    logs, rules = coverage_runs(tmp_path)
    result = ruledsl("audit", str(logs), "--no-builtin", "--trainer", "sft", "--rules", str(rules),
                     "--config", "use_vllm=false", "--format", fmt, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_markdown_lists_per_run_the_rules_not_evaluated(tmp_path: Path):
    text = coverage_report(tmp_path, "markdown", "--alert", "fired=all: loss > 0 -> low: loss seen")
    assert "\n## Alerts\n" in text  # the report's layout is kept: its sections, then this one
    section = text.split("\n## Not evaluated\n")[1]
    for run in ("first", "second"):
        part = section.split(f"### Run {run}\n")[1].split("###")[0]
        assert part.strip().splitlines() == [
            "- **kl\\_high**: `no_key` — no value of kl\\_value in the run",
            "- does not apply: **vllm\\_loss**: when: config.use\\_vllm == true is false on this run"]
    no_alerts = coverage_report(tmp_path / "quiet", "markdown")
    assert "No alerts." in no_alerts and "### Run first" in no_alerts.split("## Not evaluated")[1]


def test_html_lists_per_run_the_rules_not_evaluated(tmp_path: Path):
    text = coverage_report(tmp_path, "html")
    assert "<p>No alerts.</p>" in text and '<h2 id="not-evaluated">Not evaluated</h2>' in text
    blocks = re.findall(r'<div class="coverage" data-run="([^"]*)">(.*?)</div>', text)
    assert [run for run, _ in blocks] == ["first", "second"]
    for run, block in blocks:
        assert f"<h3>Run {run}</h3>" in block
        items = re.findall(r'<li data-reason="([a-z_]+)">(.*?)</li>', block)
        assert items == [("no_key", '<code>kl_high</code>: <span class="reason">no_key</span> — '
                                    "no value of kl_value in the run"),
                         ("when_false", "does not apply: <code>vllm_loss</code>: when: config.use_vllm == true "
                                        "is false on this run")]
    page = parse_html(text)  # well-formed, and the other sections as they were
    assert page.charts == [] and "Summary" in "".join(page.text)


def test_examples_report_their_coverage():
    table = examples_report("table")
    assert "\nNot evaluated (13 config_unknown, 2 no_key, 3 too_short):\n" in table
    for line in ("  grpo_kl_high: no_key on run grpo_is_collapse: ",
                 "  dpo_margin_near_zero: config_unknown on 2 runs (dpo_healthy, dpo_stuck): ",
                 "  overfitting: too_short on 3 runs (dpo_healthy, dpo_stuck, sft_nan): "):
        assert f"\n{line}" in table
    assert "### Run grpo\\_is\\_collapse" in examples_report("markdown").split("## Not evaluated")[1]
    assert '<div class="coverage" data-run="grpo_is_collapse">' in examples_report("html")


# ---------------------------------------------------------------- size, empty, format choice


def test_a_100k_step_run_gives_a_small_chart(tmp_path: Path):
    path = tmp_path / "long.jsonl"
    lines = (json.dumps({"step": s, "loss": 2.0 + math.sin(s / 500) + (40.0 if s == 77_777 else 0.0)})
             for s in range(100_000))
    path.write_text("\n".join(lines) + "\n")
    result = ruledsl("audit", str(path), "--no-builtin", "--format", "html",
                     "--alert", "all: loss > 2.5 -> medium: loss {value:.2f} at {step}")
    assert result.returncode == 0, result.stderr
    (chart,) = parse_html(result.stdout).charts
    assert len(chart["episodes"]) > 5
    (svg,) = re.findall(r"<svg.*?</svg>", result.stdout, re.S)
    assert len(svg.encode()) < 80_000  # vs ~1.5 MB for one point a step
    points = re.search(r'class="series"[^>]* points="([^"]*)"', svg).group(1).split()
    assert len(points) <= 4 * 560
    top = float(chart["area"]["y"])  # the spike at step 77 777 is still drawn, at the top of the plot
    assert min(float(p.split(",")[1]) for p in points) < top + 0.1 * chart["area"]["height"]


def test_empty_reports_are_well_formed(tmp_path: Path):
    healthy = str(EXAMPLES / "dpo_healthy")
    page = parse_html(ruledsl("audit", healthy, "--trainer", "dpo", "--format", "html").stdout)
    assert page.charts == [] and "No alerts." in "".join(page.text) and "Summary" in "".join(page.text)
    markdown = ruledsl("audit", healthy, "--trainer", "dpo", "--format", "markdown").stdout
    assert "## Summary" in markdown and "No alerts." in markdown and "| **total** | **0** |" in markdown
    assert ruledsl("audit", healthy, "--trainer", "dpo", "--format", "csv").stdout.splitlines() == \
        [",".join(RECORD_FIELDS)]


def test_output_suffix_chooses_the_format_and_format_wins_with_a_warning(tmp_path: Path, json_records):
    as_html = tmp_path / "report.html"
    result = audit_examples("--output", str(as_html))
    assert result.stdout == "" and "warning" not in result.stderr
    # the same report, but for its provenance: the command line and the time it was made
    assert without_provenance(as_html.read_text(encoding="utf-8")) == without_provenance(examples_report("html"))
    mismatched = tmp_path / "alerts.html"
    result = audit_examples("--format", "json", "--output", str(mismatched))
    assert "warning: writing json to" in result.stderr and "suggests html" in result.stderr
    assert json.loads(mismatched.read_text()) == json_records
    unknown = tmp_path / "alerts.log"
    audit_examples("--output", str(unknown))
    assert unknown.read_text().startswith("Audited 4 run(s)")


def test_unwritable_output_is_a_usage_error(tmp_path: Path):
    result = ruledsl("audit", str(EXAMPLES), "--output", str(tmp_path / "missing" / "report.html"))
    assert result.returncode == 2 and "cannot write the report" in result.stderr
    assert "Traceback" not in result.stderr


def test_table_in_a_pipe_is_plain():
    out = examples_report("table")
    assert "[CRITICAL] loss_nonfinite" in out and "\x1b[" not in out and "🔥" not in out


@pytest.mark.subprocess  # a real process whose stdout is a pty
def test_table_on_a_terminal_has_icons_and_colour_unless_no_color():
    import pty

    def on_tty(no_color: bool) -> str:
        leader, follower = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        if no_color:
            env["NO_COLOR"] = "1"
        proc = subprocess.Popen([sys.executable, "-m", "ruledsl", "audit", str(EXAMPLES)], cwd=ROOT, env=env,
                                stdout=follower, stderr=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=120)
        os.close(leader)
        return b"".join(chunks).decode("utf-8")

    coloured = on_tty(no_color=False)
    assert "🔥" in coloured and "\x1b[1;31m[CRITICAL]\x1b[0m" in coloured
    plain = on_tty(no_color=True)
    assert "🔥 [CRITICAL] loss_nonfinite" in plain and "\x1b[" not in plain
