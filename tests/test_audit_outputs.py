"""What `ruledsl audit` leaves behind, on hostile input and when stopped: its exit status when an
input was skipped, report files written whole or not at all, no report written over what it
reads, no spilled files after SIGTERM, and no control character of a log in any report.

Exit statuses, signals and file size limits are those of a process: those tests run the real
console script (`.venv/bin/ruledsl`) in a subprocess of their own.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from cli_helpers import ANY_LOSS, EXAMPLES, ROOT, ruledsl
from log_writers import write_jsonl
from ruledsl.alerts import RECORD_FIELDS
from ruledsl.readers import jsonlog

SCRIPT = Path(sys.executable).parent / "ruledsl"  # the console script pip installed beside this interpreter
LOSS_ROWS = [(step, {"loss": 1.0 + step / 100}) for step in range(1, 41)]


def audit(*args: object, env: dict[str, str] | None = None, preexec_fn=None,
          cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`ruledsl audit ARGS…` as a process of its own: exit status, stdout and stderr."""
    assert SCRIPT.is_file(), f"no console script at {SCRIPT}: is ruledsl installed (pip install -e .)?"
    return subprocess.run([str(SCRIPT), "audit", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})}, preexec_fn=preexec_fn, timeout=300)


def good_runs(folder: Path, count: int = 1) -> Path:
    for n in range(count):
        write_jsonl(folder / f"good{n}.jsonl", LOSS_ROWS)
    return folder


def truncated_run(path: Path) -> Path:
    """A JSON Lines log cut in the middle of its 11th line, then going on (a crash mid-write)."""
    lines = [json.dumps({"step": step, **values}) for step, values in LOSS_ROWS]
    lines[10] = lines[10][:12]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def runs_of(result: subprocess.CompletedProcess) -> set[str]:
    return {r["run"] for r in json.loads(result.stdout)}


# ---------------------------------------------------------------- 1. exit status: an input was skipped


@pytest.mark.subprocess
def test_an_audit_of_every_input_in_full_exits_0(tmp_path: Path):
    result = audit(good_runs(tmp_path, 2), "--format", "json", "--no-builtin", "--alert", ANY_LOSS)
    assert result.returncode == 0, result.stderr
    assert runs_of(result) == {"good0", "good1"} and "skipped" not in result.stderr


@pytest.mark.subprocess
def test_a_truncated_line_exits_3_and_strict_inputs_fails_naming_it(tmp_path: Path):
    good_runs(tmp_path)
    damaged = truncated_run(tmp_path / "damaged.jsonl")
    result = audit(tmp_path, "--format", "json", "--no-builtin", "--alert", ANY_LOSS)
    assert result.returncode == 3, result.stderr
    assert runs_of(result) == {"good0", "damaged"}  # the rest of the damaged log is audited all the same
    assert f"warning: {damaged}:11: truncated or corrupt line" in result.stderr
    assert f"warning: 1 input(s) skipped or only partly read: {damaged} (exit status 3" in result.stderr

    strict = audit(tmp_path, "--format", "json", "--no-builtin", "--alert", ANY_LOSS, "--strict-inputs")
    assert strict.returncode == 1
    assert f"--strict-inputs: 1 input(s) skipped or only partly read: {damaged}\n" in strict.stderr
    assert strict.stdout == result.stdout  # the report of what could be read, all the same
    assert "Traceback" not in result.stderr + strict.stderr


def noise_parquet(path: Path) -> Path:
    path.write_bytes(b"PAR1" + bytes(range(256)) * 8)  # a Parquet file's magic, then noise
    return path


def damaged_parquet(path: Path) -> Path:
    """A Parquet file whose `loss` column cannot be decoded in its third row group, found only
    when the audit reads it (Archive.salvage then keeps the rest)."""
    pq = pytest.importorskip("pyarrow.parquet")
    pl.DataFrame({"step": range(1, 40_001), "loss": [(i * 7919 % 1000) / 1000 for i in range(40_000)]}) \
        .write_parquet(path, row_group_size=10_000)
    file = pq.ParquetFile(path)
    chunk = file.metadata.row_group(2).column(file.schema_arrow.get_field_index("loss"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    for i in range(start + 40, start + chunk.total_compressed_size - 10, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def unreadable_jsonl(path: Path) -> Path:
    if os.geteuid() == 0:  # root reads a file whatever its mode, but not a link to itself (ELOOP)
        path.symlink_to(path.name)
        return path
    write_jsonl(path, LOSS_ROWS).chmod(0)
    return path


@pytest.mark.subprocess
@pytest.mark.parametrize("make, runs", [
    (unreadable_jsonl, {"good0"}),
    (noise_parquet, {"good0"}),
    (damaged_parquet, {"good0", "broken"}),  # salvaged: what decodes is audited
], ids=["unreadable", "noise-parquet", "damaged-parquet"])
def test_a_file_skipped_or_partly_read_exits_3(tmp_path: Path, make, runs: set[str]):
    good_runs(tmp_path)
    broken = make(tmp_path / ("broken.jsonl" if make is unreadable_jsonl else "broken.parquet"))
    try:
        result = audit(tmp_path, "--format", "json", "--no-builtin", "--alert", ANY_LOSS)
        strict = audit(tmp_path, "--format", "json", "--no-builtin", "--alert", ANY_LOSS, "--strict-inputs")
    finally:
        if not broken.is_symlink():
            broken.chmod(0o644)
    assert result.returncode == 3, result.stderr
    assert runs_of(result) == runs and f"warning: {broken}: " in result.stderr
    assert strict.returncode == 1 and f"--strict-inputs: 1 input(s) skipped or only partly read: {broken}" \
        in strict.stderr


@pytest.mark.subprocess
def test_alerts_at_fail_on_win_over_a_skipped_input_and_an_allowed_missing_path_is_none(tmp_path: Path):
    good_runs(tmp_path)
    damaged = truncated_run(tmp_path / "damaged.jsonl")
    alert = "all: loss > 0 -> high: loss seen"
    failed = audit(tmp_path, "--no-builtin", "--alert", alert, "--fail-on", "high")
    assert failed.returncode == 1 and f"skipped or only partly read: {damaged}" in failed.stderr
    below = audit(tmp_path, "--no-builtin", "--alert", alert, "--fail-on", "critical")
    assert below.returncode == 3
    damaged.unlink()
    missing = tmp_path / "not-yet"
    allowed = audit(tmp_path, missing, "--no-builtin", "--alert", alert, "--allow-missing", "--strict-inputs")
    assert allowed.returncode == 0 and f"warning: {missing}: no such file or directory" in allowed.stderr


def exit_statuses(text: str) -> dict[int, str]:
    """{status: its first line} of an exit status list: lines starting with a status number."""
    return {int(m[1]): m[2] for m in re.finditer(r"^[ |`]*(\d+)`?[ |]+(\S.*)$", text, re.MULTILINE)}


def test_the_exit_statuses_are_documented_alike_in_help_and_docs():
    help_text = ruledsl("audit", "--help").stdout
    section = help_text.split("Exit status")[1]
    documented = (ROOT / "docs" / "report.md").read_text(encoding="utf-8").split("## Exit status")[1].split("\n## ")[0]
    assert set(exit_statuses(section)) == set(exit_statuses(documented)) == {0, 1, 2, 3, 130, 143}
    assert "--strict-inputs" in section and "--strict-inputs" in documented
    assert "--strict-inputs" in (ROOT / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- 2. report files: whole or not at all

FORMATS = ["table", "json", "jsonl", "csv", "markdown", "html"]


def small_file_limit(size: int):
    """For preexec_fn: files of at most `size` bytes, and a write past that an OSError (EFBIG)
    rather than the SIGXFSZ that would kill the process."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_that_cannot_be_written_leaves_the_previous_one(tmp_path: Path, fmt: str):
    runs = good_runs(tmp_path / "runs", 8)
    out = tmp_path / "out"
    out.mkdir()
    report = out / "report.out"
    report.write_text("the previous report\n")
    args = (runs, "--no-builtin", "--alert", ANY_LOSS, "--format", fmt, "--output", report)
    result = audit(*args, preexec_fn=small_file_limit(300))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == \
        f"error: cannot write the report to {report}: File too large ({report} is left as it was)"
    assert "Traceback" not in result.stderr
    assert report.read_text() == "the previous report\n"
    assert [p.name for p in out.iterdir()] == ["report.out"]  # no temporary file left
    written = audit(*args)  # without the limit: written whole, in place of the previous one
    assert written.returncode == 0, written.stderr
    assert len(report.read_bytes()) > 300 and [p.name for p in out.iterdir()] == ["report.out"]


@pytest.mark.subprocess
def test_a_coverage_file_that_cannot_be_written_leaves_the_previous_one(tmp_path: Path):
    runs = good_runs(tmp_path / "runs", 8)
    coverage = tmp_path / "coverage.json"
    coverage.write_text("[]\n")
    result = audit(runs, "--no-builtin", "--alert", "all: los > 1 -> low: misspelt", "--coverage", coverage,
                   preexec_fn=small_file_limit(300))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: cannot write the coverage to {coverage}: File too large" in result.stderr
    assert coverage.read_text() == "[]\n" and sorted(p.name for p in tmp_path.iterdir()) == ["coverage.json", "runs"]


def test_a_report_replaces_the_previous_one_keeping_its_permissions(tmp_path: Path):
    report = tmp_path / "report.json"
    report.write_text("old")
    report.chmod(0o640)
    result = ruledsl("audit", str(EXAMPLES / "sft_nan"), "--output", str(report))
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text()) and report.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- 3. no report over what is audited


def test_an_output_that_is_an_audited_file_is_refused_before_reading(tmp_path: Path):
    damaged = truncated_run(tmp_path / "metrics.jsonl")  # read, it would say so on stderr
    before = damaged.read_bytes()
    (tmp_path / "link.txt").symlink_to(damaged)
    (tmp_path / "sub").mkdir()
    for output in (damaged, tmp_path / "link.txt", tmp_path / "sub" / ".." / "metrics.jsonl"):
        result = ruledsl("audit", str(damaged), "--output", str(output))
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"error: --output {output} is the audited input {damaged}; write it elsewhere " \
                                "or under another name\n"  # nothing read: no warning of the damaged line
    coverage = ruledsl("audit", str(damaged), "--coverage", str(damaged))
    assert coverage.returncode == 2 and coverage.stderr.startswith(f"error: --coverage {damaged} is the audited")
    assert damaged.read_bytes() == before


def test_an_output_that_would_be_read_as_a_log_of_an_audited_folder_is_refused(tmp_path: Path):
    runs = good_runs(tmp_path / "runs", 2)
    for name in ("report.jsonl", "report.csv", "reports/alerts.parquet", "trainer_state.json"):
        result = ruledsl("audit", str(runs), "--format", "json", "--output", str(runs / name))
        assert result.returncode == 2, name
        assert result.stderr == f"error: --output {runs / name} is inside the audited folder {runs}, where it " \
                                "would be read as a log (now or the next time); write it elsewhere or under " \
                                "another name\n"
        assert not (runs / name).exists()
    refused = ruledsl("audit", str(runs), "--coverage", str(runs / "coverage.jsonl"))
    assert refused.returncode == 2 and "would be read as a log" in refused.stderr
    same = ruledsl("audit", str(runs), "--output", str(tmp_path / "a.json"), "--coverage", str(tmp_path / "a.json"))
    assert same.returncode == 2 and "--output and --coverage both name" in same.stderr
    # what the walk never reads as a log may be written there: an html report, a hidden folder, a .json
    for name in ("report.html", ".reports/report.csv", "alerts.json"):
        (runs / name).parent.mkdir(exist_ok=True)
        result = ruledsl("audit", str(runs), "--no-builtin", "--alert", ANY_LOSS, "--output", str(runs / name))
        assert result.returncode == 0, result.stderr
    again = ruledsl("audit", str(runs), "--no-builtin", "--alert", ANY_LOSS, "--format", "json")
    assert {r["run"] for r in json.loads(again.stdout)} == {"good0", "good1"}  # no report audited as a run


# ---------------------------------------------------------------- 4. stopped: no spilled file left


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> Iterator[Path]:
    """One run's JSON Lines log larger than jsonlog.SPILL_BYTES: read, its parsed blocks go to
    temporary Parquet files (readers.common.Spill) while the audit runs. Removed after the
    module (pytest keeps the temporary folders of its last runs)."""
    path = tmp_path_factory.mktemp("big") / "run.jsonl"
    rows = 3_500_000  # about 85 bytes a line
    pl.select(step=pl.int_range(1, rows + 1)).with_columns(
        loss=(pl.col("step") % 997) / 997, grad_norm=(pl.col("step") % 89) / 8.9,
        learning_rate=pl.lit(1e-5), kl=(pl.col("step") % 13) / 130).write_ndjson(path)
    assert path.stat().st_size > jsonlog.SPILL_BYTES
    yield path
    path.unlink()


def stopped_midway(args: list[object], temporary: Path, spilled: str, sig: int,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`ruledsl audit ARGS` with TMPDIR=temporary, sent `sig` once a file named like `spilled`
    is there (it is mid-audit, with files on disk)."""
    temporary.mkdir()
    process = subprocess.Popen([str(SCRIPT), "audit", *map(str, args)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(temporary), **(env or {})},
                               preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not any(temporary.rglob(spilled)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, f"the audit ended before it spilled anything: {process.stderr.read()}"
    assert any(temporary.rglob(spilled)), "nothing spilled in two minutes"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


def _default_sigint() -> None:
    """The child's SIGINT as a shell leaves it: a test runner's worker may ignore it, and an
    ignored SIGINT is inherited (Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.subprocess
@pytest.mark.parametrize("sig, status, words", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                (signal.SIGINT, 130, "interrupted (Ctrl-C)")],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stopped_streaming_audit_removes_what_it_spilled(tmp_path: Path, big_log: Path, sig: int, status: int,
                                                           words: str):
    temporary = tmp_path / "tmp"
    result = stopped_midway([big_log, "--streaming", "--format", "json"], temporary, "*.parquet", sig)
    assert result.returncode == status, result.stderr
    assert result.stderr.splitlines()[-1] == f"error: {words}: the audit stopped, its temporary files are removed"
    assert "Traceback" not in result.stderr
    assert list(temporary.iterdir()) == []


FORCED_SPILLS = {"POLARS_OOC_MEMORY_BUDGET_MB": "1", "POLARS_OOC_SPILL_MIN_BYTES": "1"}  # polars spills at once


@pytest.mark.subprocess
def test_polars_spills_go_to_the_audits_temporary_folder_and_go_with_it(tmp_path: Path):
    large, small = loss_log(tmp_path / "large.jsonl", 1_000_000), loss_log(tmp_path / "small.jsonl", 20_000)
    stopped = stopped_midway([large, "--streaming", "--format", "json"], tmp_path / "stopped", "spill-*.ipc",
                             signal.SIGTERM, env=FORCED_SPILLS)
    assert stopped.returncode == 143, stopped.stderr
    assert list((tmp_path / "stopped").iterdir()) == []

    done = tmp_path / "done"
    done.mkdir()
    finished = audit(small, "--streaming", "--format", "json", "--no-builtin", "--alert", ANY_LOSS,
                     env={**FORCED_SPILLS, "POLARS_VERBOSE": "1", "TMPDIR": str(done)})
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "ooc: spilling" in finished.stderr  # polars did spill, and what it spilled is gone with the audit
    assert list(done.iterdir()) == []


def loss_log(path: Path, rows: int) -> Path:
    pl.select(step=pl.int_range(1, rows + 1)).with_columns(loss=(pl.col("step") % 97) / 97).write_ndjson(path)
    return path


def test_the_sigterm_handler_and_the_spill_folder_are_the_audits_alone():
    """In a process that goes on after an audit (a test, a notebook), neither the SIGTERM
    handler nor polars' spill folder outlive it: a process started later spills in its own."""
    handler, variable = signal.getsignal(signal.SIGTERM), os.environ.get("POLARS_OOC_SPILL_DIR")
    assert ruledsl("audit", str(EXAMPLES / "sft_nan"), "--streaming").returncode == 0
    assert signal.getsignal(signal.SIGTERM) is handler
    assert os.environ.get("POLARS_OOC_SPILL_DIR") == variable


# ---------------------------------------------------------------- 5. control characters of logs in reports

HOSTILE_RUN = "=run\x1b[31m red\x07 bell\nnew line <script>alert(1)</script> a|b, c"  # no "/": one file
HOSTILE_KEY = "lo\x1b[2Jss\x07|<b>,k"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what no report may hold (\t and \n aside)


@pytest.fixture
def hostile_archive(tmp_path: Path) -> Path:
    """Two runs: one named HOSTILE_RUN logging HOSTILE_KEY, one plain; a rule alerting on the key
    whose message quotes both (messages interpolate what the logs hold)."""
    rows = [(step, {HOSTILE_KEY: float(step)}) for step in range(1, 11)]
    write_jsonl(tmp_path / "archive" / f"{HOSTILE_RUN}.jsonl", rows)
    write_jsonl(tmp_path / "archive" / "plain.jsonl", rows)
    return tmp_path / "archive"


def hostile_report(archive: Path, fmt: str) -> subprocess.CompletedProcess:
    result = audit(archive, "--no-builtin", "--format", fmt,
                   "--alert", f"all: `{HOSTILE_KEY}` > 5 -> high: {{run}} logged {{metric}} at {{step}}")
    assert result.returncode == 0, result.stderr
    assert not CONTROL.search(result.stdout)
    assert not CONTROL.search(result.stderr)  # the notes on stderr name the runs too
    return result


SHOWN_RUN = "=run\\x1b[31m red\\x07 bell\\nnew line <script>alert(1)</script> a|b, c"
SHOWN_KEY = "lo\\x1b[2Jss\\x07|<b>,k"


@pytest.mark.subprocess
def test_json_keeps_the_text_exactly(hostile_archive: Path):
    records = json.loads(hostile_report(hostile_archive, "json").stdout)
    assert [(r["run"], r["metric"]) for r in records] == [(HOSTILE_RUN, HOSTILE_KEY), ("plain", HOSTILE_KEY)]


@pytest.mark.subprocess
def test_csv_is_one_well_formed_line_a_record_with_control_characters_shown(hostile_archive: Path):
    text = hostile_report(hostile_archive, "csv").stdout
    rows = list(csv.reader(io.StringIO(text)))
    assert len(text.splitlines()) == len(rows) == 3  # the header, two records: no newline inside a cell
    assert rows[0] == list(RECORD_FIELDS) and all(len(row) == len(RECORD_FIELDS) for row in rows)
    records = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert records[0]["run"] == "'" + SHOWN_RUN  # shown, and no formula for a spreadsheet
    assert records[0]["metric"] == records[1]["metric"] == SHOWN_KEY
    assert records[0]["message"] == f"'{SHOWN_RUN} logged {SHOWN_KEY} at 6"  # it starts with the run


def markdown_alert_rows(text: str) -> list[list[str]]:
    """The cells of each row of the markdown report's alert table, as a markdown parser reads them."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(text)
    rows: list[list[str]] = []
    table = 0
    for i, token in enumerate(tokens):
        table += token.type == "table_open"
        if table == 3 and token.type == "tr_open":  # the third table: the alerts (before it: summary, runs)
            rows.append([])
        elif table == 3 and token.type in ("th_open", "td_open"):
            rows[-1].append("".join(child.content for child in tokens[i + 1].children or []))
    return rows


@pytest.mark.subprocess
def test_markdown_keeps_one_table_row_a_record_with_control_characters_shown(hostile_archive: Path):
    text = hostile_report(hostile_archive, "markdown").stdout
    rows = markdown_alert_rows(text)
    assert len(rows) == 3 and all(len(row) == 8 for row in rows)  # the header and two records, 8 cells each
    run, _, _, metric, _, _, _, message = rows[1]  # as read: the escapes of markup undone, text as shown
    assert (run, metric, message) == (SHOWN_RUN, SHOWN_KEY, f"{SHOWN_RUN} logged {SHOWN_KEY} at 6")
    assert "<script" not in text and "<b>" not in text


class Page(HTMLParser):
    """An HTML report as a browser reads it: its tags, attributes, texts and alert table rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.values: list[str] = []
        self.rows: list[list[str]] = []
        self.in_alerts = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.values += [value or "" for _, value in attrs]
        if tag == "table":
            self.in_alerts = ("class", "alerts") in attrs
        if self.in_alerts and tag == "tr" and ("class", "message") not in attrs:
            self.rows.append([])  # an alert's row; the message's row under it adds its last cell
        elif self.in_alerts and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if self.cell is not None and tag in ("td", "th"):
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        self.values.append(data)
        if self.cell is not None:
            self.cell.append(data)


@pytest.mark.subprocess
def test_html_escapes_markup_and_shows_control_characters(hostile_archive: Path):
    page = Page()
    page.feed(hostile_report(hostile_archive, "html").stdout)
    assert page.tags.count("script") == 3 and "b" not in page.tags  # its own: chart data, uPlot, the drawing code
    assert not any(CONTROL.search(value) for value in page.values)
    assert len(page.rows) == 3 and len(page.rows[0]) == 7 and all(len(row) == 8 for row in page.rows[1:])
    _, run, _, metric, _, _, _, message = page.rows[1]  # severity first; the message in a row of its own
    assert (run, metric, message) == (SHOWN_RUN, SHOWN_KEY, f"{SHOWN_RUN} logged {SHOWN_KEY} at 6")


@pytest.mark.subprocess
def test_the_table_shows_control_characters_escaped_as_before(hostile_archive: Path):
    text = hostile_report(hostile_archive, "table").stdout
    assert f"\n{SHOWN_RUN}\n" in text and f"{SHOWN_RUN} logged {SHOWN_KEY} at 6" in text
