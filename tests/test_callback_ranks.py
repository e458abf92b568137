"""Per-rank step time and memory across the processes of a torch.distributed run (ruledsl/integrations/ranks.py).

The summary of the gathered values and the switches are tested in this process; the gathering
itself for real, in two processes joined by torch.distributed (gloo on CPU, tests/ranks_worker.py):
alone on a small model (every N rows, the slow rank named, a rank that does not come ending in a
bounded timeout on both), and inside a tiny SFT Trainer under DDP with DiagnosticsCallback (the
straggler alert names the slowed rank, only rank 0 writes and prints, and a `stop_on` alert on the
gathered values stops both ranks at the same step). Every process runs under a timeout: a hang
fails the test instead of hanging CI.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ruledsl.integrations.ranks import (
    MEMORY_MAX,
    MEMORY_MIN,
    SLOWEST_RANK,
    STEP_TIME_MAX,
    STEP_TIME_MEDIAN,
    STEP_TIME_MIN,
    RankMetrics,
    StepClock,
    SystemMetricsSettings,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "ranks_worker.py"
STRAGGLER_RULE = ROOT / "rules" / "common" / "rank_straggler.yaml"
PROCESS_TIMEOUT_S = 300  # a two-process run takes ~15 s here; a hang fails well before CI's own limit
STEP_KEYS = {STEP_TIME_MAX, STEP_TIME_MEDIAN, STEP_TIME_MIN, SLOWEST_RANK}


# ------------------------------------------------------------ in this process

def test_summary_names_the_slowest_rank_against_the_lower_median():
    keys = summarize([0.1, 0.5, 0.2, 0.3], [100.0, 180.0, 120.0, 110.0])
    assert keys == {STEP_TIME_MAX: 0.5, STEP_TIME_MEDIAN: 0.2, STEP_TIME_MIN: 0.1, SLOWEST_RANK: 1,
                    MEMORY_MAX: 180.0, MEMORY_MIN: 100.0}
    # two ranks: the median is the faster one, so a slow rank is compared with the other rank
    assert summarize([0.01, 0.15], [1.0, 1.0])[STEP_TIME_MEDIAN] == 0.01
    assert summarize([0.2, 0.2, 0.1], [1.0, 1.0, 1.0])[SLOWEST_RANK] == 0  # a tie names the lowest rank


def test_summary_leaves_out_a_family_that_a_rank_did_not_measure():
    keys = summarize([0.1, math.nan], [100.0, 120.0])
    assert set(keys) == {MEMORY_MAX, MEMORY_MIN}
    assert set(summarize([0.1, 0.2], [100.0, math.nan])) == STEP_KEYS


@pytest.mark.parametrize("settings, message", [
    ({"every": 0}, "system_metrics_every takes a whole number of logged rows >= 1"),
    ({"every": 2.5}, "system_metrics_every"),
    ({"every": True}, "system_metrics_every"),
    ({"straggler_factor": 1}, "straggler_factor takes a number above 1"),
    ({"memory_imbalance_factor": math.nan}, "memory_imbalance_factor takes a number above 1"),
    ({"timeout_s": 0}, "timeout takes a number of seconds above 0"),
])
def test_bad_settings_fail_with_what_is_wanted(settings, message):
    with pytest.raises(ValueError, match=message):
        SystemMetricsSettings(**settings)


def test_system_metrics_takes_a_boolean():
    with pytest.raises(TypeError, match="system_metrics takes True or False"):
        SystemMetricsSettings(on="yes")


def test_the_callback_checks_its_switches_when_built():
    pytest.importorskip("transformers", reason="needs the TRL extra: pip install 'ruledsl[trl]'")
    from ruledsl.integrations.callback import DiagnosticsCallback

    with pytest.raises(ValueError, match="system_metrics_every"):
        DiagnosticsCallback(system_metrics_every=0)
    with pytest.raises(ValueError, match="straggler_factor"):
        DiagnosticsCallback(straggler_factor=0.5)


@pytest.mark.subprocess
def test_the_module_does_not_import_torch():
    code = "import sys, ruledsl.integrations.ranks; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_single_process_gathers_nothing():
    assert RankMetrics().start(model=None) is False  # torch.distributed is not initialised here
    assert RankMetrics().on_row() == {}


def test_compute_time_counts_the_passes_and_not_what_runs_between_them():
    """The forward pass (slowed by 0.05 s) and the backward pass count; a 1 s wait between them (a
    gather of the trainer's metrics, in real runs) does not, nor a forward pass without gradients."""
    torch = pytest.importorskip("torch")
    import time

    model = torch.nn.Linear(4, 1)
    model.register_forward_hook(lambda *_: time.sleep(0.05) if torch.is_grad_enabled() else None)
    clock = StepClock()
    model.register_forward_pre_hook(clock.forward_started)
    model.register_forward_hook(clock.forward_ended)
    for parameter in model.parameters():
        parameter.register_post_accumulate_grad_hook(clock.gradient_ready)
    clock.step_begin()
    with torch.no_grad():
        model(torch.ones(2, 4))  # a generation-like pass: not counted
        time.sleep(1.0)
    loss = model(torch.ones(2, 4)).sum()
    time.sleep(1.0)  # between the forward and the backward pass: not counted
    loss.backward()
    clock.step_end()
    seconds = clock.mean_step_time()
    assert 0.05 <= seconds < 1.0
    assert math.isnan(clock.mean_step_time())  # read once: the next interval starts empty


# ------------------------------------------------------------ two real processes

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_two_ranks(tmp_path: Path, spec: dict) -> list[dict]:
    """Both ranks of `spec` as two processes joined by torch.distributed on this machine; each rank's
    result, with its exit code, stdout and stderr. Fails (killing both) when they do not end in time."""
    spec = {"result": str(tmp_path / "result{rank}.json"), "output_dir": str(tmp_path), **spec}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    port = free_port()
    processes = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "PYTHONPATH": str(ROOT),
               "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, str(WORKER), str(spec_file)], cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=PROCESS_TIMEOUT_S))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail(f"the two ranks did not end within {PROCESS_TIMEOUT_S} s: a hang")
    results = []
    for rank, (process, (out, err)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank} exited {process.returncode}:\n{err[-3000:]}"
        result = json.loads((tmp_path / f"result{rank}.json").read_text())
        results.append({**result, "stdout": out, "stderr": err})
    return results


@pytest.mark.trl
@pytest.mark.subprocess
def test_every_nth_row_gets_the_same_keys_on_both_ranks_naming_the_slow_one(tmp_path):
    pytest.importorskip("torch")
    ranks = run_two_ranks(tmp_path, {"mode": "gather", "every": 2, "rows": 4, "slow_rank": 1,
                                     "slow_seconds": 0.2, "timeout_s": 60})
    rows = ranks[0]["rows"]
    assert rows == ranks[1]["rows"]  # one all_gather: every rank merges the same values
    assert rows[0] == {} and rows[2] == {}
    for row in (rows[1], rows[3]):
        assert set(row) == STEP_KEYS | {MEMORY_MAX, MEMORY_MIN}
        assert row[SLOWEST_RANK] == 1
        assert row[STEP_TIME_MAX] >= 0.2 > row[STEP_TIME_MIN]
        assert row[MEMORY_MAX] >= row[MEMORY_MIN] > 0  # peak resident set, MiB


@pytest.mark.trl
@pytest.mark.subprocess
def test_a_rank_that_does_not_come_makes_the_gather_fail_in_bounded_time_on_both(tmp_path):
    pytest.importorskip("torch")
    ranks = run_two_ranks(tmp_path, {"mode": "gather", "every": 1, "rows": 3, "slow_rank": -1, "slow_seconds": 0,
                                     "timeout_s": 2, "stall_rank": 1, "stall_at": 1, "stall_seconds": 6})
    for rank in ranks:
        first, second = rank["rows"]  # the first gather worked; the second failed, and the loop stopped
        assert SLOWEST_RANK in first
        assert "error" in second, second
    # rank 0 waited for the timeout, not for the 6 s stall
    assert ranks[0]["rows"][1]["waited"] < 6
    assert "timed out" in ranks[0]["rows"][1]["error"].lower() or "timeout" in ranks[0]["rows"][1]["error"].lower()


def train_spec(tiny_model: Path, **overrides) -> dict:
    return {"mode": "train", "model_dir": str(tiny_model), "every": 3, "max_steps": 12, "slow_rank": 1,
            "slow_seconds": 0.3, "stop_on": None, "rules": None, **overrides}


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    pytest.importorskip("trl", reason="needs the TRL extra: pip install 'ruledsl[trl]'")
    from tiny_trl import tiny_model_dir

    return tiny_model_dir()


def alerts_of(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "alerts.jsonl").read_text().splitlines()]


@pytest.mark.trl
@pytest.mark.slow
@pytest.mark.subprocess
def test_a_ddp_trainer_names_the_slowed_rank_and_only_rank_0_writes(tmp_path, tiny_model):
    ranks = run_two_ranks(tmp_path, train_spec(tiny_model))
    assert [r["global_step"] for r in ranks] == [12, 12]
    straggler = [r for r in ranks[0]["started"] if r["rule"] == "rank_straggler"]
    assert straggler and straggler[0]["value"] == 1
    assert straggler[0]["message"].startswith("rank 1 is a straggler at step 3")
    # both monitors saw the same gathered values: the same alerts, the same values
    assert [(r["rule"], r["first_step"], r["value"]) for r in ranks[1]["started"]] == \
        [(r["rule"], r["first_step"], r["value"]) for r in ranks[0]["started"]]
    written = tmp_path / "diagnostics-rank0"
    assert not (tmp_path / "diagnostics-rank1").exists()
    lines = [json.loads(line) for line in (written / "metrics.jsonl").read_text().splitlines()]
    gathered = [line for line in lines if SLOWEST_RANK in line]
    assert [line["step"] for line in gathered] == [3, 6, 9, 12]
    assert all(line[SLOWEST_RANK] == 1 for line in gathered)
    assert any(a["event"] == "started" and a["rule"] == "rank_straggler" for a in alerts_of(written))
    config = json.loads((written / "run.json").read_text())["config"]
    assert config["ruledsl.world_size"] == 2 and config["ruledsl.straggler_factor"] == 1.5
    assert "rank_straggler at step 3" in ranks[0]["stderr"]  # alerts go to stderr, with the Trainer's warnings
    assert "ruledsl" not in ranks[1]["stdout"] and "ruledsl" not in ranks[1]["stderr"]
    assert ranks[0]["blown"] == {} and ranks[1]["blown"] == {}


@pytest.mark.trl
@pytest.mark.slow
@pytest.mark.subprocess
def test_stop_on_the_straggler_alert_stops_both_ranks_at_the_same_step(tmp_path, tiny_model):
    ranks = run_two_ranks(tmp_path, train_spec(tiny_model, max_steps=30, stop_on="medium",
                                               rules=[str(STRAGGLER_RULE)]))
    assert [r["global_step"] for r in ranks] == [3, 3]  # the first gather, at the third logged row
    for rank in ranks:
        assert rank["stopped"]["rule"] == "rank_straggler" and rank["stopped"]["step"] == 3
    stop = [a for a in alerts_of(tmp_path / "diagnostics-rank0") if a["event"] == "stop"]
    assert [a["step"] for a in stop] == [3]


@pytest.mark.trl
@pytest.mark.slow
def test_a_single_process_run_adds_no_keys_and_says_the_rank_rules_do_not_apply(tmp_path, tiny_model):
    from tiny_trl import make_trainer

    from ruledsl.integrations.callback import DiagnosticsCallback

    callback = DiagnosticsCallback(system_metrics_every=1, console=False)
    trainer = make_trainer("sft", tiny_model, tmp_path, callbacks=[callback], max_steps=3)
    trainer.train()
    assert callback.ranks is None
    lines = (tmp_path / "diagnostics" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and not any("ruledsl/" in line for line in lines)
    assert callback.config["ruledsl.world_size"] == 1
    reasons = {record.rule: record.reason for record in callback.coverage or []}
    assert reasons["rank_straggler"] == reasons["rank_memory_imbalance"] == "when_false"
