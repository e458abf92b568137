"""Real TRL trainers on a tiny randomly initialised Llama, built in code (no downloads).

Follows the project's notes on running TRL on this CPU: offline and no-telemetry
variables before any Hugging Face import, one torch thread, the model and
tokenizer saved once per test session (DPO/KTO/GRPO reload the reference model
from that path), and the TRL defaults that do not suit a CPU turned off.

    model_dir = tiny_model_dir()                 # built once per process
    trainer = make_trainer("grpo", model_dir, tmp_path, callbacks=[cb], max_steps=3)
    trainer.train()
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

for _name in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
              "TRL_EXPERIMENTAL_SILENCE", "TOKENIZERS_PARALLELISM"):
    os.environ.setdefault(_name, "1" if _name != "TOKENIZERS_PARALLELISM" else "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Without the TRL extra, a test module importing this one is skipped at collection, with the reason.
# (importorskip imports each library: after the environment above, as any Hugging Face import must be.)
for _extra in ("torch", "transformers", "trl", "accelerate", "datasets"):
    pytest.importorskip(_extra, reason=f"needs the TRL extra ({_extra}): pip install 'ruledsl[trl]'")

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(1)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A tiny model learns nothing useful, but it trains.",
    "Rules watch the logs and raise alerts when training breaks.",
    "Rewards, margins and losses are numbers in a dictionary.",
    "Hello world, this is a short sentence.",
    "Gradient norms explode and losses turn into NaN.",
    "Policies collapse when the KL divergence grows too large.",
    "Every step logs a row of metrics.",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_MODEL_DIR: Path | None = None


def tiny_model_dir() -> Path:
    """A saved tiny Llama causal LM and its tokenizer; built at the first call of the process."""
    global _MODEL_DIR
    if _MODEL_DIR is None:
        _MODEL_DIR = Path(tempfile.mkdtemp(prefix="ruledsl-tiny-llama-"))
        _build_model(_MODEL_DIR)
    return _MODEL_DIR


def _build_model(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|pad|>", bos_token="<|bos|>",
                                        eos_token="<|eos|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def common_args(output_dir: Path, **overrides) -> dict:
    """TrainingArguments that suit a CPU test: the notes' list, plus no checkpoints and no progress bars."""
    args = dict(output_dir=str(output_dir), max_steps=5, logging_steps=1, report_to="none", use_cpu=True,
                bf16=False, gradient_checkpointing=False, save_strategy="no", disable_tqdm=True, seed=0,
                learning_rate=1e-3, per_device_train_batch_size=2)
    args.update(overrides)
    return args


def reward_len(completions, **kwargs):
    """A plain Python reward: completions close to 20 characters score best."""
    return [-abs(20 - len(c)) / 20 for c in completions]


def _datasets(kind: str):
    from datasets import Dataset

    prompts = [s.split(" ", 3)[0] + " " + s.split(" ", 3)[1] for s in SENTENCES]
    rest = [s.split(" ", 2)[2] for s in SENTENCES]
    if kind == "sft":
        return Dataset.from_dict({"text": SENTENCES})
    if kind == "dpo":
        return Dataset.from_dict({"prompt": prompts, "chosen": rest, "rejected": rest[1:] + rest[:1]})
    if kind == "kto":
        return Dataset.from_dict({"prompt": prompts, "completion": rest,
                                  "label": [i % 2 == 0 for i in range(len(prompts))]})
    if kind == "reward":
        return Dataset.from_dict({"chosen": SENTENCES, "rejected": SENTENCES[1:] + SENTENCES[:1]})
    if kind in ("grpo", "rloo"):
        return Dataset.from_dict({"prompt": prompts})
    raise ValueError(kind)


def make_trainer(kind: str, model_dir: Path, output_dir: Path, callbacks=(), trainer_class=None,
                 config_class=None, **overrides):
    """A real TRL trainer of `kind` (sft, dpo, grpo, kto, reward, rloo) on the tiny model."""
    import trl

    names = {"sft": "SFT", "dpo": "DPO", "grpo": "GRPO", "kto": "KTO", "reward": "Reward", "rloo": "RLOO"}
    config_class = config_class or getattr(trl, names[kind] + "Config")
    trainer_class = trainer_class or getattr(trl, names[kind] + "Trainer")
    extra: dict = {}
    if kind in ("grpo", "rloo"):
        overrides = {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 16,
                     **overrides}
        extra["reward_funcs"] = [reward_len]
    if kind == "kto":
        overrides = {"per_device_train_batch_size": 2, **overrides}
    args = config_class(**common_args(output_dir, **overrides))
    model = str(model_dir)
    if kind == "reward":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
    return trainer_class(model=model, args=args, train_dataset=_datasets(kind),
                         processing_class=_tokenizer(model_dir), callbacks=list(callbacks), **extra)


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))
