"""Training-time observability: image tokens per batch (the Qwen-VL "token explosion" pitfall)."""

from __future__ import annotations

from typing import Any


class ImageTokenCounter:
    """Counts ``<|image_pad|>`` tokens and sequence lengths of the batches a trainer steps on.

    It is fed from the training step in the main process (``GleamSFTTrainer.training_step``), not
    from the collator: with ``dataloader_num_workers > 0`` the collator runs in worker processes,
    whose counts would never reach the logging callback.
    """

    def __init__(self, image_token_id: int | None) -> None:
        self.image_token_id = image_token_id
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self.image_tokens = 0
        self.max_image_tokens = 0
        self.max_seq_len = 0

    def update(self, input_ids: Any) -> None:
        """Add one batch (``input_ids`` tensor of shape batch x length)."""
        if self.image_token_id is not None:
            n = int((input_ids == self.image_token_id).sum())
            self.image_tokens += n
            self.max_image_tokens = max(self.max_image_tokens, n)
        self.max_seq_len = max(self.max_seq_len, int(input_ids.shape[1]))
        self.batches += 1

    def stats(self) -> dict[str, float]:
        """Per-batch statistics since the last call (empty when no batch was counted); resets."""
        if not self.batches:
            return {}
        out = {"image_tokens_per_batch": self.image_tokens / self.batches,
               "max_image_tokens_per_batch": self.max_image_tokens, "max_seq_len": self.max_seq_len}
        self.reset()
        return out
