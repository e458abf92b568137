"""One rank of the two-process runs of tests/test_callback_ranks.py (not a test module itself).

    RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
        python tests/ranks_worker.py SPEC.json

SPEC holds: model_dir, output_dir, result (a path with {rank}), every, slow_rank, slow_seconds,
stop_on, rules (rule files to run instead of the builtin library; none: the builtin library), and
mode: "train" (a tiny SFT Trainer under DDP, gloo on CPU, with DiagnosticsCallback; the diagnostics
go to <output_dir>/diagnostics-rank<rank> so the test can see which rank wrote) or "gather" (the
gathering alone on a small model, without a Trainer or DDP: `rows` steps each followed by a row, the
group's timeout `timeout_s`, and `stall_rank`, if given, sleeping `stall_seconds` before row `stall_at`).
The slow rank is slowed by a forward hook that sleeps: its forward pass takes longer, as on a slower
device, while under DDP the gradient all-reduce makes both ranks' wall time per step the same.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ["RANK"])
    result = {"gather": gather_run, "train": train_run}[spec["mode"]](spec, rank)
    Path(spec["result"].format(rank=rank)).write_text(json.dumps(result, default=str))


def train_run(spec: dict, rank: int) -> dict:
    from tiny_trl import make_trainer  # sets the offline environment before any Hugging Face import

    from ruledsl.integrations.callback import DiagnosticsCallback
    from ruledsl.model.loader import load_rules

    rules = load_rules([Path(p) for p in spec["rules"]], include_builtin=False) if spec.get("rules") else None
    callback = DiagnosticsCallback(rules=rules, include_builtin=rules is None, stop_on=spec.get("stop_on"),
                                   output_dir=Path(spec["output_dir"]) / f"diagnostics-rank{rank}",
                                   system_metrics_every=spec["every"])
    trainer = make_trainer("sft", Path(spec["model_dir"]), Path(spec["output_dir"]), callbacks=[callback],
                           max_steps=spec["max_steps"], logging_steps=1, ddp_backend="gloo")
    if rank == spec["slow_rank"]:
        seconds = spec["slow_seconds"]

        def slow_down(module, inputs, output):
            import torch

            if torch.is_grad_enabled():
                time.sleep(seconds)

        trainer.model.register_forward_hook(slow_down)
    trainer.train()
    return {"rank": rank, "global_step": trainer.state.global_step, "started": callback.started,
            "stopped": callback.stopped, "blown": callback.fuse.blown}


def gather_run(spec: dict, rank: int) -> dict:
    import torch
    import torch.distributed as dist

    from ruledsl.integrations.ranks import RankMetrics

    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    if rank == spec["slow_rank"]:
        model.register_forward_hook(lambda *_: time.sleep(spec["slow_seconds"]) if torch.is_grad_enabled() else None)
    said: list[str] = []
    ranks = RankMetrics(every=spec["every"], timeout_s=spec["timeout_s"], say=said.append)
    ranks.start(model)
    rows: list = []
    for index in range(spec["rows"]):
        if rank == spec.get("stall_rank") and index == spec["stall_at"]:
            time.sleep(spec["stall_seconds"])  # a rank that does not come in time
        ranks.step_begin()
        model(torch.ones(4, 8)).sum().backward()
        ranks.step_end()
        began = time.monotonic()
        try:
            rows.append(ranks.on_row())
        except Exception as exc:  # what the callback's fuse catches, says and switches the part off for
            rows.append({"error": f"{type(exc).__name__}: {exc}", "waited": time.monotonic() - began})
            break
    ranks.stop()
    # as in training, where the ranks go on to the next step's all-reduce: a rank whose gather timed out
    # stays alive until the late rank has made (and failed) its own gather (gloo may abort a process that
    # exits while a peer still sends to it: see ruledsl/integrations/ranks.py)
    dist.barrier()
    dist.destroy_process_group()
    return {"rank": rank, "rows": rows, "said": said}


if __name__ == "__main__":
    main(sys.argv[1])
