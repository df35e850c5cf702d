"""Training-time observability: image tokens per batch (the Qwen-VL "token explosion" pitfall)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class ImageTokenCounter:
    """Wraps a collator and counts ``<|image_pad|>`` tokens and sequence lengths of each batch."""

    def __init__(self, collator: Any, image_token_id: int | None) -> None:
        self.collator = collator
        self.image_token_id = image_token_id
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self.image_tokens = 0
        self.max_image_tokens = 0
        self.max_seq_len = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        ids = batch["input_ids"]
        if self.image_token_id is not None:
            n = int((ids == self.image_token_id).sum())
            self.image_tokens += n
            self.max_image_tokens = max(self.max_image_tokens, n)
        self.max_seq_len = max(self.max_seq_len, int(ids.shape[1]))
        self.batches += 1
        return batch

    def __getattr__(self, name: str) -> Any:  # TRL/Trainer read collator attributes (e.g. processor)
        if name == "collator":  # not set yet (unpickling in a dataloader worker)
            raise AttributeError(name)
        return getattr(self.collator, name)


class ImageTokenLogCallback(TrainerCallback):
    """Adds image-token and sequence-length statistics to every log line, then resets the counter."""

    def __init__(self, counter: ImageTokenCounter) -> None:
        self.counter = counter

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        c = self.counter
        if logs is not None and c.batches and "loss" in logs:
            logs["image_tokens_per_batch"] = c.image_tokens / c.batches
            logs["max_image_tokens_per_batch"] = c.max_image_tokens
            logs["max_seq_len"] = c.max_seq_len
            c.reset()
