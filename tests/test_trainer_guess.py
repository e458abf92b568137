"""The trainer guess on real TRL captures: right where the keys tell, open where they do not."""

from __future__ import annotations

import json

import pytest

from log_writers import REAL_LOGS
from ruledsl.model import trainers


def keys_of(name: str) -> set[str]:
    return {k for line in (REAL_LOGS / f"{name}.jsonl").read_text().splitlines() for k in json.loads(line)}


@pytest.mark.parametrize("capture, trainer", [
    ("sft", "sft"), ("sft_chat", "sft"), ("dpo", "dpo"), ("kto", "kto"), ("reward", "reward"),
    ("cpo", "cpo"), ("orpo", "orpo"),
])
def test_real_captures_are_recognised(capture: str, trainer: str):
    assert trainers.guess(keys_of(capture))[0] == trainer


@pytest.mark.parametrize("capture", ["grpo", "grpo_chat", "grpo_kl", "rloo"])
def test_grpo_and_rloo_log_the_same_keys_so_no_guess(capture: str):
    trainer, why, fitting = trainers.guess(keys_of(capture))
    assert trainer is None and "grpo" in why and "rloo" in why
    assert {"grpo", "rloo"} <= set(fitting) and "dpo" not in fitting


def test_nothing_known_is_no_guess():
    assert trainers.guess({"loss", "grad_norm", "learning_rate", "epoch"})[0] is None


def test_config_class_names_are_trainer_ids():
    assert trainers.normalize("GRPOConfig") == "grpo" and trainers.normalize("OnlineDPOConfig") == "online_dpo"
    assert trainers.normalize("dpo") == "dpo"
