"""Per-rank step time and peak memory, gathered across the processes of a torch.distributed run.

Straggler detection is done by rules (rules/common/rank_straggler.yaml, rank_memory_imbalance.yaml),
not by code here: this module only puts numbers into the metric stream. Every `every` logged rows
(on_log calls, which every rank makes with the same row) the ranks exchange one small tensor in ONE
all_gather on a gloo group of their own, and the row gets

    ruledsl/step_time/max, ruledsl/step_time/median, ruledsl/step_time/min, ruledsl/slowest_rank,
    ruledsl/memory/max, ruledsl/memory/min

before the rules see it, so every rank's monitor reads the same values and takes the same decisions.

What "step time" means here, and why. Under DDP the gradient all-reduce ends at the same moment on
every rank, so each rank's WALL time per step is the slowest rank's: it cannot name a straggler.
What differs is how long each rank works before it reaches that synchronisation. So a rank's step
time is its COMPUTE time: from the start of the first forward pass with gradients of a micro-batch
(a forward pre-hook on the model the Trainer holds, which runs inside DDP's forward, after DDP's own
buffer broadcast) to the moment its last parameter gradient of that micro-batch is accumulated (a
post-accumulate-grad hook on each trainable parameter, which fires before DDP waits for the
all-reduce), summed over the micro-batches of an optimizer step and averaged over the steps since
the previous gather. No wait for another rank falls inside it under plain DDP. It does not include
data loading, generation under no_grad (GRPO's rollouts) or the optimizer step, and with model
sharding that gathers parameters inside the forward (FSDP, ZeRO-3) it includes those waits; on CUDA
it is measured with CUDA events on the current stream, so it is the GPU's time, not the launch time.

Peak memory (MiB): torch.cuda.max_memory_allocated() where the model is on a CUDA device (the
allocator's peak since the process started; never reset here, other code may read it), else the
process's peak resident set size (resource.getrusage; not on Windows, where it is left out).

A single process (torch.distributed not initialised, or one rank) gathers nothing and adds nothing:
there is no other rank to compare with, and the rules' `when` (config.ruledsl.world_size > 1) says
so in the coverage report. torch is looked up in sys.modules, never imported: a process that has
not imported torch is not distributed, and `import ruledsl` stays free of it.

Failures. The gather runs on its own gloo group with a bounded timeout: a rank that does not come
(crashed, stuck, its callback switched off) makes the others' gather fail after `timeout_s` instead of
waiting forever; the callback's fuse then switches this part off on that rank and says so. A rank
that fails to measure its own values still takes part, with a flag that makes every rank switch the
part off at the same row. What cannot be guaranteed: a rank stuck for good in the training loop
itself (the Trainer's own collectives wait for it), and a rank whose gather times out while another's
succeeds at the very edge of the timeout; after a timeout the part stays off on the ranks that saw it,
and the others time out at their next gather, so all ranks end up off within one more interval. And
gloo itself: a process that exits while a late peer is still sending to its abandoned gather may be
aborted by gloo at exit ("terminate called without an active exception"). During training the ranks
meet again at the next all-reduce, so this can only happen when a gather times out at the very end.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

SYSTEM_METRICS = "the gathering across ranks"  # the part's name for the callback's fuse

STEP_TIME_MAX, STEP_TIME_MEDIAN, STEP_TIME_MIN = "ruledsl/step_time/max", "ruledsl/step_time/median", \
    "ruledsl/step_time/min"
SLOWEST_RANK = "ruledsl/slowest_rank"
MEMORY_MAX, MEMORY_MIN = "ruledsl/memory/max", "ruledsl/memory/min"

# The run's configuration keys the rules read (docs/language.md §2.4); an audit may override them
WORLD_SIZE_KEY = "ruledsl.world_size"
STRAGGLER_FACTOR_KEY = "ruledsl.straggler_factor"
MEMORY_FACTOR_KEY = "ruledsl.memory_imbalance_factor"

DEFAULT_EVERY = 10
DEFAULT_STRAGGLER_FACTOR = 1.5
DEFAULT_MEMORY_FACTOR = 1.5
# Ranks reach on_log together (the Trainer all-reduces the loss just before), but other callbacks'
# on_log run first and may take a while on the main process (a tracker's upload): generous, bounded.
DEFAULT_TIMEOUT_S = 120.0
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class SystemMetricsSettings:
    """The callback's switches for this part, checked when the callback is built."""
    on: bool = True
    every: int = DEFAULT_EVERY
    straggler_factor: float = DEFAULT_STRAGGLER_FACTOR
    memory_imbalance_factor: float = DEFAULT_MEMORY_FACTOR
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not isinstance(self.on, bool):
            raise TypeError(f"system_metrics takes True or False, not {self.on!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"system_metrics_every takes a whole number of logged rows >= 1 (10 by default), "
                             f"not {self.every!r}")
        for name, factor in (("straggler_factor", self.straggler_factor),
                             ("memory_imbalance_factor", self.memory_imbalance_factor)):
            if not _is_number(factor) or not factor > 1:
                raise ValueError(f"{name} takes a number above 1 (the ratio between ranks that counts as an "
                                 f"outlier; 1.5 by default), not {factor!r}")
        if not _is_number(self.timeout_s) or not 0 < self.timeout_s < math.inf:
            raise ValueError(f"the gathering's timeout takes a number of seconds above 0, not {self.timeout_s!r}")

    def config(self, args: Any) -> dict[str, Any]:
        """What the run's configuration gets for the rules: the world size and both factors."""
        return {WORLD_SIZE_KEY: world_size(args), STRAGGLER_FACTOR_KEY: float(self.straggler_factor),
                MEMORY_FACTOR_KEY: float(self.memory_imbalance_factor)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def distributed() -> Any:
    """torch.distributed when it is initialised with two ranks or more, else None (never imported here)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist if dist.get_world_size() > 1 else None


def world_size(args: Any) -> int:
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    size = getattr(args, "world_size", 1)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 1


def summarize(step_times: list[float], memories: list[float]) -> dict[str, float]:
    """The row's keys from each rank's values, listed by rank. A value that is NaN (the rank measured
    nothing) leaves that family out: a max or median over part of the ranks would name the wrong rank.
    The median is the lower median (statistics.median_low): with two ranks it is the faster one, so
    a slow rank is compared with the other rank rather than with a mean that it pulls up itself."""
    keys: dict[str, float] = {}
    if step_times and not any(math.isnan(t) for t in step_times):
        slowest = max(range(len(step_times)), key=lambda rank: (step_times[rank], -rank))
        keys.update({STEP_TIME_MAX: step_times[slowest], STEP_TIME_MEDIAN: statistics.median_low(step_times),
                     STEP_TIME_MIN: min(step_times), SLOWEST_RANK: slowest})
    if memories and not any(math.isnan(m) for m in memories):
        keys.update({MEMORY_MAX: max(memories), MEMORY_MIN: min(memories)})
    return keys


class StepClock:
    """This rank's compute time per optimizer step (see the module docstring), fed by the Trainer's
    step hooks and by hooks on the model. `cuda=True` measures with CUDA events (the GPU's time).

    A step's compute time is the sum of two kinds of intervals, neither of which holds a wait for
    another rank under plain DDP: each forward pass with gradients (a pre- and a post-hook on the
    model), and each backward pass from the gradient of the model's output (a hook on that tensor)
    to the last parameter gradient accumulated (before DDP waits for its all-reduce). What runs
    between them, the loss and the trainer's own metrics, is left out: trainers gather metrics
    across ranks there (TRL's SFT gathers token counts and accuracy), so it holds waits."""

    def __init__(self, cuda: bool = False) -> None:
        self._cuda = cuda
        self._in_step = False
        self._forward_start: Any = None  # the open forward pass's start mark
        self._backward: list[Any] = []  # the open backward pass: [start] or [start, last gradient]
        self._intervals: list[tuple[Any, Any]] = []  # closed intervals of the steps not yet read
        self._per_step: list[int] = []  # per step since the last read: how many intervals it closed
        self._closed_before = 0  # intervals closed before the current step began

    # -- the Trainer's hooks
    def step_begin(self) -> None:
        self._in_step = True
        self._forward_start, self._backward = None, []
        self._closed_before = len(self._intervals)

    def step_end(self) -> None:
        if not self._in_step:
            return
        self._close_backward()
        self._in_step = False
        self._per_step.append(len(self._intervals) - self._closed_before)

    # -- the model's hooks (never raise: they run inside the forward and backward passes)
    def forward_started(self, *_: Any) -> None:
        try:
            if self._in_step and _grad_enabled():
                self._close_backward()  # a new micro-batch: the previous backward pass is done
                self._forward_start = self._mark()
        except Exception:  # a measurement must never break the training step
            self._forward_start = None

    def forward_ended(self, _module: Any, _inputs: Any, output: Any) -> None:
        try:
            if self._forward_start is None:
                return
            self._intervals.append((self._forward_start, self._mark()))
            self._forward_start = None
            tensor = _output_tensor(output)
            if tensor is not None:
                tensor.register_hook(self.backward_started)
        except Exception:
            self._forward_start = None

    def backward_started(self, _grad: Any) -> None:
        try:
            if self._in_step and not self._backward:
                self._backward = [self._mark()]
        except Exception:
            self._backward = []

    def gradient_ready(self, *_: Any) -> None:
        try:
            if self._in_step and self._backward:
                last = self._backward[1] if len(self._backward) > 1 else None
                self._backward[1:] = [self._mark(last)]
        except Exception:
            self._backward = []

    # -- read every gather
    def mean_step_time(self) -> float:
        """Seconds of compute per optimizer step since the last read; NaN when no step was measured."""
        measured = [count for count in self._per_step if count > 0]
        total = sum(self._seconds(start, end) for start, end in self._intervals)
        self._intervals, self._per_step = [], []
        self._closed_before = 0
        return total / len(measured) if measured else math.nan

    def _close_backward(self) -> None:
        if len(self._backward) == 2:
            self._intervals.append((self._backward[0], self._backward[1]))
        self._backward = []

    def _mark(self, reuse: Any = None) -> Any:
        if not self._cuda:
            return time.perf_counter()
        torch = sys.modules["torch"]
        event = reuse if reuse is not None else torch.cuda.Event(enable_timing=True)
        event.record()  # re-recorded at each gradient: it ends up marking the last one
        return event

    def _seconds(self, start: Any, end: Any) -> float:
        if not self._cuda:
            return max(0.0, end - start)
        end.synchronize()  # once per gather at most: the events were recorded steps ago
        return max(0.0, start.elapsed_time(end) / 1000.0)


def _output_tensor(output: Any) -> Any:
    """The tensor of the model's output whose gradient starts the backward pass: `logits` where the
    output has them (a transformers ModelOutput), else the first tensor that requires a gradient."""
    torch = sys.modules["torch"]
    if isinstance(output, torch.Tensor):
        return output if output.requires_grad else None
    if isinstance(output, Mapping):
        logits = output.get("logits")
        candidates = [logits, *output.values()]
    elif isinstance(output, (tuple, list)):
        candidates = list(output)
    else:
        return None
    return next((t for t in candidates if isinstance(t, torch.Tensor) and t.requires_grad), None)


def _grad_enabled() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch.is_grad_enabled()) if torch is not None else False


def peak_memory_mib(cuda_device: Any = None) -> float:
    """This process's peak memory in MiB (see the module docstring); NaN where it cannot be read."""
    if cuda_device is not None:
        torch = sys.modules["torch"]
        return float(torch.cuda.max_memory_allocated(cuda_device)) / MIB
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (MIB if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


class RankMetrics:
    """This part for one training run: the hooks, the row count and the gather."""

    def __init__(self, every: int = DEFAULT_EVERY, timeout_s: float = DEFAULT_TIMEOUT_S,
                 say: Callable[[str], None] = print) -> None:
        self.every = every
        self.timeout_s = timeout_s
        self.say = say  # notes for the user (the callback passes one that prints on the main process only)
        self.dist: Any = None
        self.group: Any = None
        self.rank = 0
        self.world_size = 1
        self.clock = StepClock()
        self._cuda_device: Any = None
        self._handles: list[Any] = []
        self._rows = 0
        self._unmeasured_said = False

    @property
    def active(self) -> bool:
        return self.group is not None

    def start(self, model: Any = None) -> bool:
        """At train begin: the gloo group (every rank calls this, in the same order) and the model's
        hooks. False in a single process: nothing is gathered."""
        dist = distributed()
        if dist is None:
            return False
        self.dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        # gloo carries CPU tensors whatever the default backend (NCCL may not); the timeout bounds every wait
        self.group = dist.new_group(backend="gloo", timeout=timedelta(seconds=self.timeout_s))
        self._cuda_device = _cuda_device_of(model)
        self.clock = StepClock(cuda=self._cuda_device is not None)
        try:
            self._hook(model)
        except Exception as exc:  # still take part in the gathers (memory), or the others would time out
            self.stop_hooks()
            self.say(f"ruledsl: the model could not be hooked to time its passes ({type(exc).__name__}: {exc}): "
                     f"the step-time keys are left out, the memory keys are still gathered")
        return True

    def _hook(self, model: Any) -> None:
        if model is None or not hasattr(model, "register_forward_pre_hook"):
            return
        self._handles.append(model.register_forward_pre_hook(self.clock.forward_started))
        self._handles.append(model.register_forward_hook(self.clock.forward_ended))
        for parameter in model.parameters():
            if parameter.requires_grad:
                self._handles.append(parameter.register_post_accumulate_grad_hook(self.clock.gradient_ready))

    def stop(self) -> None:
        """At train end: the hooks are removed (the group is left to torch; destroying it is collective)."""
        self.stop_hooks()
        self.group = None

    def stop_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def step_begin(self) -> None:
        if self.active:
            self.clock.step_begin()

    def step_end(self) -> None:
        if self.active:
            self.clock.step_end()

    def on_row(self) -> dict[str, float]:
        """Called for every logged row, on every rank: the keys to merge into it (empty but at every
        `every`-th row). Raises when the gather fails or a rank could not measure: the callback's fuse
        then switches the part off (on every rank, for a failed measurement)."""
        if not self.active:
            return {}
        self._rows += 1
        if self._rows % self.every:
            return {}
        step_times, memories = self._gather(*self._own_values())
        keys = summarize(step_times, memories)
        if STEP_TIME_MAX not in keys and not self._unmeasured_said:
            self._unmeasured_said = True
            self.say(f"ruledsl: no forward and backward pass was measured on some rank since the last gather "
                     f"(step times by rank: {step_times}): {STEP_TIME_MAX} and the other step-time keys are "
                     f"left out (said once); the model may not have been given to the callback, or its "
                     f"parameters are managed by a sharding engine the hooks do not see")
        return keys

    def _own_values(self) -> tuple[float, float, bool]:
        try:
            return self.clock.mean_step_time(), peak_memory_mib(self._cuda_device), True
        except Exception:  # still take part in the gather, or the other ranks would wait for the timeout
            return math.nan, math.nan, False

    def _gather(self, step_time: float, memory: float, ok: bool) -> tuple[list[float], list[float]]:
        torch = sys.modules["torch"]
        mine = torch.tensor([1.0 if ok else 0.0, step_time, memory], dtype=torch.float64)
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        self.dist.all_gather(everyone, mine, group=self.group)
        rows = [t.tolist() for t in everyone]
        failed = [rank for rank, row in enumerate(rows) if row[0] != 1.0]
        if failed:
            self.group = None  # off on every rank at this same row: all of them see the same flags
            raise RuntimeError(f"rank(s) {failed} could not measure their step time or memory")
        return [row[1] for row in rows], [row[2] for row in rows]


def _cuda_device_of(model: Any) -> Any:
    """The CUDA device the model's parameters are on, or None (CPU, or no model)."""
    try:
        parameter = next(iter(model.parameters()))
    except Exception:
        return None
    device = getattr(parameter, "device", None)
    return device if getattr(device, "type", None) == "cuda" else None
