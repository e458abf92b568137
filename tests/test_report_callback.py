"""DiagnosticsCallback(report=True): a real SFT run writes diagnostics/report.html when it ends,
the report of its own files (what `ruledsl report` would write), with the alert it raised."""

from __future__ import annotations

# first: it sets the offline environment, and skips this module without the TRL extra
from tiny_trl import make_trainer, tiny_model_dir

import contextlib
import io
import json
import re

import pytest

from ruledsl import DiagnosticsCallback

pytestmark = pytest.mark.trl

ALWAYS = "sft: loss > -1e30 -> high: loss seen at {step}"  # fires from the first logged row


def train(tmp_path, **kwargs):
    callback = DiagnosticsCallback(custom_alerts={"loss_seen": ALWAYS}, **kwargs)
    trainer = make_trainer("sft", tiny_model_dir(), tmp_path / "sft", callbacks=[callback], max_steps=3,
                           logging_steps=1)  # held: the callback watches the trainer while it trains
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    return tmp_path / "sft" / "diagnostics"


def test_report_true_writes_the_html_report_at_the_end_of_training(tmp_path):
    diagnostics = train(tmp_path, report=True)
    html = (diagnostics / "report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="ruledsl-charts">(.*?)</script>',
                                html, re.S).group(1))
    assert '<tr class="run"' in html and "loss_seen" in html  # the run, and its alert (its run.json's rules)
    assert any(spec["key"] == "loss" and spec["bands"] for spec in data)  # its loss charted, the episode shaded
    assert str(diagnostics) in html  # the input it was made of, in its provenance


def test_without_report_no_html_is_written(tmp_path):
    diagnostics = train(tmp_path)
    assert (diagnostics / "metrics.jsonl").exists() and not (diagnostics / "report.html").exists()
