"""A faster assistant-token mask for ``apply_chat_template(return_assistant_tokens_mask=True)``.

transformers 5.x builds the mask in ``ProcessorMixin._adjust_assistant_masks_indices`` by walking
``offset_mapping`` pair by pair in Python. When the processor returns tensors, every pair is a
0-d tensor and each comparison a torch op: that walk was 65% of TRL's vision collator
(``benchmark/bench_data.py``). Handing it the same offsets as Python lists gives the identical
mask (tested) at a fraction of the cost; transformers' own logic stays in charge.
"""

from __future__ import annotations

from typing import Any

_MARK = "_gleamx_fast_assistant_masks"


class _ListOffsets:
    """Stands in for the processor's bound ``_adjust_assistant_masks_indices``; picklable, so
    dataloader workers started with spawn/forkserver get it too."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, processed_dict: Any, generation_indices: list[list[int]]) -> Any:
        offsets = processed_dict.get("offset_mapping")
        if hasattr(offsets, "tolist"):
            processed_dict["offset_mapping"] = offsets.tolist()
        return type(self.processor)._adjust_assistant_masks_indices(self.processor, processed_dict, generation_indices)


def speed_up_assistant_masks(processor: Any) -> Any:
    """Patch ``processor`` (this instance only) to compute assistant masks on Python lists.

    A processor without the transformers hook (another version or class) is returned unchanged.
    """
    if not hasattr(type(processor), "_adjust_assistant_masks_indices") or getattr(processor, _MARK, False):
        return processor
    processor._adjust_assistant_masks_indices = _ListOffsets(processor)
    setattr(processor, _MARK, True)
    return processor
