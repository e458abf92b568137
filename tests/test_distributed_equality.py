"""Property: on random archives and random rules, every distributed engine returns the in-process audit's
records and coverage, row for row.

An archive holds runs of several trainers (their key sets taken from the real TRL captures, so that
trainers are guessed per run as in process), of different lengths, with repeated steps (the later row
wins: the engines shuffle rows, and must keep their order), NaN and ±inf, and keys missing at random
rows. Its rows are interleaved across runs, as a table read from many files is. The rules are shorthand
comparisons, windows, drop/spike baselines, `nonfinite`, `absent`, sustained conditions, rules for one
trainer or all, and `when` on a configuration key given to every run.

The reference is the in-process archive audit over one JSON Lines file per run (distributed_helpers).
Engines are held in ENGINES: adding one is one line (a function from an Arrow table of runs, a
RuleSource, a trainer and a configuration to the records and coverage as Arrow tables). Spark calls are
slow (a job each), so the examples are few and derandomized.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings

from distributed_helpers import (
    REAL_LOGS,
    assert_same_records,
    coverage_rows,
    in_process,
    records_frame,
    spark_session,
)
from ruledsl.distributed.partition import RuleSource, rule_source
from ruledsl.model.rule import Rule
from ruledsl.readers import read_archive

EngineAudit = Callable[[Any, pa.Table, RuleSource, "str | None", "dict | None"], tuple[pa.Table, pa.Table]]


def _spark(strategy: str) -> EngineAudit:
    def run(session: Any, table: pa.Table, source: RuleSource, trainer: str | None, config: dict | None
            ) -> tuple[pa.Table, pa.Table]:
        from ruledsl.distributed.partition import split
        from ruledsl.distributed.spark_engine import audit_spark

        combined = audit_spark(session.createDataFrame(table), source, trainer=trainer, config=config,
                               strategy=strategy).combined
        part = split(combined.toArrow())  # one job for records and coverage
        return part.records, part.coverage
    return run


def _ray_session() -> Any:
    """A local Ray (two CPUs) as a session: `data` is ray.data, `stop` shuts it down."""
    from types import SimpleNamespace

    import ray

    from ruledsl.distributed.ray_engine import ray_session

    started = ray_session(num_cpus=2)
    return SimpleNamespace(data=ray.data, stop=ray.shutdown if started else lambda: None)


def _ray(strategy: str) -> EngineAudit:
    def run(session: Any, table: pa.Table, source: RuleSource, trainer: str | None, config: dict | None
            ) -> tuple[pa.Table, pa.Table]:
        from ruledsl.distributed.partition import COMBINED_SCHEMA, split
        from ruledsl.distributed.ray_engine import audit_ray, table_of

        combined = audit_ray(session.data.from_arrow(table), source, trainer=trainer, config=config,
                             strategy=strategy).combined
        part = split(table_of(combined, COMBINED_SCHEMA))  # one job for records and coverage
        return part.records, part.coverage
    return run


# Sessions by name (started once a module, when an engine needs one) and engines: name → (session, audit).
# Ray's "group" strategy differs from "map" only in how runs reach the tasks (tests/test_distributed_ray.py).
SESSIONS: dict[str, Callable[[], Any]] = {"spark": spark_session, "ray": _ray_session}
ENGINES: dict[str, tuple[str, EngineAudit]] = {
    "spark-map": ("spark", _spark("map")),
    "spark-group": ("spark", _spark("group")),
    "ray-map": ("ray", _ray("map")),
}


# ---------------------------------------------------------------- random archives


def _trainer_keys() -> dict[str, tuple[str, ...]]:
    """The keys each real capture logs (training keys only): runs with them are guessed as that trainer."""
    archive = read_archive([REAL_LOGS / f"{name}.jsonl" for name in ("sft", "dpo", "grpo")])
    return {source.run: tuple(k for k in source.keys if not k.startswith("eval_")) for source in archive.sources}


TRAINER_KEYS = _trainer_keys()
RULE_KEYS = ("loss", "grad_norm", "learning_rate", "rewards/margins", "kl")  # what the random rules read
VALUES = (0.0, 0.1, 0.5, 0.9, 1.0, 2.0, 10.0, -1.0, math.nan, math.inf, -math.inf)


@st.composite
def runs(draw: Any) -> pl.DataFrame:
    """One archive: 1–5 runs, each of one trainer's keys (or a few of them: an unknown trainer)."""
    rows: list[list[dict[str, Any]]] = []
    for number in range(draw(st.integers(1, 5))):
        trainer = draw(st.sampled_from([*TRAINER_KEYS, "unknown"]))
        keys = TRAINER_KEYS[trainer] if trainer != "unknown" else ("loss", "kl")
        step, run_rows = 0, []
        for index in range(draw(st.integers(1, 30))):
            step += draw(st.sampled_from([0, 1, 1, 1, 2, 5]))  # 0: the step again
            values = {k: 0.5 for k in keys} if index == 0 else {}  # every key logged once: the guess sees it
            for key in (k for k in RULE_KEYS if k in keys):
                if draw(st.integers(0, 4)):  # 1 in 5 missing
                    values[key] = draw(st.sampled_from(VALUES))
            run_rows.append({"run": f"r{number}", "step": step, **values})
        rows.append(run_rows)
    interleaved: list[dict[str, Any]] = []
    pending = [list(r) for r in rows]
    while any(pending):  # round robin: the runs' rows interleaved, each run's in its order
        for run_rows in pending:
            if run_rows:
                interleaved.append(run_rows.pop(0))
    columns = ["run", "step", *dict.fromkeys(k for r in interleaved for k in r if k not in ("run", "step"))]
    return pl.DataFrame(interleaved, schema={c: pl.String if c == "run" else pl.Int64 if c == "step" else pl.Float64
                                             for c in columns}, orient="row")


CONDITIONS = ("> 0.6", "< 0.2", ">= 1", "range(0.1, 0.9)", "drop(50%)", "spike(2x)", "nonfinite", "absent(3)",
              "> 0.4 for 2 steps", "not range(0, 1)")


@st.composite
def rules(draw: Any) -> list[dict[str, Any]]:
    found = []
    for number in range(draw(st.integers(2, 5))):
        rule = {"name": f"rule{number}", "trainers": [draw(st.sampled_from(["all", "all", "sft", "dpo", "grpo"]))],
                "metric": draw(st.sampled_from(RULE_KEYS)), "condition": draw(st.sampled_from(CONDITIONS)),
                "window": draw(st.integers(1, 3)), "severity": draw(st.sampled_from(["low", "high"])),
                "message": "{metric} at {value} (step {step}, {run})"}
        if draw(st.integers(0, 3)) == 0:
            rule["when"] = "config.beta > 0.05"
        found.append(rule)
    return found


@pytest.fixture(scope="module")
def sessions():
    started: dict[str, Any] = {}
    yield lambda name: started[name] if name in started else started.setdefault(name, SESSIONS[name]())
    for session in started.values():
        session.stop()


@pytest.fixture(params=list(ENGINES))
def engine(request, sessions):
    name, audit = ENGINES[request.param]
    return sessions(name), audit


@settings(max_examples=12, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(archive=runs(), chosen=rules(), beta=st.sampled_from([None, 0.01, 0.1]),
       trainer=st.sampled_from([None, None, None, "dpo"]))
def test_distributed_audit_equals_the_in_process_audit(engine, tmp_path_factory, archive, chosen, beta, trainer):
    session, audit = engine
    config = None if beta is None else {"beta": beta}
    table = archive.to_arrow()
    folder = Path(tmp_path_factory.mktemp("runs"))
    expected, expected_coverage = in_process(table, folder, [Rule.from_dict(r) for r in chosen], trainer=trainer,
                                             config=config)
    records, coverage = audit(session, table, rule_source(chosen, trainer=trainer), trainer, config)
    event(f"records: {min(expected.height, 5)}, coverage: {min(len(expected_coverage), 3)}")
    assert_same_records(records_frame(records), expected)
    assert coverage_rows(coverage) == expected_coverage


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(archive=runs(), chosen=rules(), seed=st.integers(0, 2**32 - 1))
def test_a_partition_puts_shuffled_rows_back_in_their_input_order(tmp_path_factory, archive, chosen, seed):
    """What every engine relies on: rows that reach a worker in any order, with their input position
    (ORDER), are audited as the input had them (the later row of a step wins)."""
    from ruledsl.distributed.partition import ORDER, audit_partition

    folder = Path(tmp_path_factory.mktemp("runs"))
    expected, expected_coverage = in_process(archive.to_arrow(), folder, [Rule.from_dict(r) for r in chosen])
    shuffled = archive.with_row_index(ORDER).with_columns(pl.col(ORDER).cast(pl.Int64)).sample(fraction=1.0,
                                                                                               shuffle=True, seed=seed)
    part = audit_partition(shuffled.to_arrow(), rule_source(chosen))
    assert_same_records(records_frame(part.records), expected)
    assert coverage_rows(part.coverage) == expected_coverage
