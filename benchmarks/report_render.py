"""The HTML report's size and the time a browser takes to draw it, on the corpus audit (over a
hundred charts: the 100 of alerted metrics that --max-charts keeps, and the context charts).

    .venv/bin/python benchmarks/report_render.py [PATH ...]   # default: tests/data/corpus

Needs headless Chromium (apt-get install chromium) and playwright (the dev extra). Prints, per
report: its size, the time `ruledsl audit` takes to write it, and the time from opening the
file to every chart drawn (median of a few loads, at 1280 × 800).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOADS = 5


def write_report(path: Path, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ruledsl", "audit", str(path), "--format", "html", "--output",
                    str(target)], check=False, capture_output=True)
    return time.perf_counter() - started


def render_times(report: Path) -> tuple[list[float], int]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs headless Chromium: apt-get install -y chromium")
    times = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(LOADS):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            started = time.perf_counter()
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function("[...document.querySelectorAll('.plot')].every(p => p.dataset.rendered)",
                                   timeout=120_000)
            times.append(time.perf_counter() - started)
            charts = page.evaluate("document.querySelectorAll('.plot canvas').length")
            page.close()
        browser.close()
    return times, charts


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [ROOT / "tests" / "data" / "corpus"]
    with tempfile.TemporaryDirectory() as folder:
        for path in paths:
            report = Path(folder) / "report.html"
            written = write_report(path, report)
            times, charts = render_times(report)
            print(f"{path}: {report.stat().st_size / 1e6:.2f} MB, {charts} charts drawn; "
                  f"written in {written:.2f} s; drawn in {statistics.median(times) * 1000:.0f} ms "
                  f"(median of {LOADS} loads, min {min(times) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
