"""A run resumed from a checkpoint: its alerts go on where they were, and a changed configuration is an alert.

When the Trainer resumes (`trainer.train(resume_from_checkpoint=...)`), its state — and so
`state.global_step` at `on_train_begin` — is the checkpoint's. The callback then:

1. rebuilds the live rules' state by feeding a fresh Monitor the rows of the run's own
   `diagnostics/metrics.jsonl` up to the resumed step (`replay_rows`): a `for 200 steps`
   streak or a baseline taken at the start goes on, and an episode already announced is
   not announced again. Rows past the resumed step were logged by the lost part of the
   earlier session; they stay in the file, and the rows the resumed session logs for the
   same steps come later, so they win (docs/language.md §2). Without a metrics.jsonl, the
   checkpoint's own `log_history` stands in for it (the Trainer keeps every logged row there).
2. compares the configuration saved at the first start (`diagnostics/config.json`) with the
   resumed one (`drift`): each changed key, from → to, with a severity by how much it
   changes what is trained (`SEVERITY_OF`).

Nothing here imports transformers: the callback hands over plain values.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruledsl.alerts import SEVERITIES, json_safe
from ruledsl.engines.live.values import training_step
from ruledsl.model.config import normalize

CONFIG_FILE = "config.json"
RESUME_POLICIES = ("warn", "error", "ignore")
DRIFT_RULE = "config_drift"

# How much a changed key matters: what changes the optimisation problem is high (the same
# checkpoint trained on with another learning rate, batch, objective, model or data is another
# run); where, how often and under what name the run writes is low; the rest is medium.
HIGH_KEYS = frozenset({
    "learning_rate", "beta", "per_device_train_batch_size", "gradient_accumulation_steps", "world_size",
    "model", "dataset", "loss_type", "lr_scheduler_type", "weight_decay", "max_grad_norm", "optim",
    "num_generations", "temperature", "epsilon", "epsilon_high", "max_length", "max_completion_length",
    "max_prompt_length", "alpha", "gamma", "label_smoothing", "desirable_weight", "undesirable_weight",
    "bf16", "fp16",
})
LOW_PREFIXES = ("logging_", "save_", "eval_", "push_to_hub", "hub_", "report_to", "run_name",
                "disable_tqdm", "dataloader_", "log_", "overwrite_output_dir", "include_",
                "metric_for_best_model", "load_best_model_at_end", "greater_is_better", "max_steps",
                "num_train_epochs", "versions.", "ruledsl.")  # ruledsl.*: the callback's own settings
# Keys that differ between two sessions of one run by their nature: comparing them reports noise. A run
# folder moved to another disk and resumed there trains the same: output_dir is where, not what.
NOT_COMPARED_PREFIXES = ("resume_from_checkpoint", "local_rank", "logging_dir", "hub_token", "push_to_hub_token",
                         "process_index", "local_process_index", "output_dir",
                         "ruledsl.world_size")  # the callback's copy of world_size, which is compared itself
# Versions that matter to how a run trains; a different ruledsl only changes the watching.
VERSIONED = ("torch", "transformers", "trl", "accelerate", "datasets")
SEPARATOR = "."  # of the flattened configuration's keys (`model_init_kwargs.torch_dtype`)


@dataclass(frozen=True)
class Change:
    """One key whose value differs between the first start and this one (None: absent)."""

    key: str
    before: Any
    after: Any
    severity: str

    def text(self) -> str:
        return f"{self.key}: {_shown(self.before)} → {_shown(self.after)} ({self.severity})"


class ResumeConfigError(RuntimeError):
    """`resume_policy="error"` and the configuration changed: raised out of on_train_begin, before any step."""


def severity_of(key: str) -> str:
    if key in HIGH_KEYS or key.split(SEPARATOR, 1)[0] in HIGH_KEYS:
        return "high"
    if key.startswith(LOW_PREFIXES):
        return "low"
    return "medium"


# ---------------------------------------------------------------- the configuration saved at the first start


def snapshot(config: Mapping[str, Any], *, world_size: Any, model: Any, dataset: Any,
             versions: Mapping[str, str]) -> dict[str, Any]:
    """What is compared at a resume, as one flat mapping: the trainer's arguments (the run's
    configuration), the world size, the model's name or path, the dataset's fingerprint where
    the trainer exposes one, and the versions that change how a run trains (`versions.torch`…)."""
    found: dict[str, Any] = {key: value for key, value in config.items() if not key.startswith(NOT_COMPARED_PREFIXES)}
    extra = {"world_size": world_size, "model": model, "dataset": dataset}
    found.update(normalize({key: value for key, value in extra.items() if value is not None}))
    found.update({f"versions.{name}": versions[name] for name in VERSIONED if name in versions})
    return found


def model_name(model: Any) -> str | None:
    """The model's name or path, as it was loaded (`config._name_or_path`), where it says."""
    for holder in (model, getattr(model, "config", None)):
        name = getattr(holder, "name_or_path", None) or getattr(holder, "_name_or_path", None)
        if isinstance(name, str) and name:
            return name
    return None


def dataset_fingerprint(train_dataloader: Any) -> str | None:
    """A 🤗 Dataset's `_fingerprint` (a hash of its content and the operations that made it), where
    the trainer's data loader holds one; None for other datasets (nothing to compare then)."""
    dataset = getattr(train_dataloader, "dataset", None)
    fingerprint = getattr(dataset, "_fingerprint", None)
    return fingerprint if isinstance(fingerprint, str) else None


def save_snapshot(directory: Path, saved: Mapping[str, Any], step: int) -> Path:
    """config.json, written atomically (a resume must never find half of it)."""
    target = directory / CONFIG_FILE
    partial = target.with_name(CONFIG_FILE + ".partial")
    text = json.dumps(json_safe({"saved_at_step": step, "configuration": dict(saved)}), indent=2, sort_keys=True)
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    return target


def load_snapshot(directory: Path) -> dict[str, Any] | None:
    """The configuration saved at the first start; None when there is none. A file that is not
    the JSON `save_snapshot` writes is a ValueError naming it (the callback says so)."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read ({exc})") from None
    configuration = saved.get("configuration") if isinstance(saved, dict) else None
    if not isinstance(configuration, dict):
        raise ValueError(f"{path} holds no 'configuration' mapping")
    return configuration


def drift(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Each key whose value changed, appeared or went away, the most severe first, then by key."""
    changes = [Change(key, before.get(key), after.get(key), severity_of(key))
               for key in sorted(set(before) | set(after))
               if not key.startswith(NOT_COMPARED_PREFIXES) and not _same(before.get(key), after.get(key))]
    return sorted(changes, key=lambda change: (-SEVERITIES.index(change.severity), change.key))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    # JSON keeps 5e-05 as 5e-05, but an int saved as 2 may come back as 2 where 2.0 was given
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return bool(a == b)


def stopping(changes: Iterable[Change]) -> list[Change]:
    """The changes `resume_policy="error"` stops for: all but the low ones (a new logging or saving
    interval is common on a resume and changes nothing that is trained)."""
    return [change for change in changes if change.severity != "low"]


def drift_record(changes: list[Change], *, run: str, step: int) -> dict[str, Any]:
    """The alert for a changed configuration, in the shape of a rule's alert record (docs/language.md
    §4), under the name `config_drift`; its severity is the highest of the changes'."""
    severity = changes[0].severity  # drift() puts the most severe first
    listed = "; ".join(change.text() for change in changes)
    return {"run": run, "rule": DRIFT_RULE, "severity": severity, "first_step": step, "last_step": step,
            "n_evals": 1, "metric": None, "value": None,
            "message": f"resumed at step {step} with a configuration that differs from the first start: {listed}",
            "changes": [{"key": c.key, "from": c.before, "to": c.after, "severity": c.severity} for c in changes]}


def _shown(value: Any) -> str:
    return "(absent)" if value is None else repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------- the rows to replay


@dataclass
class Replay:
    """The rows of the earlier sessions up to the resumed step, in file order, and what was not used."""

    rows: list[tuple[int, dict[str, Any]]]
    source: str  # where they came from: the path of metrics.jsonl, or the checkpoint's log_history
    unreadable: int = 0  # lines that are no JSON object (a line torn by a kill) or name no step
    later: int = 0  # rows past the resumed step: the lost part of an earlier session, not replayed


def replay_rows(metrics_file: Path, resumed_step: int) -> Replay | None:
    """The rows of metrics.jsonl with a step up to `resumed_step` (None: no such file)."""
    if not metrics_file.is_file():
        return None
    found = Replay([], str(metrics_file))
    with open(metrics_file, "rb") as handle:
        for raw in handle:
            _take(found, _parsed(raw), resumed_step)
    return found


def log_history_rows(log_history: Any, resumed_step: int) -> Replay | None:
    """The checkpoint's `state.log_history` (every row the Trainer logged, with its `step`) as a
    stand-in for metrics.jsonl; None when it holds nothing."""
    if not isinstance(log_history, list) or not log_history:
        return None
    found = Replay([], "the checkpoint's log_history")
    for entry in log_history:
        _take(found, entry if isinstance(entry, dict) else None, resumed_step)
    return found


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _take(found: Replay, line: Any, resumed_step: int) -> None:
    step = training_step(line.get("step")) if isinstance(line, dict) else None
    if step is None:
        found.unreadable += 1
    elif step > resumed_step:
        found.later += 1
    else:
        found.rows.append((step, {key: value for key, value in line.items() if key not in ("step", "run")}))


def in_step_order(rows: list[tuple[int, dict[str, Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows by step, a step's rows in file order (the later row of a step still wins a key):
    the merge a batch audit of the file makes (docs/language.md §2)."""
    return iter(sorted(rows, key=lambda row: row[0]))


def resume_line(found: Replay, step: int, still_open: list[dict[str, Any]]) -> str:
    """`ruledsl: resumed at step 40: the rules' state rebuilt from 40 rows of …; open episodes go on …`."""
    text = f"ruledsl: resumed at step {step}: the rules' state rebuilt from {len(found.rows)} rows of {found.source}"
    if found.later:
        text += (f" ({found.later} later rows of the earlier session not replayed: this session logs those steps "
                 f"again, and its rows win)")
    if found.unreadable:
        text += f"; {found.unreadable} unreadable lines skipped (a line cut by the kill, most likely)"
    if still_open:
        listed = ", ".join(f"{r['rule']} ({r['severity']}, since step {r['first_step']})" for r in still_open)
        text += f"; episodes still open, not announced again: {listed}"
    return text


def ranks_agree(value: Any) -> Any:
    """The main process's `value` on every rank of a torch.distributed run (a broadcast from rank 0),
    so that all ranks replay the same rows and take the same decision; `value` itself otherwise.
    torch is looked up, never imported: a run that has not imported it is not distributed."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
