"""The metric catalog against TRL 1.16 (schemas/metric_catalog.yaml, from tools/catalog_source/trl_1.16.yaml).

The catalog is what the committed source generates; it has every trainer TRL 1.16 ships and keeps
the ones TRL removed, with the releases that had them; real TRL 1.16 logs carry no key it does not
know and every key it says is always there; the trainer guess names the trainer of each real log
as far as its keys tell; no alias joins quantities that cannot share a threshold.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from log_writers import REAL_LOGS
from ruledsl.lint import lint
from ruledsl.model import trainers
from ruledsl.model.catalog import EVAL_PREFIX, Catalog, builtin_catalog

ROOT = Path(__file__).resolve().parents[1]
CATALOG_FILE = ROOT / "schemas" / "metric_catalog.yaml"

STABLE_1_16 = {"sft", "dpo", "grpo", "rloo", "kto", "reward", "distillation"}
EXPERIMENTAL_1_16 = {"a2po", "async_distillation", "async_grpo", "cpo", "gkd", "gmpo", "gold", "iw_opd",
                     "online_dpo", "orpo", "sdft", "sdpo", "server_distillation", "tpo"}

# trainer id -> (last release checked that has it, first release checked without it): the TRL wheels
# compared for the 1.16 inventory (tools/catalog_source/trl_1.16.yaml, `removed`).
REMOVED = {
    "ppo": ("1.12.0", "1.13.0"),
    "bco": ("1.13.0", "1.14.0"),
    "nash_md": ("1.13.0", "1.14.0"),
    "xpo": ("1.13.0", "1.14.0"),
    "prm": ("1.13.0", "1.14.0"),
    "grpo_with_replay_buffer": ("1.13.0", "1.14.0"),
    "minillm": ("1.14.2", "1.15.0"),
    "ssd": ("1.15.0", "1.16.0"),
    "dppo": ("1.7.1", "1.9.2"),
    "gfpo": ("1.7.1", "1.9.2"),
    "papo": ("1.7.1", "1.9.2"),
}

# The real captures (tests/data/real_trl_logs/README.md): file -> the trainer that wrote it.
REAL = {"sft": "sft", "sft_chat": "sft", "dpo": "dpo", "grpo": "grpo", "grpo_kl": "grpo", "grpo_chat": "grpo",
        "kto": "kto", "reward": "reward", "rloo": "rloo", "orpo": "orpo", "cpo": "cpo"}
# Under default settings GRPO, RLOO and GMPO log the very same keys: the guess stays open among them.
GRPO_TWINS = {"grpo", "rloo", "gmpo"}


def build_module():
    spec = importlib.util.spec_from_file_location("build_metric_catalog", ROOT / "tools" / "build_metric_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows_of(capture: str) -> list[dict]:
    return [json.loads(line) for line in (REAL_LOGS / f"{capture}.jsonl").read_text().splitlines()]


def is_train_row(row: dict) -> bool:
    """A training log row: not the evaluation row, not the end-of-training summary."""
    return "loss" in row and not any(k.startswith(EVAL_PREFIX) for k in row) and "train_runtime" not in row


@functools.cache
def catalog_data() -> dict:
    """The catalog file as written (its aliases without the renames Catalog.load folds in)."""
    return yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# ---------------------------------------------------------------- the catalog is generated


def test_the_catalog_is_what_the_committed_source_generates():
    builder = build_module()
    assert CATALOG_FILE.read_text(encoding="utf-8") == builder.render(builder.load_source()), (
        "schemas/metric_catalog.yaml is stale: run `python tools/build_metric_catalog.py`")


def test_every_key_family_of_the_source_names_its_file_and_line():
    source = build_module().load_source()
    for trainer_id, entry in source["trainers"].items():
        for family in entry["families"]:
            assert ".py:" in family["source"] and family["keys"], (trainer_id, family)


def test_a_renamed_key_is_no_current_key_and_resolves_both_ways():
    catalog = builtin_catalog()
    for trainer_id, renames in catalog_data()["renamed"].items():
        for old, new in renames.items():
            assert old not in catalog.trainer(trainer_id).keys and new in catalog.trainer(trainer_id).keys
            assert catalog.candidates(old, [trainer_id]) == (old, new)
            assert catalog.candidates(new, [trainer_id])[:2] == (new, old)
    assert catalog.candidates("weight_sync_time_s", ["async_grpo"]) == ("weight_sync_time_s", "perf/weight_sync_s")
    assert catalog.candidates("completions/truncated_fraction", ["distillation"]) == (
        "completions/truncated_fraction", "completions/clipped_ratio")


# ---------------------------------------------------------------- trainers of 1.16, and the removed ones


def test_every_trainer_of_trl_1_16_is_there_and_current():
    catalog = builtin_catalog()
    current = {t for t in catalog.trainer_ids if catalog.removed_in(t) is None}
    assert current == STABLE_1_16 | EXPERIMENTAL_1_16
    assert {t for t in current if catalog.trainer(t).stable} == STABLE_1_16
    for trainer_id in current:
        info = catalog.trainer(trainer_id)
        assert info.keys and info.config_class and info.removed is None
        assert set(info.always) <= set(info.keys)
    own = {t: set(catalog.trainer(t).keys) - set(catalog.generic_keys) for t in current}
    assert {t for t, keys in own.items() if not keys} == {"gkd"}  # GKD logs only the transformers keys


@pytest.mark.parametrize("trainer_id, keys, absent", [
    ("distillation", {"completions/clipped_ratio", "completions/mean_terminated_length", "entropy", "step_time"},
     {"completions/truncated_fraction"}),
    ("server_distillation", {"completions/clipped_ratio", "step_time"}, {"entropy", "completions/truncated_fraction"}),
    ("async_grpo", {"perf/rollout_wait_s", "sample/staleness_mean", "batch/pad_frac", "rollout/score_s", "ratio"},
     {"queue_wait_time_s", "scoring_time_ms", "buffer_qsize", "weight_sync_time_s", "training_tok/s"}),
    ("async_distillation", {"jsd", "teacher_entropy", "perf/fwd_s"}, set()),
    ("dpo", {"entropy", "mean_token_accuracy"}, {"nll_loss"}),
    ("grpo", {"step_time", "entropy", "cispo_clip_ratio"}, {"clip_ratio", "completion_length",
                                                            "rewards/{reward_func_name}"}),
])
def test_the_keys_1_16_writes_and_not_the_stale_ones(trainer_id, keys, absent):
    info = builtin_catalog().trainer(trainer_id)
    assert keys <= set(info.keys) and not absent & set(info.keys)


@pytest.mark.parametrize("trainer_id, always, sometimes", [
    ("grpo", {"entropy", "step_time", "reward"}, {"kl", "clip_ratio/region_mean"}),  # kl only with beta != 0
    ("rloo", {"entropy", "clip_ratio/region_mean"}, {"kl"}),  # on by default, off with beta=0
    ("kto", {"kl", "entropy", "num_tokens"}, {"logps/chosen", "logits/rejected", "rewards/margins"}),  # batch-dependent
    ("online_dpo", {"objective/kl", "beta"}, {"objective/scores", "objective/rlhf_reward"}),
    ("sdpo", {"self_distillation/reward_mean"}, {"self_distillation/policy_loss"}),
    ("async_grpo", {"ratio", "kl", "perf/fwd_s"}, {"rollout/inflight", "completions/mean_length"}),  # worker-pushed
    ("sft", {"entropy", "mean_token_accuracy", "num_tokens"}, {"aux_loss"}),
])
def test_always_means_whatever_the_settings(trainer_id, always, sometimes):
    info = builtin_catalog().trainer(trainer_id)
    assert always <= set(info.always) and not sometimes & set(info.always)
    assert sometimes <= set(info.keys)


@pytest.mark.parametrize("trainer_id", sorted(REMOVED))
def test_removed_trainers_keep_their_ids_keys_and_versions(trainer_id):
    catalog = builtin_catalog()
    last, first_without = REMOVED[trainer_id]
    info = catalog.trainer(trainer_id)
    assert catalog.removed_in(trainer_id) == first_without
    assert info.removed is not None and info.removed.last_version == last
    assert info.removed.first_seen is not None and version(info.removed.first_seen) <= version(last)
    assert version(last) < version(first_without) <= version("1.16.0")
    assert info.keys and not info.stable
    assert catalog.unknown_trainer(trainer_id) is None  # still an id a rule may name (docs/language.md §8)


def test_only_the_removed_trainers_are_marked():
    catalog = builtin_catalog()
    assert {t for t in catalog.trainer_ids if catalog.removed_in(t)} == set(REMOVED)
    assert catalog.removed_in("grpo") is None and catalog.removed_in("no_such_trainer") is None


def test_a_catalog_file_without_removed_trainers_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainers:\n  mine: {config_class: MyConfig, keys: [loss, x], always: [x]}\n")
    catalog = Catalog.load(path)
    assert catalog.removed_in("mine") is None and catalog.trainer("mine").always == ("x",)


@pytest.mark.trl
@pytest.mark.filterwarnings("ignore:You are importing from 'trl.experimental'")
def test_the_installed_trl_1_16_ships_exactly_the_current_trainers():
    """Each current id's config class is where TRL 1.16 exports it, and maps back to the id; removed ones are gone."""
    trl = pytest.importorskip("trl")
    if not trl.__version__.startswith("1.16."):
        pytest.skip(f"the catalog describes TRL 1.16, not {trl.__version__}")
    catalog = builtin_catalog()
    for trainer_id in sorted(STABLE_1_16 | EXPERIMENTAL_1_16):
        module = trl if trainer_id in STABLE_1_16 else importlib.import_module(f"trl.experimental.{trainer_id}")
        config_class = getattr(module, catalog.trainer(trainer_id).config_class)
        assert trainers.trainer_id(config_class) == trainer_id
    for trainer_id in sorted(REMOVED):
        assert importlib.util.find_spec(f"trl.experimental.{trainer_id}") is None, trainer_id


# ---------------------------------------------------------------- real TRL 1.16 logs


@pytest.mark.parametrize("capture", sorted(REAL))
def test_every_key_of_a_real_log_is_known_for_its_trainer(capture):
    catalog = builtin_catalog()
    info = catalog.trainer(REAL[capture])
    keys = {k for row in rows_of(capture) for k in row} - {"step"}
    unknown = {k for k in keys if k not in catalog.generic_keys
               and not info.logs(k.removeprefix(EVAL_PREFIX))}
    assert not unknown


@pytest.mark.parametrize("capture", sorted(REAL))
def test_every_always_key_is_in_every_training_row(capture):
    always = set(builtin_catalog().trainer(REAL[capture]).always)
    train_rows = [row for row in rows_of(capture) if is_train_row(row)]
    assert len(train_rows) == 5 and always
    for row in train_rows:
        assert always <= set(row), (row["step"], always - set(row))


@pytest.mark.parametrize("capture", sorted(REAL))
def test_the_guess_names_the_trainer_of_each_real_log_as_far_as_its_keys_tell(capture):
    catalog = builtin_catalog()
    keys = {k for row in rows_of(capture) for k in row}
    trainer, why, fitting = trainers.guess(keys)
    if REAL[capture] in GRPO_TWINS:
        assert trainer is None and set(fitting) == GRPO_TWINS, why
    else:
        assert trainer == REAL[capture], why
    assert not [t for t in fitting if catalog.removed_in(t)]


def test_trainers_trl_removed_lose_ties_to_current_ones():
    """A 1.16 GRPO log fits GRPOWithReplayBuffer's and MiniLLM's last keys too: the current trainers win."""
    catalog = builtin_catalog()
    keys = {k for row in rows_of("grpo") for k in row}
    seen = {k for k in keys - {"loss"} if not k.startswith(EVAL_PREFIX)
            and any(catalog.trainer(t).logs(k) for t in catalog.trainer_ids)}
    for removed in ("grpo_with_replay_buffer", "minillm"):
        info = catalog.trainer(removed)
        assert all(info.logs(k) for k in seen) and set(info.always) <= keys  # it would fit...
    assert set(trainers.guess(keys)[2]) == GRPO_TWINS  # ...but is not offered


def default_keys(trainer_id: str) -> set[str]:
    """The keys of a run under default settings: the ones always logged, with the transformers keys."""
    info = builtin_catalog().trainer(trainer_id)
    return set(info.always) | ({"loss", "grad_norm", "learning_rate", "epoch"} & set(info.keys))


# Removed trainers whose last keys tell them apart; the GRPO subclasses' old keys fit each other.
DISTINCT_REMOVED = {"ppo", "bco", "nash_md", "xpo", "ssd", "dppo"}


@pytest.mark.parametrize("trainer_id", sorted(STABLE_1_16 | EXPERIMENTAL_1_16 | DISTINCT_REMOVED))
def test_the_guess_on_default_keys(trainer_id):
    trainer, why, fitting = trainers.guess(default_keys(trainer_id))
    if trainer_id in {"gkd", "gold", "iw_opd"}:  # nothing they log unconditionally tells them apart
        assert trainer is None and trainer_id in fitting
    elif trainer_id in GRPO_TWINS - {"grpo"}:  # GRPO's default keys are a subset of theirs
        assert trainer is None and {"grpo", trainer_id} <= set(fitting)
    elif trainer_id == "tpo":  # exactly DPO's keys: DPO, the stable one, is taken (run.json can say tpo)
        assert trainer == "dpo"
    else:
        assert trainer == trainer_id, why
    if builtin_catalog().removed_in(trainer_id):
        assert why.endswith(f"(a trainer TRL removed in {builtin_catalog().removed_in(trainer_id)})")


def test_distillation_and_server_distillation_are_told_apart_by_entropy():
    assert trainers.guess(default_keys("distillation"))[0] == "distillation"
    assert trainers.guess(default_keys("server_distillation"))[0] == "server_distillation"
    assert trainers.guess(default_keys("server_distillation") | {"entropy"})[0] == "distillation"


def test_a_tpo_run_is_dpo_unless_its_run_json_says_tpo(tmp_path):
    keys = default_keys("tpo")
    assert keys == default_keys("dpo")
    assert trainers.choose(None, None, keys, []).trainer == "dpo"
    metadata = tmp_path / "run.json"
    metadata.write_text(json.dumps({"trainer": "tpo"}))
    choice = trainers.choose(None, metadata, keys, [])
    assert (choice.trainer, choice.origin) == ("tpo", "metadata")


# ---------------------------------------------------------------- aliases never join different quantities

# Quantities that share a name or a role but not a threshold, grouped by meaning: (trainer, key).
# An alias may reach keys of one meaning per group only. (The alias's own name is its first
# candidate for every trainer, docs/language.md §2: `kl` on an RLOO run is RLOO's `kl`; that is
# for a rule's `trainers` to settle, and not checked here.)
GRPO_LIKE = ("grpo", "gmpo", "minillm", "grpo_with_replay_buffer", "dppo", "gfpo", "papo")
MEANINGS = {
    "kl": {
        "per-token k3 to the reference, >= 0": {(t, "kl") for t in GRPO_LIKE},
        "per-token k1 to the reference, signed": {("rloo", "kl")},
        "KTO's clamped batch reference point": {("kto", "kl")},
        "per-sequence sum to the reference": {("online_dpo", "objective/kl"), ("ppo", "objective/kl"),
                                              ("xpo", "objective/kl"), ("nash_md", "loss/kl")},
        "k3 to the sampling policy, no reference": {("async_grpo", "kl")},
    },
    "entropy": {
        "per-token entropy (nats)": {(t, "entropy") for t in ("sft", "dpo", "kto", "tpo", "grpo", "rloo", "gmpo",
                                                                "async_grpo", "distillation", "async_distillation")}
        | {("ppo", "policy/entropy_avg")},
        "per-sequence NLL sum": {(t, "objective/entropy") for t in ("online_dpo", "ppo", "xpo", "nash_md")},
    },
    "policy ratio": {
        "vLLM importance-sampling weight, same weights": {(t, "sampling/importance_sampling_ratio/mean")
                                                          for t in GRPO_LIKE if t != "dppo"},
        "ratio to the behaviour policy (staleness)": {("async_grpo", "ratio"), ("ppo", "val/ratio")},
        "share of clipped ratios": {(t, k) for t in ("grpo", "rloo", "gmpo", "async_grpo")
                                    for k in ("clip_ratio/region_mean",)}
        | {("grpo", "clip_ratio"), ("grpo", "cispo_clip_ratio"), ("ppo", "policy/clipfrac_avg")},
        "approximate KL between policies": {("ppo", "policy/approxkl_avg")},
    },
    "reward": {
        "training reward of sampled completions": {(t, "reward") for t in GRPO_LIKE + ("rloo", "async_grpo", "a2po")}
        | {("ppo", "objective/scores"), ("online_dpo", "objective/scores"), ("xpo", "objective/model_scores"),
           ("nash_md", "rewards/chosen"), ("sdpo", "self_distillation/reward_mean")},
        "reward minus the KL penalty": {("ppo", "objective/rlhf_reward"), ("online_dpo", "objective/rlhf_reward")},
        "the trained reward model's score offset": {("reward", "mean_reward")},
    },
    "reward spread": {
        "std over the batch": {(t, "reward_std") for t in GRPO_LIKE + ("rloo",)}
        | {("sdpo", "self_distillation/reward_std")},
        "std within each group": {("async_grpo", "reward_std"), ("sdpo", "self_distillation/group_reward_std_mean")},
    },
    "margin": {
        "chosen - rejected reward": {(t, "rewards/margins") for t in ("dpo", "kto", "orpo", "cpo", "bco", "tpo",
                                                                       "online_dpo", "xpo")}
        | {("reward", "margin")},
        "score margin of the sampled pair, >= 0": {("online_dpo", "objective/scores_margin"),
                                                   ("xpo", "objective/scores_margin")},
    },
}


def alias_targets() -> dict[str, set[tuple[str, str]]]:
    """alias -> the (trainer, key) pairs the catalog file lists for it."""
    aliases = catalog_data()["aliases"]
    return {name: {(t, k) for t, keys in per.items() for k in keys} for name, per in aliases.items()}


def logged_or_renamed(trainer_id: str, key: str) -> bool:
    """Whether the trainer logs `key` (an `eval_` key: in evaluation rows), or logged it under that earlier name."""
    renamed = catalog_data()["renamed"]
    return builtin_catalog().trainer(trainer_id).logs(key.removeprefix(EVAL_PREFIX)) or \
        key in renamed.get(trainer_id, {})


def test_the_meaning_groups_name_keys_the_catalog_has():
    for groups in MEANINGS.values():
        for pairs in groups.values():
            for trainer_id, key in pairs:
                assert logged_or_renamed(trainer_id, key), (trainer_id, key)


@pytest.mark.parametrize("group", sorted(MEANINGS))
def test_no_alias_joins_quantities_that_cannot_share_a_threshold(group):
    for alias, pairs in alias_targets().items():
        meanings = {meaning for meaning, members in MEANINGS[group].items() if pairs & members}
        assert len(meanings) <= 1, f"alias {alias} joins {sorted(meanings)}"


def test_the_split_aliases():
    catalog = builtin_catalog()
    assert catalog.candidates("kl", ["online_dpo", "ppo", "rloo", "kto", "async_grpo"]) == ("kl",)
    assert catalog.candidates("sequence_kl", ["online_dpo"]) == ("sequence_kl", "objective/kl")
    assert "objective/entropy" not in catalog.candidates("entropy")
    assert catalog.candidates("reward_mean", ["reward"]) == ("reward_mean",)
    assert catalog.candidates("importance_sampling_ratio", ["async_grpo", "ppo"]) == ("importance_sampling_ratio",)
    assert catalog.candidates("reward_std", ["async_grpo"]) == ("reward_std",)
    assert catalog.candidates("group_reward_std", ["async_grpo"]) == ("group_reward_std", "reward_std")


def test_every_alias_key_is_logged_by_its_trainer():
    for alias, pairs in alias_targets().items():
        for trainer_id, key in pairs:
            if trainer_id == "legacy_win_rate_callback":  # a callback of any trainer (TRL 0.10.1-1.0.0)
                continue
            assert logged_or_renamed(trainer_id, key), (alias, trainer_id, key)


# ---------------------------------------------------------------- W001 (unknown metric) follows the catalog


@pytest.mark.parametrize("trainers_, metric, known", [
    (["dpo"], "nll_loss", False),  # gone since TRL 0.29
    (["async_grpo"], "queue_wait_time_s", False),  # a 1.10 name with no 1.16 counterpart
    (["async_grpo"], "weight_sync_time_s", True),  # a 1.10 name of perf/weight_sync_s
    (["async_grpo"], "perf/weight_sync_s", True),
    (["async_distillation"], "jsd", True),
    (["distillation"], "completions/clipped_ratio", True),
    (["ppo"], "objective/kl", True),  # a removed trainer's keys still count
    (["online_dpo"], "kl", False),  # objective/kl is a per-sequence sum: the alias does not reach it
    (["online_dpo"], "sequence_kl", True),
    (["reward"], "reward_mean", False),
    (["grpo"], "rewards/accuracy_reward/mean", True),
])
def test_w001_follows_the_catalog(tmp_path, trainers_, metric, known):
    rule = tmp_path / "r.yaml"
    rule.write_text(yaml.safe_dump({"name": "r", "trainers": trainers_, "metric": metric, "condition": "> 1",
                                    "severity": "low", "message": "{value}"}))
    codes = [p.diagnostic.code for p in lint([rule], against_builtin=False, run_tests=False).warnings]
    assert ("W001" not in codes) is known, codes
    assert builtin_catalog().is_known(metric, trainers_) is known


def test_a_metric_pattern_is_known_when_it_matches_a_key_the_trainers_log():
    catalog = builtin_catalog()
    assert catalog.is_known("logps/*", ["kto"]) and catalog.is_known("rewards/*/std", ["grpo"])
    assert not catalog.is_known("rewards/*/median", ["grpo"]) and not catalog.is_known("logps/*", ["sft"])
