"""A real tiny SFT training that ends abnormally, run as its own process by tests/test_postmortem.py.

    python tests/postmortem_trainer.py MODE MODEL_DIR OUTPUT_DIR

MODE:
  raise         a user callback raises RuntimeError at step 3 (the callback given to the constructor)
  raise_added   the same, with DiagnosticsCallback added by trainer.add_callback after the trainer
                was built (train() cannot be wrapped then: the chained excepthook writes it)
  hold          training holds at step 3 (a user callback sleeps, up to 60 s) for a signal to come
  hold_handler  the same, with the user's own SIGTERM handler installed before training: it
                writes OUTPUT_DIR/user_handler_ran and exits with status 143
"""

# first: it sets the offline environment for Hugging Face
from tiny_trl import make_trainer

import signal
import sys
import time
from pathlib import Path

from transformers import TrainerCallback  # noqa: E402

from ruledsl.integrations.callback import DiagnosticsCallback  # noqa: E402

FAIL_AT = 3
HOLD_SECONDS = 60


class FailAt(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == FAIL_AT:
            raise RuntimeError(f"user callback failed at step {state.global_step}")


class HoldAt(TrainerCallback):
    """A step that takes long, as a real one may: the signal arrives in the middle of training."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == FAIL_AT:
            deadline = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < deadline:
                time.sleep(0.05)


def main(mode: str, model_dir: Path, output_dir: Path) -> None:
    diagnostics = DiagnosticsCallback(postmortem_rows=2)
    user = FailAt() if mode.startswith("raise") else HoldAt()
    if mode == "hold_handler":
        def user_handler(signum, frame):
            (output_dir / "user_handler_ran").write_text("yes")
            sys.exit(143)

        signal.signal(signal.SIGTERM, user_handler)
    if mode == "raise_added":
        trainer = make_trainer("sft", model_dir, output_dir, max_steps=8)
        trainer.add_callback(diagnostics)
        trainer.add_callback(user)
    else:
        trainer = make_trainer("sft", model_dir, output_dir, callbacks=[diagnostics, user], max_steps=8)
    trainer.train()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
