"""A real TRL GRPOTrainer on a tiny Llama made in code: the demo's `--real` part, offline, on CPU.

Nothing is downloaded: the model is a randomly initialised Llama of about 31k parameters and
the tokenizer a byte-level BPE trained on a few sentences, both saved to a local folder the
trainer loads by path. It learns nothing; what matters is that a real Trainer calls the real
hooks, so the callback sees the keys TRL really logs.

    os.environ (offline flags) must be set before transformers is imported: `offline_environment()`.
    trainer = tiny_grpo_trainer(folder, callbacks=[DiagnosticsCallback()], max_steps=4)
    trainer.train()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SENTENCES = [
    "Rules watch the logs and raise alerts when training breaks.",
    "The importance sampling ratio should stay close to one.",
    "Rewards, margins and losses are numbers in a dictionary.",
    "Every logged step is a row of metrics.",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def offline_environment() -> None:
    """No hub, no telemetry: Hugging Face libraries read these when they are imported."""
    for name, value in OFFLINE.items():
        os.environ.setdefault(name, value)


def save_tiny_model(folder: Path) -> Path:
    """Write a tiny Llama causal LM and its tokenizer to `folder` (a fraction of a second)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
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
    return folder


def reward_length(completions: list[str], **kwargs: Any) -> list[float]:
    """A reward in plain Python: completions near 20 characters score best."""
    return [-abs(20 - len(text)) / 20 for text in completions]


def tiny_grpo_trainer(folder: Path, callbacks: list[Any], max_steps: int = 4) -> Any:
    """A real GRPOTrainer on the tiny model saved in `folder / "model"`, writing under `folder / "run"`.

    The settings a CPU needs: no bf16, no gradient checkpointing, no checkpoints, one torch
    thread (two cores are shared), short completions; it logs every step. The Trainer's printer
    of each logged row is removed, so that the screen shows the callback's lines.
    """
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]  # no type information shipped
    from transformers import AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    model_dir = save_tiny_model(folder / "model")
    args = GRPOConfig(output_dir=str(folder / "run"), max_steps=max_steps, logging_steps=1, report_to="none",
                      use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no",
                      disable_tqdm=True, seed=0, learning_rate=1e-3, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=16)
    prompts = Dataset.from_dict({"prompt": [" ".join(s.split()[:2]) for s in SENTENCES]})
    trainer = GRPOTrainer(model=str(model_dir), args=args, reward_funcs=[reward_length], train_dataset=prompts,
                          processing_class=AutoTokenizer.from_pretrained(str(model_dir)), callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # it prints every row as a dict: the demo shows ruledsl's lines
    return trainer
