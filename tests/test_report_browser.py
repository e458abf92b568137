"""The HTML report opened in a real browser (headless Chromium, Debian's package), checked as a
person would look at it: nothing wider than the window, every chart drawn, the alert table
readable, a chart on the first screen, values read by hovering, a zoom, a log scale, and
hostile text from a log shown as text, never run.

Chromium is required, not optional: CI installs it (`.ci/run`); without it these tests fail
saying how to install it. Each test keeps its screenshots in its temporary folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import ROOT, ruledsl

pytestmark = pytest.mark.subprocess  # a browser process

CORPUS = ROOT / "tests" / "data" / "corpus"
EXAMPLES = ROOT / "examples" / "runs"
WIDTHS = {"desktop": (1280, 800), "laptop": (1366, 768), "narrow": (1024, 700)}
READABLE_MESSAGE_PX = 400  # a message column narrower than this wraps a few words a line


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("headless Chromium is needed for the HTML report's browser tests: "
                    "apt-get install -y chromium (.ci/run does it)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('playwright is missing: pip install -e ".[dev]" (it drives the system Chromium)')
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


def open_report(browser, html: Path, size: tuple[int, int]):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(html.as_uri(), wait_until="load")
    page.wait_for_function("[...document.querySelectorAll('.plot')].every(p => p.dataset.rendered)",
                           timeout=60_000)
    assert errors == [], errors
    return page


def audit_html(target: Path, *args: str) -> Path:
    result = ruledsl("audit", *args, "--format", "html", "--output", str(target))
    assert result.returncode in (0, 3), result.stderr
    return target


# What a person sees, measured in the page: widths in CSS pixels.
LAYOUT = """() => {
  const root = document.documentElement;
  const cells = [...document.querySelectorAll('table td, table th')];
  const overflowing = cells.filter(c => c.scrollWidth > c.clientWidth + 1)
                           .map(c => c.textContent.slice(0, 60) + ' ' + c.clientWidth + '<' + c.scrollWidth);
  const messages = [...document.querySelectorAll('table.alerts tr.message td')].map(c => c.clientWidth);
  const plots = [...document.querySelectorAll('.plot')];
  const blank = plots.filter(p => {
    const canvas = p.querySelector('canvas');
    if (!canvas || canvas.width === 0 || canvas.height === 0) return true;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return false;  // something drawn
    return true;
  }).length;
  const first = document.querySelector('.plot canvas');
  return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, overflowing, messages,
          plots: plots.length, blank, rendered: plots.filter(p => p.dataset.rendered === 'yes').length,
          firstChartBottom: first ? first.getBoundingClientRect().bottom : null,
          viewportHeight: window.innerHeight};
}"""


@pytest.fixture(scope="module")
def corpus_report(tmp_path_factory) -> Path:
    """The corpus audit: over a hundred runs and charts (the cap's 100 and the context charts)."""
    return audit_html(tmp_path_factory.mktemp("corpus") / "report.html", str(CORPUS))


@pytest.mark.parametrize("screen", WIDTHS)
def test_the_corpus_report_fits_the_window_and_draws_every_chart(browser, corpus_report, screen, tmp_path):
    page = open_report(browser, corpus_report, WIDTHS[screen])
    page.screenshot(path=str(tmp_path / f"corpus-{screen}.png"))
    page.screenshot(path=str(tmp_path / f"corpus-{screen}-full.png"), full_page=True)
    seen = page.evaluate(LAYOUT)
    assert seen["scrollWidth"] <= seen["clientWidth"], "the page scrolls sideways"
    assert seen["plots"] > 100 and seen["blank"] == 0 and seen["rendered"] == seen["plots"]
    assert seen["overflowing"] == [], "table cells narrower than a word"
    assert seen["messages"] and min(seen["messages"]) >= READABLE_MESSAGE_PX
    assert seen["firstChartBottom"] is not None and seen["firstChartBottom"] <= seen["viewportHeight"], \
        "no chart on the first screen"
    page.close()


def test_every_run_is_listed_with_its_status_and_trainer(browser, corpus_report):
    page = open_report(browser, corpus_report, WIDTHS["desktop"])
    rows = page.evaluate("""() => [...document.querySelectorAll('tr.run')].map(r =>
        ({run: r.dataset.run, status: r.dataset.status, cells: [...r.cells].map(c => c.innerText)}))""")
    headline = page.locator("p.headline").inner_text()  # "Audited N run(s) with …"
    page.close()
    assert len(rows) == int(headline.split()[1]) > 100 and len({r["run"] for r in rows}) == len(rows)
    healthy = [r for r in rows if r["status"] == "ok"]
    assert healthy and all(r["cells"][1].startswith("no alerts") for r in healthy)
    assert all(r["cells"][2] and r["cells"][3] and int(r["cells"][4]) > 0 for r in rows)
    severities = [r["status"] for r in rows]
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "ok": 4}
    assert [order[s] for s in severities] == sorted(order[s] for s in severities)  # the most severe first


def test_hovering_reads_values_dragging_zooms_and_the_log_box_switches_the_scale(browser, tmp_path):
    report = audit_html(tmp_path / "report.html", str(EXAMPLES / "sft_nan"))
    page = open_report(browser, report, WIDTHS["desktop"])
    chart = page.locator('.chart[data-metric="grad_norm"]').first
    chart.scroll_into_view_if_needed()
    over = chart.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    values = chart.locator(".u-legend .u-value").all_inner_texts()
    assert values[0].isdigit() and values[1] not in ("", "—"), values  # the step, and grad_norm there
    float(values[1])
    plot = chart.locator(".plot")
    before = plot.get_attribute("data-steps")
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 20, steps=5)
    page.mouse.up()
    after = plot.get_attribute("data-steps")
    assert before and after and after != before, "dragging did not zoom on the steps"
    low, high = map(int, after.split("-"))
    all_low, all_high = map(int, before.split("-"))
    assert all_low <= low < high <= all_high and high - low < (all_high - all_low) / 2
    toggle = chart.locator("input.log")
    assert toggle.is_checked()  # grad_norm: heavy-tailed, on a log scale from the start
    toggle.uncheck()
    page.wait_for_function("(el) => el.querySelector('.plot').dataset.rendered", arg=chart.element_handle())
    page.screenshot(path=str(tmp_path / "interactions.png"))
    page.close()


HOSTILE = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


def test_hostile_run_names_and_messages_stay_text(browser, tmp_path):
    """A run named, and a message holding, markup that would end the data <script> element and
    run code: shown as text in the page and in the charts, parsed back exactly from the JSON."""
    logs = tmp_path / "logs"
    logs.mkdir()
    rows = [{"run": HOSTILE, "step": s, "loss": 1.0 + (s > 5)} for s in range(1, 11)]
    (logs / "runs.csv").write_text("run,step,loss\n" + "".join(
        f'"{r["run"]}",{r["step"]},{r["loss"]}\n' for r in rows), encoding="utf-8")
    report = tmp_path / "report.html"
    result = ruledsl("audit", str(logs), "--no-builtin", "--format", "html", "--output", str(report),
                     "--alert", f"all: loss > 1.5 -> high: {HOSTILE} at {{step}}")
    assert result.returncode == 0, result.stderr
    page = open_report(browser, report, WIDTHS["desktop"])
    assert page.evaluate("() => window.pwned") is None
    data = json.loads(page.evaluate("() => document.getElementById('ruledsl-charts').textContent"))
    assert data and all(HOSTILE in spec["title"] for spec in data)
    assert HOSTILE in page.locator("table.alerts tr.message td").first.inner_text()
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    page.screenshot(path=str(tmp_path / "hostile.png"))
    page.close()


def test_ruledsl_report_writes_the_report_of_a_run_folder(browser, tmp_path):
    run = tmp_path / "sft_nan"
    shutil.copytree(EXAMPLES / "sft_nan", run)
    result = ruledsl("report", str(run))
    assert result.returncode == 0, result.stderr
    written = run / "report.html"
    assert f"written to {written}" in result.stdout
    page = open_report(browser, written, WIDTHS["laptop"])
    seen = page.evaluate(LAYOUT)
    assert seen["plots"] >= 2 and seen["blank"] == 0 and seen["scrollWidth"] <= seen["clientWidth"]
    assert "ruledsl report" in page.locator("dl.provenance").inner_text()
    page.close()
