"""Failures, injected into a healthy run from an onset step.

A `Failure` changes a run in up to three places: `knobs` reshape the trainer model before it
is built (a margin that collapses, a reward function that dies), `before` changes the time axis
(a learning rate that drops to 0, learning that stops) and `after` rewrites logged series once
the model is built (a NaN gradient, a key that stops arriving). Each carries `detect_after`, the
number of steps after the onset by which a practitioner wants the alert, and `why`, the reason,
which the manifest keeps as a comment.

Sources of the signatures are in /work/shared/reference/trl_failure_modes.md (ids C1..C6, D1..D6,
K1..K3, O1, G1..G13, A1, OD2, R1): each function names its id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import noise
from .sim import Sim

LN2 = math.log(2.0)
Patch = Callable[[Sim], None]


@dataclass
class Failure:
    id: str
    onset: int
    detect_after: int  # steps after onset
    why: str
    knobs: dict = field(default_factory=dict)
    before: Patch | None = None
    after: Patch | None = None
    config: dict = field(default_factory=dict)  # what the failing run's configuration says differently

    @property
    def detect_by(self) -> int:
        return self.onset + self.detect_after


def rows(n: int, logging_steps: int) -> int:
    """`n` logged rows, in steps."""
    return n * logging_steps


def ramp(sim: Sim, onset: int, duration: int) -> np.ndarray:
    """0 before `onset`, rising linearly to 1 over `duration` steps, 1 after."""
    return np.clip((sim.steps - onset + 1) / max(duration, 1), 0.0, 1.0)


def since(sim: Sim, onset: int) -> np.ndarray:
    return sim.steps >= onset


def _grad_mean_before(sim: Sim, onset: int, span: int = 50) -> float:
    return float(np.median(sim.series["grad_norm"][max(0, onset - 1 - span):onset - 1]))


# ------------------------------------------------------------------ generic: gradients (C1, C3, C2)


def grad_norm_nonfinite(onset: int, logging_steps: int, keep_loss_filter: bool = True,
                        nan_keys: tuple[str, ...] = (), zero_keys: tuple[str, ...] = (),
                        fill: dict[str, float] | None = None) -> Failure:
    """C1. The run diverges: from the onset three steps of fast-growing gradients (6x, 25x, 140x
    the recent median), then one inf and NaN on every later step. With transformers' default
    logging_nan_inf_filter=True a NaN step loss is replaced by the running mean of the window,
    which is 0 once a whole window is NaN: the logged loss turns into exactly 0.0
    (trainer `_inner_training_loop`). With the filter off the loss is NaN too. The trainer's own
    metrics computed from NaN logits are NaN (`nan_keys`; GRPO-family trainers log them as None),
    argmax-based ones drop to 0 (`zero_keys`) and `fill` sets others (what a generator with NaN
    weights produces)."""
    def after(sim: Sim) -> None:
        base = _grad_mean_before(sim, onset)
        grad = sim.series["grad_norm"]
        first_nan = onset + 3  # index of the step after the inf one
        grad[onset - 1:first_nan - 1] = base * np.array([6.0, 25.0, 140.0])
        grad[first_nan - 1] = math.inf
        grad[first_nan:] = math.nan
        sim.series["loss"][first_nan - 1:] = math.nan
        for key in nan_keys:
            sim.series[key][first_nan - 1:] = math.nan
        for key in zero_keys:
            sim.series[key][first_nan - 1:] = 0.0
        for key, value in (fill or {}).items():
            sim.series[key][first_nan:] = value  # from the first generation with the NaN weights

    filter_note = "" if keep_loss_filter else " (logging_nan_inf_filter=False: the loss is NaN as well)"
    return Failure("grad_norm_nonfinite", onset, 3 + rows(1, logging_steps),
                   "a NaN or inf gradient norm ruins the weights at once: alert on the first logged row that holds "
                   "one (the inf comes 3 steps after the onset)" + filter_note,
                   after=after, config={} if keep_loss_filter else {"logging_nan_inf_filter": False})


def grad_norm_zero(onset: int, logging_steps: int) -> Failure:
    """C3. Every parameter frozen from the onset (a callback that freezes layers for a warm
    restart never unfreezes them): gradient norms exactly 0, learning stops, the loss keeps only
    its batch noise."""
    def before(sim: Sim) -> None:
        sim.freeze_progress(onset)

    def after(sim: Sim) -> None:
        sim.series["grad_norm"][onset - 1:] = 0.0

    return Failure("grad_norm_zero", onset, rows(5, logging_steps),
                   "exact zeros for 5 logged rows cannot be a quiet batch: nothing is training", before=before,
                   after=after)


def grad_norm_spike(onset: int, logging_steps: int, height: float = 20.0) -> Failure:
    """C2. A burst: the gradient norm jumps to `height` times its recent median for one step, 8x and
    3x on the next, and the loss jumps and takes ~100 steps to come back (not all the way)."""
    def after(sim: Sim) -> None:
        base = _grad_mean_before(sim, onset)
        grad = sim.series["grad_norm"]
        grad[onset - 1:onset + 2] = base * np.array([height, 8.0, 3.0])
        loss = sim.series["loss"]
        bump = np.exp(-np.clip(sim.steps - onset, 0, None) / 30.0) * since(sim, onset + 1)
        loss += bump * 0.6 * abs(float(np.median(loss[onset - 50:onset - 1]))) + 0.03 * since(sim, onset)

    return Failure("grad_norm_spike", onset, rows(2, logging_steps),
                   f"a {height:.0f}x gradient spike is visible on the row that holds it; 2 rows leave room for a "
                   "rule that confirms it on the next row", after=after)


# ------------------------------------------------------------------ generic: loss and learning rate


def loss_spike(onset: int, logging_steps: int, factor: float = 3.0, along: dict[str, float] | None = None) -> Failure:
    """The loss jumps to `factor` times its level for ~10 steps and decays back over ~150 steps
    (a stretch of corrupt data, or an lr too high for a moment); the gradient norm spikes 5x and
    the keys of `along` move with the loss (relative change at the peak: accuracy -0.35)."""
    def after(sim: Sim) -> None:
        loss = sim.series["loss"]
        level = float(np.median(loss[onset - 50:onset - 1]))
        shape = np.where(sim.steps < onset, 0.0, np.exp(-np.clip(sim.steps - onset - 10, 0, None) / 50.0))
        loss += shape * (factor - 1.0) * abs(level)
        sim.series["grad_norm"][onset - 1:onset + 4] *= 5.0
        for key, change in (along or {}).items():
            sim.series[key] *= 1.0 + change * shape

    return Failure("loss_spike", onset, rows(3, logging_steps),
                   f"a {factor:.0f}x loss jump is plain on its first row; 3 rows for rules that compare with a "
                   "recent mean", after=after)


def loss_zero_from(onset: int, logging_steps: int, also_zero: tuple[str, ...] = ()) -> Failure:
    """The loss is exactly 0.0 from the onset, and so is the gradient: nothing left to learn from."""
    def after(sim: Sim) -> None:
        for key in ("loss", "grad_norm", *also_zero):
            sim.series[key][onset - 1:] = 0.0

    return Failure("loss_zero", onset, rows(3, logging_steps),
                   "an exactly-zero loss for 3 rows is not noise; alert before the run wastes compute", after=after)


def no_learning(onset: int, logging_steps: int) -> Failure:
    """The optimizer never moves the weights (a PEFT model whose adapters were not handed to the
    optimizer): learning rate normal, loss a noisy plateau at its initial value (sigma 0.01)."""
    def before(sim: Sim) -> None:
        sim.freeze_progress(1)

    def after(sim: Sim) -> None:
        initial = float(np.mean(sim.series["loss"][:5]))  # what the frozen model scores, whatever the batch
        # sigma 0.01 on the logged rows: a row averages logging_steps step losses
        sim.series["loss"] = initial + noise.gauss(sim.rng, sim.n, 0.01 * math.sqrt(logging_steps))

    return Failure("no_learning", onset, max(100, rows(10, logging_steps)),
                   "the loss may sit still during warm-up; 100 steps (or 10 rows) after it, a flat loss at the "
                   "initial value means the optimizer is not training the model", before=before, after=after)


def lr_zero_early(onset: int, logging_steps: int, max_steps: int) -> Failure:
    """C4. The scheduler was built for fewer steps than the run has (max_steps raised on resume,
    the scheduler's num_training_steps kept): linear decay reaches 0 at the onset and stays there,
    long before the end. Learning freezes; gradients keep their level."""
    def before(sim: Sim) -> None:
        short = np.maximum(0.0, 1.0 - np.arange(sim.n) / (onset - 1))
        warm = np.minimum(1.0, np.arange(sim.n) / max(sim.warmup, 1)) if sim.warmup else 1.0
        sim.set_lr(sim.peak_lr * np.minimum(short, warm))

    return Failure("lr_zero_early", onset, rows(10, logging_steps),
                   f"the rate is 0 at step {onset} of {max_steps}: 10 rows of zeros is unmistakable and still "
                   "early enough to fix the schedule", before=before)


def key_absent(key: str, onset: int, logging_steps: int, duration: int | None) -> Failure:
    """A key stops arriving while the others log (a callback that pops it; a class that vanished
    from the data): absent from the rows from the onset, for `duration` steps or for good."""
    def after(sim: Sim) -> None:
        end = sim.n if duration is None else onset - 1 + duration
        where = np.zeros(sim.n, dtype=bool)
        where[onset - 1:end] = True
        sim.hide(key, where)

    gone = "for good" if duration is None else f"for {duration} steps"
    return Failure(f"{key.replace('/', '_')}_absent", onset, rows(20, logging_steps),
                   f"`{key}` stops arriving {gone}; 20 rows without it is more than any gap of a healthy run",
                   after=after)


def key_null(keys: tuple[str, ...], onset: int, logging_steps: int, duration: int) -> Failure:
    """G4. Every reward function returns None (the reward server is down): GRPO logs `reward` and
    the per-function keys as None, advantages are 0, the gradient is exactly 0."""
    def after(sim: Sim) -> None:
        stop = onset - 1 + duration
        for key in keys:
            sim.series[key][onset - 1:stop] = math.nan
        sim.series["grad_norm"][onset - 1:stop] = 0.0
        sim.series["loss"][onset - 1:stop] = 0.0
        sim.series["frac_reward_zero_std"][onset - 1:stop] = 1.0

    return Failure("reward_null", onset, rows(10, logging_steps),
                   "null rewards mean no batch was scored: 10 rows is the least that rules out a blip",
                   after=after)


def overfitting(onset: int, eval_every: int, rise: float) -> Failure:
    """C6. The eval loss turns up from the onset while the training loss keeps falling (too many
    epochs on a small set); eval rows every 50 steps."""
    def knobs_shift(sim: Sim) -> np.ndarray:
        return rise * np.clip((sim.steps - onset) / (sim.n - onset), 0.0, None) ** 1.2

    return Failure("overfitting", onset, 4 * eval_every,
                   "only eval rows show it, one per 50 steps: 4 evals of a rising eval loss are the least that "
                   "make a trend", knobs={"eval_shift_fn": knobs_shift})


# ------------------------------------------------------------------ SFT


def sft_all_labels_masked(onset: int, logging_steps: int) -> Failure:
    """From the onset the batches come from a shard whose prompts exceed max_length (truncation
    keeps the start, so every completion token is cut) and no token carries a label. TRL 1.16's
    SFTTrainer.compute_loss then divides by the clamped count: loss exactly 0.0, and logs entropy
    and mean_token_accuracy as 0.0 (`if num_valid > 0 else 0.0`); num_tokens keeps growing (it counts
    attention-mask tokens, not labels) and the gradient is exactly 0."""
    def after(sim: Sim) -> None:
        for key in ("loss", "grad_norm", "entropy", "mean_token_accuracy"):
            sim.series[key][onset - 1:] = 0.0

    return Failure("all_labels_masked", onset, rows(3, logging_steps),
                   "loss, entropy and token accuracy all exactly 0 with tokens still flowing: nothing is "
                   "being trained, alert within 3 rows", after=after)


# ------------------------------------------------------------------ DPO (D1..D6)


def dpo_no_signal(onset: int, logging_steps: int) -> Failure:
    """D1. sync_ref_model=True with ref_model_sync_steps=1 and ref_model_mixup_alpha=1.0: the
    reference is the policy of the step before, so implicit rewards never build up. Loss stays at
    ln 2, margins at 0 +- 0.005 (beta 0.1), accuracy around 0.5 once warm-up is over."""
    return Failure("no_preference_signal", onset, max(100, rows(10, logging_steps)),
                   "loss near ln 2 is normal during warm-up; 100 steps (or 10 rows) after it ends the margins "
                   "should have left 0", knobs={"center": lambda sim, c: 0.0 * c, "spread_floor": 0.028,
                                                 "accuracy": lambda sim, a: np.full(sim.n, 0.5)},
                   config={"sync_ref_model": True, "ref_model_sync_steps": 1, "ref_model_mixup_alpha": 1.0})


def dpo_margin_collapse(onset: int, logging_steps: int) -> Failure:
    """D1 after a good start: the run was resumed with the policy's checkpoint as the reference
    model too, and reference syncing every step kept them together; margins fall to 0.01 +- 0.005
    and the loss climbs back to ln 2."""
    def center(sim: Sim, c: np.ndarray) -> np.ndarray:
        fall = np.exp(-np.clip(sim.steps - onset, 0, None) / 20.0)
        return np.where(sim.steps < onset, c, 0.01 + (c[onset - 1] - 0.01) * fall)

    def accuracy(sim: Sim, a: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, a, 0.5 + (a - 0.5) * np.exp(-np.clip(sim.steps - onset, 0, None) / 20.0)
                        + 0.14 * (sim.steps >= onset))

    return Failure("margin_collapse", onset, rows(10, logging_steps) + 60,
                   "the margin takes ~60 steps to fall; 10 rows after that it has sat at ~0.01 long enough",
                   knobs={"center": center, "accuracy": accuracy, "spread_floor": 0.028})


def dpo_likelihood_displacement(onset: int, logging_steps: int) -> Failure:
    """D3. From the onset both implicit rewards fall steadily (logps/chosen and logps/rejected drop
    by tens of nats) while the margin keeps growing and accuracy stays high (Razin et al. 2024)."""
    def shift(sim: Sim, s: np.ndarray) -> np.ndarray:
        return s - 0.006 * np.clip(sim.steps - onset, 0, None)

    def center(sim: Sim, c: np.ndarray) -> np.ndarray:
        return c + 0.0015 * np.clip(sim.steps - onset, 0, None)

    return Failure("likelihood_displacement", onset, 200,
                   "a slow drift (rewards/chosen -0.006 per step): after 200 steps logps/chosen has lost ~12 nats "
                   "per sequence beyond batch noise, enough to see and early enough to act",
                   knobs={"chosen_shift": shift, "center": center})


def dpo_over_optimisation(onset: int, logging_steps: int) -> Failure:
    """D4. Learning rate 10x too high: from the onset margins grow without bound (to ~15 by the
    end, #1236 shows ~17), accuracies saturate at 1.0, the loss goes to ~0 and rewards/chosen falls
    far below 0."""
    def center(sim: Sim, c: np.ndarray) -> np.ndarray:
        return c + 0.022 * np.clip(sim.steps - onset, 0, None)

    def accuracy(sim: Sim, a: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, a, np.minimum(0.999, a + 0.0004 * (sim.steps - onset)))

    def shift(sim: Sim, s: np.ndarray) -> np.ndarray:
        return s - 0.012 * np.clip(sim.steps - onset, 0, None)

    return Failure("over_optimisation", onset, 250,
                   "margins double within ~100 steps of the onset; by 250 steps accuracy is pinned at 1 and the "
                   "loss near 0, the point where the policy is overfitting the preferences",
                   knobs={"center": center, "accuracy": accuracy, "chosen_shift": shift, "grad_follows_loss": True})


def dpo_below_chance(onset: int, logging_steps: int) -> Failure:
    """D6. From the onset the data comes from a second source whose chosen/rejected columns are
    swapped; the model, trained on the first, scores ~0.3 on it and the loss rises above ln 2."""
    def center(sim: Sim, c: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, c, -0.35)

    def accuracy(sim: Sim, a: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, a, 0.3)

    return Failure("accuracy_below_chance", onset, max(100, rows(10, logging_steps)),
                   "accuracy ~0.3 is below chance by 4 standard errors of a 32-pair batch on every row; 10 rows "
                   "(100 steps at least) rule out a bad stretch of data",
                   knobs={"center": center, "accuracy": accuracy})


def dpo_completions_masked(onset: int, logging_steps: int) -> Failure:
    """D2. From the onset every completion token is truncated away (a shard of long prompts with
    max_length 1024, truncation keeping the start): logps are exactly 0.0 for chosen and rejected,
    so every reward is 0.0, accuracy 0.0, loss exactly ln 2, and no gradient."""
    def after(sim: Sim) -> None:
        for key in ("logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "rewards/margins",
                    "rewards/accuracies", "grad_norm", "entropy", "mean_token_accuracy"):
            sim.series[key][onset - 1:] = 0.0
        sim.series["loss"][onset - 1:] = LN2

    return Failure("completions_fully_masked", onset, rows(3, logging_steps),
                   "both logps exactly 0 cannot happen with a completion token left: alert within 3 rows",
                   after=after)


# ------------------------------------------------------------------ KTO, reward models, ORPO


def kto_stuck(onset: int, logging_steps: int) -> Failure:
    """K1. learning_rate 5e-10 instead of 5e-7 (a typo): the policy stays at the reference, the loss
    stays at 0.5, kl at exactly 0.0 and the rewards at ~0."""
    def before(sim: Sim) -> None:
        sim.freeze_progress(1, scale=0.001)

    return Failure("loss_stuck", onset, max(100, rows(10, logging_steps)),
                   "KTO's loss is 0.5 at the start by construction; 100 steps (or 10 rows) after warm-up it "
                   "should have moved", before=before, config={"learning_rate": 5e-10})


def reward_not_learning(onset: int, logging_steps: int) -> Failure:
    """R1. With LoRA the score head was not in modules_to_save, so it stays random and untrained:
    accuracy ~0.5, margin ~0, loss ~ln 2 for the whole run."""
    def before(sim: Sim) -> None:
        sim.freeze_progress(1)

    return Failure("not_learning", onset, max(100, rows(10, logging_steps)),
                   "a reward model should beat chance within the first hundred steps after warm-up",
                   before=before, knobs={"margin_max": 0.0})


def reward_below_chance(onset: int, logging_steps: int) -> Failure:
    """D6 for reward models: the second half of the data has chosen/rejected swapped."""
    def center(sim: Sim, c: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, c, -0.5)

    def accuracy(sim: Sim, a: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, a, 0.3)

    return Failure("accuracy_below_chance", onset, max(100, rows(10, logging_steps)),
                   "10 rows (100 steps at least) of accuracy ~0.3 rule out a bad stretch of data",
                   knobs={"center": center, "accuracy": accuracy})


def reference_free_below_chance(onset: int, logging_steps: int) -> Failure:
    """D6/T1 for the reference-free trainers (CPO, TPO): from the onset the data comes from a second
    source whose chosen/rejected columns are swapped. The policy's learned preference now points the
    wrong way on every batch: the margins (beta * summed logps, no reference) turn negative, the
    accuracy mirrors what it was, and the preference part of the loss rises."""
    def center(sim: Sim, c: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, c, -c)

    def accuracy(sim: Sim, a: np.ndarray) -> np.ndarray:
        return np.where(sim.steps < onset, a, 1.0 - a)

    return Failure("accuracy_below_chance", onset, max(100, rows(10, logging_steps)),
                   "10 rows (100 steps at least) of accuracy ~0.25 rule out a bad stretch of data",
                   knobs={"center": center, "accuracy": accuracy})


def orpo_log_odds_collapse(onset: int, logging_steps: int) -> Failure:
    """O1/O2. After a resume with 10x the learning rate the SFT part degrades: the chosen per-token
    log-probability falls below the rejected one, log_odds_chosen turns negative, log_odds_ratio
    falls from ~-0.3 below -ln 2, accuracies drop to ~0.3 and nll_loss rises."""
    def chosen(sim: Sim, c: np.ndarray) -> np.ndarray:
        return c - 0.9 * ramp(sim, onset, 200)

    return Failure("log_odds_collapse", onset, 150,
                   "log_odds_chosen crosses 0 about 100 steps after the onset; 150 steps leaves rules a window "
                   "to confirm it", knobs={"chosen_logp": chosen}, config={"learning_rate": 1e-5})


def kto_class_vanished(onset: int, logging_steps: int, side: str = "rejected") -> Failure:
    """K3. From the onset a filtering bug drops every undesirable example (side "rejected"):
    rewards/rejected, logps/rejected, logits/rejected and rewards/margins stop arriving for good; or
    every desirable one (side "chosen", a label mapping that turns every label False): the chosen
    keys and the margin stop arriving."""
    def after(sim: Sim) -> None:
        where = sim.steps >= onset
        for key in (f"rewards/{side}", f"logps/{side}", f"logits/{side}", "rewards/margins"):
            sim.hide(key, where)

    which = "undesirable" if side == "rejected" else "desirable"
    return Failure(f"{which}_examples_vanished", onset, max(150, rows(20, logging_steps)),
                   "a class can be missing from a few batches (small batches, unbalanced data); 150 steps (20 rows "
                   "at least) without it means it is gone", after=after)


# ------------------------------------------------------------------ online RL (G1..G12, A1, OD2)


def rl_no_signal(onset: int, logging_steps: int, how: str) -> Failure:
    """G1. Every group's rewards are equal from the onset, so advantages and (beta 0) gradients are 0:
    `too_hard` (a data shard far above the model: every completion scores 0), `too_easy` (every
    completion solves the task), `identical` (sampling turned greedy on resume: a group's completions
    are copies)."""
    knobs: dict = {}
    if how == "too_hard":
        knobs["skill_hook"] = lambda sim, s: s - 16.0 * ramp(sim, onset, 30)
    elif how == "too_easy":
        knobs["skill_hook"] = lambda sim, s: s + 16.0 * ramp(sim, onset, 30)
    else:
        knobs["identical"] = lambda sim, same: np.where(sim.steps >= onset, 1.0, same)
    return Failure("no_learning_signal", onset, rows(10, logging_steps) + 30,
                   "frac_reward_zero_std reaches 1 within ~30 steps; 10 rows at 1 with a zero gradient is no "
                   "longer a run of easy prompts", knobs=knobs)


def completions_clipped(onset: int, logging_steps: int, max_len: int) -> Failure:
    """G2. From the onset completions grow past max_completion_length (a chat template change drops
    the EOS the model learned to stop on): clipped_ratio climbs to ~0.9, mean_length sits at the
    limit, truncated answers score nothing."""
    def length(sim: Sim, values: np.ndarray) -> np.ndarray:
        return values * (1.0 - ramp(sim, onset, 60)) + 1.8 * max_len * ramp(sim, onset, 60)

    return Failure("completions_clipped", onset, rows(10, logging_steps) + 60,
                   "the clipped fraction rises over ~60 steps; 10 rows above 0.5 after that is the signature",
                   knobs={"length_hook": length, "skill_hook": lambda sim, s: s - 2.0 * ramp(sim, onset, 60)})


def dead_reward_function(onset: int, logging_steps: int, name: str) -> Failure:
    """G3. From the onset one reward function returns 0 for everything (its answer parser broke on
    a template change): rewards/<f>/std exactly 0 while the others vary."""
    return Failure("dead_reward_function", onset, max(30, rows(10, logging_steps)),
                   "a dead function's std is exactly 0 on every row; 10 rows (30 steps at least: a hard task can "
                   "leave a function at 0 on every sample for ~15 steps, healthy/grpo/sparse_reward) separates it "
                   "from a stretch of all-wrong batches",
                   knobs={"dead_func": (name, onset)})


def entropy_collapse(onset: int, logging_steps: int) -> Failure:
    """G5. From the onset the policy turns deterministic: entropy decays to 0.01 within ~150 steps."""
    def entropy(sim: Sim, e: np.ndarray) -> np.ndarray:
        fall = np.exp(-np.clip(sim.steps - onset, 0, None) / 35.0)
        return np.where(sim.steps < onset, e, 0.01 + (e - 0.01) * fall)

    def identical(sim: Sim, same: np.ndarray) -> np.ndarray:  # a near-deterministic policy repeats itself
        return same + 0.85 * ramp(sim, onset + 40, 120)

    return Failure("entropy_collapse", onset, 200,
                   "entropy is below 0.05 about 150 steps after the onset; 200 steps gives 5 rows past it",
                   knobs={"entropy": entropy, "identical": identical})


def entropy_explosion(onset: int, logging_steps: int, max_len: int) -> Failure:
    """G6. Garbled output late in training: entropy climbs to ~2.5 within ~100 steps, the reward
    falls and completions run to the length limit."""
    def entropy(sim: Sim, e: np.ndarray) -> np.ndarray:
        return e + 2.1 * ramp(sim, onset, 100)

    def length(sim: Sim, values: np.ndarray) -> np.ndarray:
        return values + 0.9 * max_len * ramp(sim, onset, 100)

    return Failure("entropy_explosion", onset, 120,
                   "entropy doubles within ~50 steps; 120 steps leaves room for rules that also ask for the "
                   "reward to fall",
                   knobs={"entropy": entropy, "length_hook": length,
                          "skill_hook": lambda sim, s: s - 3.0 * ramp(sim, onset, 100)})


def kl_blowup(onset: int, logging_steps: int, to: float = 12.0) -> Failure:
    """G7. From the onset the policy runs away from the reference: kl grows exponentially from
    its ~1e-3 level to `to` within ~150 steps, the reward collapses (open-r1#257)."""
    def kl(sim: Sim, values: np.ndarray) -> np.ndarray:
        t = np.clip(sim.steps - onset, 0, None)
        grown = np.exp(np.minimum(t / 150.0, 1.0) * math.log(to / 1e-3)) * 1e-3
        return np.where(sim.steps < onset, values, np.maximum(values, grown * noise.lognormal(sim.rng, sim.n, 0.2)))

    def grad(sim: Sim, g: np.ndarray) -> np.ndarray:  # the KL term's gradient grows with it
        return g * (1.0 + 4.0 * ramp(sim, onset + 60, 90))

    return Failure("kl_blowup", onset, 100,
                   "kl is 10x its level ~40 steps after the onset and ~100x at 80; 100 steps is before the "
                   "reward is gone", knobs={"kl": kl, "grad": grad,
                                             "skill_hook": lambda sim, s: s - 4.0 * ramp(sim, onset + 60, 120)})


def kl_creep(onset: int, logging_steps: int) -> Failure:
    """G7, slow: kl climbs from ~1e-3 to 0.1 within 100 steps of the onset, then creeps from 0.1 to
    0.5 over the next 500 (beta too small for a reward the policy can exploit)."""
    def kl(sim: Sim, values: np.ndarray) -> np.ndarray:
        t = sim.steps - onset
        level = np.where(t < 100, 1e-3 + 0.099 * np.clip(t, 0, None) / 100, 0.1 + 0.4 * np.clip(t - 100, 0, 500) / 500)
        return np.where(sim.steps < onset, values, level * noise.lognormal(sim.rng, sim.n, 0.15))

    return Failure("kl_creep", onset, 300,
                   "kl is 100x its healthy level 100 steps in and still rising; by 300 steps (kl ~0.26) a "
                   "practitioner should have been told", knobs={"kl": kl})


def clip_saturation(onset: int, logging_steps: int) -> Failure:
    """G9. Resumed at the onset with a 10x learning rate while reusing each generation for several
    updates (num_iterations > 1): the policy moves far within one generation batch, so a large share
    of tokens leaves the trust region [1 - epsilon, 1 + epsilon_high] and is clipped (region_mean
    ~0.004 -> ~0.3 within ~60 steps); the KL to the old policy and the gradient grow with it."""
    def clip(sim: Sim, c: np.ndarray) -> np.ndarray:
        return c + 0.3 * ramp(sim, onset, 60) * noise.lognormal(sim.rng, sim.n, 0.2)

    def grad(sim: Sim, g: np.ndarray) -> np.ndarray:
        return g * (1.0 + 1.5 * ramp(sim, onset, 60))

    return Failure("clip_saturation", onset, rows(5, logging_steps) + 60,
                   "the clipped share rises over ~60 steps; 5 rows above 0.1 after that is no transient",
                   knobs={"clip": clip, "grad": grad}, config={"learning_rate": 1e-5})


def reward_std_spike(onset: int, logging_steps: int) -> Failure:
    """A reward function returns huge values on a few completions (an unbounded length bonus hit by
    degenerate outputs): reward_std jumps 6x for ~5 steps, reward with it."""
    def after(sim: Sim) -> None:
        span = slice(onset - 1, onset + 4)
        sim.series["reward_std"][span] *= 6.0
        sim.series["reward"][span] += 1.5

    return Failure("reward_std_spike", onset, rows(2, logging_steps),
                   "the spike is on the rows of its steps; 2 rows for rules that compare with a recent mean",
                   after=after)


def vllm_weights_not_synced(onset: int, logging_steps: int) -> Failure:
    """G8. From the onset vLLM stops receiving the trainer's weights (sleep mode, #5312): the sampling
    log-prob difference grows from ~0.012 to ~0.3 and the sequence-level importance ratio mean falls
    to ~0.3 (most sequences masked by sequence_mask)."""
    def logp(sim: Sim, d: np.ndarray) -> np.ndarray:
        return d + 0.29 * ramp(sim, onset, 80) * noise.lognormal(sim.rng, sim.n, 0.1)

    def ratio(sim: Sim, r: np.ndarray) -> np.ndarray:  # masked sequences weigh 0: the mean falls to ~0.3
        shift = ramp(sim, onset, 80)
        return (1.0 - shift) * r + shift * (0.3 + noise.gauss(sim.rng, sim.n, 0.03))

    return Failure("vllm_weights_not_synced", onset, rows(5, logging_steps) + 40,
                   "the ratio is half-way down ~40 steps after the onset; 5 rows more and every update is "
                   "off-policy", knobs={"logp_diff": logp, "is_ratio": ratio})


def vllm_logp_drift(onset: int, logging_steps: int) -> Failure:
    """G8, milder: an fp8 KV cache turned on in vLLM at a resume: the sampling log-prob difference
    rises from ~0.012 to ~0.09 and stays, the importance ratio mean settles at ~0.83."""
    def logp(sim: Sim, d: np.ndarray) -> np.ndarray:
        return d + 0.078 * ramp(sim, onset, 20)

    return Failure("vllm_logp_difference_high", onset, rows(10, logging_steps),
                   "a 7x higher mismatch is plain at once; 10 rows confirm it is not a transient",
                   knobs={"logp_diff": logp}, config={"vllm_kv_cache_dtype": "fp8"})


def async_staleness(onset: int, logging_steps: int) -> Failure:
    """A1. Generation outruns training from the onset (a slower optimizer step after a sharding
    change): samples wait 5x longer in the queue, staleness climbs to max_staleness (4), stale
    samples get dropped (`sample/dropped_stale_total` appears), the ratio drifts off 1 and kl and
    clipping grow (#6945: ratio mixes staleness and vLLM mismatch)."""
    def staleness(sim: Sim, s: np.ndarray) -> np.ndarray:
        return np.clip(s + 2.6 * ramp(sim, onset, 40), 0.0, 4.0)

    def drift(sim: Sim, d: np.ndarray) -> np.ndarray:
        return d + 0.25 * ramp(sim, onset, 80) + 0.06 * ramp(sim, onset, 80) * sim.rng.normal(0, 1, sim.n)

    def queue_time(sim: Sim, q: np.ndarray) -> np.ndarray:
        return q * (1.0 + 4.0 * ramp(sim, onset, 40))

    def after(sim: Sim) -> None:
        dropped = np.where(sim.steps >= onset + 20, np.floor(sim.rng.exponential(3.0, sim.n)), 0.0)
        sim.put("sample/dropped_stale_total", dropped, "sum")
        sim.hide("sample/dropped_stale_total", dropped == 0)  # appended only when a sample is dropped

    return Failure("off_policy_drift", onset, rows(20, logging_steps) + 40,
                   "staleness reaches its cap ~40 steps in; 20 rows after that the ratio has left [0.8, 1.25]",
                   knobs={"staleness": staleness, "ratio_drift": drift, "queue_time": queue_time}, after=after)


def online_dpo_missing_eos(onset: int, logging_steps: int) -> Failure:
    """OD2. From the onset generations stop ending (a tokenizer swap on resume lost the EOS id):
    val/contain_eos_token falls from ~0.95 to ~0.1 within 100 steps; the objective/scores drop."""
    def eos(sim: Sim, e: np.ndarray) -> np.ndarray:
        return np.clip(e - 0.85 * ramp(sim, onset, 100), 0.0, 1.0)

    def after(sim: Sim) -> None:  # truncated completions score lower and their summed entropy grows
        shift = ramp(sim, onset, 100)
        sim.series["objective/scores"] -= 0.8 * shift
        sim.series["objective/rlhf_reward"] -= 0.8 * shift
        sim.series["objective/entropy"] += 14.0 * shift

    return Failure("missing_eos", onset, 60,
                   "the EOS rate is below 0.5 ~50 steps after the onset; by 60 steps most completions are "
                   "truncated", knobs={"eos": eos}, after=after)


def reward_hacking(onset: int, logging_steps: int, max_len: int) -> Failure:
    """G10. The policy finds that longer completions score higher on a length-sensitive reward:
    from the onset mean_length grows ~4x towards the limit while the reward keeps rising and the
    accuracy reward stalls."""
    def length(sim: Sim, values: np.ndarray) -> np.ndarray:
        return values + (0.95 * max_len - values) * ramp(sim, onset, 400)

    def after(sim: Sim) -> None:
        length_reward = sim.series["rewards/reward_len/mean"]
        gain = (0.97 - length_reward) * ramp(sim, onset, 400)  # the length reward saturates near 1
        length_reward += gain
        sim.series["reward"] += gain

    return Failure("reward_hacking", onset, 200,
                   "length has doubled ~150 steps after the onset with the reward still rising; 200 steps is "
                   "before completions hit the limit", knobs={"length_hook": length}, after=after)


def a2po_reward_collapse(onset: int, logging_steps: int) -> Failure:
    """A*-PO resumed at the onset with a 10x learning rate: the regression overshoots, the implicit
    reward runs far from the advantage it should track, and the policy degrades below the
    reference it started from (reward ~0.55 -> ~0.11 within ~100 steps, v_star unchanged)."""
    def reward(sim: Sim, r: np.ndarray) -> np.ndarray:
        return r * (1.0 - 0.8 * ramp(sim, onset, 100))

    def implicit(sim: Sim, i: np.ndarray) -> np.ndarray:
        return i + 1.2 * ramp(sim, onset, 100)

    return Failure("reward_collapse", onset, 120,
                   "the reward is half its starting level ~70 steps after the onset; 120 steps leaves 5 rows to "
                   "confirm it is not a bad batch", knobs={"reward": reward, "implicit": implicit},
                   config={"learning_rate": 1e-5})


def sdpo_no_success(onset: int, logging_steps: int) -> Failure:
    """SDPO's own warnings (trl_failure_modes.md section 4): from the onset no rollout reaches
    success_reward_threshold, so self-distillation is inactive and every group is flat."""
    return Failure("no_successful_rollouts", onset, rows(10, logging_steps) + 30,
                   "success fractions reach 0 within ~30 steps; 10 rows at 0 means the teacher signal is gone",
                   knobs={"skill_hook": lambda sim, s: s - 9.0 * ramp(sim, onset, 30)})


# ------------------------------------------------------------------ distillation family (GOLD, on-policy students)


def gold_on_policy_blowup(onset: int, logging_steps: int) -> Failure:
    """GOLD resumed at the onset with a generation temperature of 2.0 instead of 0.9 (a config typo):
    the student's own samples turn to noise the teacher scores badly, so the on-policy branch's loss
    climbs to 4x within ~30 steps while the off-policy branch (dataset completions) is unchanged;
    `loss`, which mixes the two branches (lmbda 0.5), rises about half as much."""
    def after(sim: Sim) -> None:
        on_policy = ~sim.absent["on_policy_loss"]
        factor = 1.0 + 3.0 * ramp(sim, onset, 30)
        sim.series["on_policy_loss"] = sim.series["on_policy_loss"] * factor
        sim.series["loss"] = np.where(on_policy, sim.series["on_policy_loss"], sim.series["loss"])

    return Failure("on_policy_loss_blowup", onset, 30 + rows(2, logging_steps),
                   "the on-policy loss has quadrupled ~30 steps after the onset; 2 rows more confirm it is not "
                   "one bad batch", after=after, config={"temperature": 2.0})


def student_entropy_collapse(onset: int, logging_steps: int) -> Failure:
    """An on-policy student turns near-deterministic from the onset (reverse KL, DistillationConfig's
    default beta 1.0, is mode-seeking; a learning rate raised 10x on resume speeds it up): its per-token
    entropy decays from ~0.6 to ~0.03 nats within ~150 steps."""
    def after(sim: Sim) -> None:
        fall = np.exp(-np.clip(sim.steps - onset, 0, None) / 35.0)
        entropy = sim.series["entropy"]
        sim.series["entropy"] = np.where(sim.steps < onset, entropy, 0.03 + (entropy - 0.03) * fall)

    return Failure("entropy_collapse", onset, 150,
                   "entropy is below 0.1 nats ~80 steps after the onset; 150 steps leaves rules room to confirm "
                   "it over a few rows", after=after, config={"learning_rate": 1e-5})


def student_entropy_explosion(onset: int, logging_steps: int, max_len: int) -> Failure:
    """An on-policy student starts producing garbled text at the onset (a bad resume: optimizer state
    from another run): its entropy climbs from ~0.6 to ~2.4 nats within ~100 steps and completions
    run towards max_completion_length."""
    def entropy(sim: Sim) -> None:
        sim.series["entropy"] = sim.series["entropy"] + 1.8 * ramp(sim, onset, 100)

    def length(sim: Sim, values: np.ndarray) -> np.ndarray:
        return values + 0.6 * max_len * ramp(sim, onset, 100)

    return Failure("entropy_explosion", onset, 120,
                   "entropy has doubled ~50 steps after the onset; 120 steps leaves room to confirm it over a "
                   "few rows", knobs={"length_hook": length}, after=entropy)


# ------------------------------------------------------------------ several processes (ruledsl's own keys)

RANKS_CONFIG = {"ruledsl.world_size": 8, "ruledsl.straggler_factor": 1.5, "ruledsl.memory_imbalance_factor": 1.5}


def _rank_keys(sim: Sim, every_rows: int, compute: np.ndarray, memory: np.ndarray) -> None:
    """The keys DiagnosticsCallback adds every `every_rows` logged rows (ruledsl/integrations/ranks.py)
    from per-step, per-rank values (`compute` and `memory`: steps x ranks): the compute time averaged
    over the steps since the previous gather, the peak memory so far; absent from the other rows."""
    gathered = np.zeros(sim.n, dtype=bool)
    gathered[sim.train_steps()[every_rows - 1::every_rows] - 1] = True
    times = np.zeros_like(compute)
    start = 0
    for edge in np.flatnonzero(gathered):
        times[edge] = compute[start:edge + 1].mean(axis=0)
        start = edge + 1
    peaks = np.maximum.accumulate(memory, axis=0)
    ordered = np.sort(times, axis=1)
    slowest = np.argmax(times, axis=1).astype(float)
    for key, values in (("ruledsl/step_time/max", ordered[:, -1]),
                        ("ruledsl/step_time/median", ordered[:, (times.shape[1] - 1) // 2]),  # the lower median
                        ("ruledsl/step_time/min", ordered[:, 0]), ("ruledsl/slowest_rank", slowest),
                        ("ruledsl/memory/max", peaks.max(axis=1)), ("ruledsl/memory/min", peaks.min(axis=1))):
        sim.put(key, np.round(values, 4), reduce="last")
        sim.hide(key, ~gathered)


def _ranks(sim: Sim, ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Healthy per-step, per-rank compute seconds (~0.40 s; batches of uneven length spread it by
    up to ~30% on one step) and memory in MiB (~18.4 GiB, a little apart per rank)."""
    compute = 0.40 * sim.rng.lognormal(0.0, 0.08, (sim.n, ranks))
    memory = 18_400.0 + sim.rng.normal(0.0, 60.0, (1, ranks)) + sim.rng.normal(0.0, 15.0, (sim.n, ranks))
    return compute, memory


def rank_straggler(onset: int, logging_steps: int, slow_rank: int, every_rows: int = 10) -> Failure:
    """One of 8 data-parallel GPUs is throttled from the onset (a failing fan, another job on the
    node): its forward and backward passes take 1.8x as long within ~50 steps, and every other rank
    waits for it at each gradient all-reduce, so their wall time per step is its time."""
    def after(sim: Sim) -> None:
        compute, memory = _ranks(sim, 8)
        compute[:, slow_rank] *= 1.0 + 0.8 * ramp(sim, onset, 50)
        _rank_keys(sim, every_rows, compute, memory)

    return Failure("rank_straggler", onset, rows(2 * every_rows, logging_steps),
                   "the ranks' times are gathered every 10 logged rows and averaged since the previous gather: "
                   "two gathers after the onset the slowdown is in a whole interval", after=after,
                   config=RANKS_CONFIG)


def rank_memory_imbalance(onset: int, logging_steps: int, every_rows: int = 10) -> Failure:
    """From the onset, rank 0 of 8 keeps evaluation generations gathered from every rank on its GPU
    (a custom callback that gathers to the main process and never frees them): its peak memory grows
    by ~13 GiB within 100 steps while the other ranks stay at ~18.4 GiB."""
    def after(sim: Sim) -> None:
        compute, memory = _ranks(sim, 8)
        memory[:, 0] += 13_000.0 * ramp(sim, onset, 100)
        _rank_keys(sim, every_rows, compute, memory)

    return Failure("rank_memory_imbalance", onset, rows(2 * every_rows, logging_steps),
                   "peak memory is gathered every 10 logged rows; the imbalance passes 1.5x ~50 steps after the "
                   "onset, and two gathers later it is in the rows", after=after, config=RANKS_CONFIG)
