"""The HTML report of stored logs in one call: `ruledsl report PATH` and the callback's
`report=True` (which writes diagnostics/report.html when training ends) share it.

It audits as `ruledsl audit PATH --format html` does with its defaults: the builtin rules
(and the rules a callback kept in a run's run.json), each run with its own trainer.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.engines.batch.archive import audit_archive
from ruledsl.model.loader import load_rules
from ruledsl.readers import read_archive
from ruledsl.report import Format, ReportContext, described, render
from ruledsl.report.runs import callback_rules_of

REPORT_NAME = "report.html"


@dataclass
class Built:
    html: str
    n_runs: int
    n_alerts: int
    problems: list[str] = field(default_factory=list)  # what could not be read (warnings)
    notes: list[str] = field(default_factory=list)


class NothingToReport(ValueError):
    """No readable run under the given paths."""


def build_html(paths: Sequence[Path], rule_paths: Sequence[Path] = (), builtin: bool = True,
               trainer: str | None = None, max_charts: int = 100, command: Sequence[str] = ()) -> Built:
    """The report of the runs under `paths`. NothingToReport when none can be read;
    RuleLoadError (a ValueError) for a rule file that does not load."""
    rules = load_rules(list(rule_paths), trainer=trainer, include_builtin=builtin)
    archive = read_archive(list(paths))
    if not archive.sources:
        raise NothingToReport("no readable run under " + ", ".join(map(str, paths)))
    audited = audit_archive(archive, rules, trainer=trainer, rules_of=callback_rules_of if builtin else None)
    context = ReportContext(audited.frame, rules, n_runs=len(audited.runs), trainer=trainer,
                            max_charts=max_charts, coverage=audited.coverage)
    context = described(context, Format.html, archive.sources, audited.runs, inputs=list(paths),
                        rule_paths=list(rule_paths), builtin=builtin,
                        command=command or ["ruledsl", "report", *map(str, paths)])
    html = render(audited.records, Format.html, context)
    return Built(html, len(audited.runs), audited.records.height, [str(p) for p in archive.problems],
                 [*archive.notes, *audited.notes])


def write_run_report(directory: Path) -> Path:
    """report.html in a callback's diagnostics folder, of the files it holds; where it wrote."""
    target = Path(directory) / REPORT_NAME
    training = [Path(sys.executable).name, *sys.argv]  # the command that trained, which the callback ran in
    write_text_atomically(target, build_html([Path(directory)], command=training).html)
    return target


def default_output(path: Path) -> Path:
    """report.html in the folder audited, or beside the file audited."""
    return (path if path.is_dir() else path.parent) / REPORT_NAME


def write_text_atomically(path: Path, text: str) -> None:
    """`text` in `path`, whole or not at all (a temporary file beside it, renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
