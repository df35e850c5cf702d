"""Padding-free multimodal batches: a batch's conversations in one row, no padding, exact per-sample losses.

TRL 1.16 refuses its own ``padding_free`` for vision data and emits 1-row position ids that Qwen-VL's
3-D rope cannot use. gleamx packs after TRL's vision collator instead (so labels, assistant-only
masks and truncation stay TRL's): each padded row is cut to its real tokens and the rows are
concatenated into one, with

* ``position_ids`` of shape ``(4, 1, T)``: row 0 a per-sample counter (``0..L_i-1``; the text model
  takes a leading row as "packed" and ``masking_utils`` turns its restarts into a block-diagonal
  causal mask, or flash-attention varlen boundaries), rows 1-3 each sample's own 3-D rope ids from
  the model's ``get_rope_index``;
* no ``attention_mask`` (any mask turns the packed-sequence detection off);
* the first label of every sample set to -100, so nothing is learned across a boundary;
* ``cu_seq_lens_q/k`` and ``max_length_q/k`` for flash attention (its varlen kernel takes them
  directly instead of deriving them from the position ids in every layer).

``pixel_values`` and ``image_grid_thw`` already hold the images in sample order and pass through.

Wiring: ``build_trainer`` asks :func:`resolve_padding_free` (the recipe's ``padding_free_vl`` against
the loaded model's type and attention kernel) and, when on, builds ``padding_free_trainer(GleamSFTTrainer)``,
whose :class:`PaddingFreeTrainerMixin` wraps TRL's collator and corrects TRL's token count.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch

from gleamx.errors import GleamConfigError

# Model types whose text model reads a 4-row ``position_ids`` as packed (``position_ids.shape[0] == 4``)
# and whose exactness was checked: per-sample losses of a packed batch equal separate runs
# (tests/test_padding_free.py; ../shared/FEASIBILITY.md).
PACKABLE_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl"})
# Kernels that are exact with 4-row ids and no mask: eager/sdpa get a block-diagonal mask from
# ``masking_utils`` (dense, T x T), flash attention a varlen call per sample (any "flash" kernel).
EXACT_KERNELS = frozenset({"eager", "sdpa"})


def is_flash(impl: str | None) -> bool:
    """flash_attention_2/3 and Hub flash kernels (``kernels-community/flash-attn...``)."""
    return impl is not None and "flash" in impl


def text_attn_implementation(model: Any) -> str | None:
    """The attention kernel the language model actually runs (after any fallback at load time)."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "_attn_implementation", None) or getattr(config, "_attn_implementation", None)


def padding_free_blocker(model: Any) -> str | None:
    """Why ``model`` cannot take padding-free batches (one phrase), or None when it can."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in PACKABLE_MODEL_TYPES:
        return f"model type {model_type!r} (packing is verified for {', '.join(sorted(PACKABLE_MODEL_TYPES))})"
    impl = text_attn_implementation(model)
    if not (impl in EXACT_KERNELS or is_flash(impl)):
        return f"attn_implementation {impl!r} (exact with flash_attention_2/3, sdpa or eager)"
    return None


def resolve_padding_free(requested: bool | None, model: Any, training_args: Any, say: Any = print) -> bool:
    """Whether this run packs its batches: ``padding_free_vl`` (None: auto) against the loaded model.

    Auto is on with flash attention only: its varlen kernel attends within each sample, so packing just
    drops the padding work. sdpa and eager are exact too, but ``masking_utils`` gives them a dense
    T x T mask over the whole packed row, and that attention costs more than the padding saves
    (``benchmark/bench_padding_free.py``: about half the padded tokens/s on CPU at 39% padding); they pack
    only when asked (``true``). ``true`` where packing is not exact is refused in one line. TRL's own
    ``padding_free: true`` means ``padding_free_vl: true``.
    """
    if getattr(training_args, "padding_free", False):
        # TRL's own switch, as TRL users write it: TRL refuses it for image data (and its collator would give
        # Qwen-VL 1-row position ids), so it is taken to mean gleamx's packing and handed to TRL as false.
        if requested is False:
            raise GleamConfigError("recipe: padding_free: true and padding_free_vl: false contradict each other; "
                                   "keep one of them")
        requested, training_args.padding_free = True, False
    blocker = padding_free_blocker(model)
    impl = text_attn_implementation(model)
    if requested is True:
        if blocker:
            raise GleamConfigError(f"recipe: padding_free_vl: true, but packed batches are not exact with {blocker}; "
                                   "set it to false or null (auto)")
    elif requested is False or not is_flash(impl):
        return False  # auto with sdpa/eager: padded, as without the option
    elif blocker:
        say(f"padding-free batches: off ({blocker}); batches are padded")
        return False
    cost = "" if is_flash(impl) else "; exact, but its mask is dense over the packed row (fast with flash attention)"
    say(f"padding-free batches: on ({impl}): each batch is one row with per-sample 3-D rope ids, no padding{cost}")
    return True


class RopeIndex:
    """A picklable stand-in for ``model.model.get_rope_index``: the model's class and config, no weights.

    The collator runs in DataLoader workers (started by fork, spawn or forkserver); a bound method
    would carry the whole model there. ``get_rope_index`` reads only ``self.config`` and calls helper
    methods of its own class (``get_vision_position_ids``), so those are bound to this object instead.
    """

    def __init__(self, model: Any) -> None:
        inner = _vl_base_model(model)
        self.model_class = type(inner)
        self.config = inner.config

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("model_class", "config"):
            raise AttributeError(name)
        attr = getattr(self.model_class, name)
        return types.MethodType(attr, self) if isinstance(attr, types.FunctionType) else attr

    def __call__(self, input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                 image_grid_thw: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
                 **extra: Any) -> torch.Tensor:
        """``(3, batch, length)`` rope ids of a right-padded batch (zeros at padding)."""
        position_ids, _ = self.model_class.get_rope_index(
            self, input_ids=input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw, attention_mask=attention_mask, **extra)
        return position_ids


def _vl_base_model(model: Any) -> Any:
    """The module that owns ``get_rope_index`` (``Qwen*VLModel``), through PEFT and wrapper layers."""
    seen = model
    for _ in range(6):
        if hasattr(type(seen), "get_rope_index") and not hasattr(seen, "lm_head"):
            return seen
        nxt = getattr(seen, "model", None) or getattr(seen, "base_model", None)
        if nxt is None or nxt is seen:
            break
        seen = nxt
    raise GleamConfigError(f"padding_free_vl: {type(model).__name__} has no get_rope_index (not a Qwen-VL model)")


# Dropped from a packed batch: a mask would turn the packed-sequence detection off. Of the rest, tensors
# shaped (batch, length) are per token and are cut and concatenated; the others (pixel_values,
# image_grid_thw, ...) are per image and pass through unchanged.
_DROPPED = ("attention_mask",)


def pack_batch(batch: dict[str, Any], rope_index: Any, *, flash_kwargs: bool = False) -> dict[str, Any]:
    """One right-padded TRL vision batch -> one padding-free row (see the module docstring)."""
    mask = batch["attention_mask"].bool()
    n_rows, width = mask.shape
    lengths = mask.sum(1)
    # TRL pads on the right: a row's real tokens are a prefix. Anything else would be cut wrongly.
    if not torch.equal(mask, torch.arange(width, device=mask.device)[None, :] < lengths[:, None]):
        raise ValueError("pack_batch: expected a right-padded batch (TRL's vision collator pads on the right)")
    if "mm_token_type_ids" not in batch:
        raise ValueError("pack_batch: the processor gave no mm_token_type_ids (needed for the 3-D rope ids)")
    rope_kwargs = {k: batch[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in batch}
    rope = rope_index(batch["input_ids"], batch["mm_token_type_ids"], batch["attention_mask"], **rope_kwargs)
    keep = mask.flatten()

    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key in _DROPPED:
            continue
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (n_rows, width):
            value = value.flatten()[keep][None, :]
        out[key] = value
    if "labels" in out:
        labels = out["labels"].clone()
        starts = torch.cumsum(lengths, 0) - lengths
        labels[0, starts] = -100  # the previous sample's last token must not learn this sample's first
        out["labels"] = labels
    device = mask.device
    counter = torch.cat([torch.arange(int(n), dtype=rope.dtype, device=device) for n in lengths.tolist()])
    rope_rows = rope.reshape(3, -1)[:, keep].to(device)
    out["position_ids"] = torch.cat([counter[None, :], rope_rows], dim=0)[:, None, :]
    if flash_kwargs:
        cu = torch.cat([torch.zeros(1, dtype=torch.int32, device=device), torch.cumsum(lengths, 0).to(torch.int32)])
        longest = int(lengths.max())
        out.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu.clone(), max_length_q=longest, max_length_k=longest)
    return out


def sample_bounds(packed: dict[str, Any]) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of each sample in a packed row (where the text counter restarts at 0)."""
    counter = packed["position_ids"][0, 0]
    starts = (counter == 0).nonzero().flatten().tolist()
    ends = starts[1:] + [int(counter.numel())]
    return list(zip(starts, ends))


def is_packed(inputs: dict[str, Any]) -> bool:
    """A padding-free batch: 4-row position ids and no attention mask."""
    pos = inputs.get("position_ids")
    return isinstance(pos, torch.Tensor) and pos.dim() == 3 and pos.shape[0] == 4 and "attention_mask" not in inputs


class PaddingFreeCollator:
    """TRL's vision collator, then :func:`pack_batch`. Picklable (its parts are), for DataLoader workers."""

    def __init__(self, inner: Any, rope_index: Any, *, flash_kwargs: bool) -> None:
        self.inner, self.rope_index, self.flash_kwargs = inner, rope_index, flash_kwargs

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return pack_batch(self.inner(examples), self.rope_index, flash_kwargs=self.flash_kwargs)


class PaddingFreeTrainerMixin:
    """The Trainer side of padding-free batches, put in front of gleamx's ``SFTTrainer`` subclass.

    * After TRL built its vision collator (labels, assistant mask, chat template as in a padded run),
      wrap it in :class:`PaddingFreeCollator` with a :class:`RopeIndex` of the model: the rope ids need
      the model's config, and a weight-free handle keeps the collator cheap to send to workers.
    * TRL counts a batch without ``attention_mask`` as ``position_ids.size(1)`` tokens: 1 for 4-row
      ids. The logged ``num_tokens`` (and every tokens/s read from it) is corrected to the packed length.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model = kwargs.get("model", args[0] if args else None)
        self.data_collator = PaddingFreeCollator(self.data_collator, RopeIndex(model),
                                                 flash_kwargs=is_flash(text_attn_implementation(model)))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        length = inputs["position_ids"].shape[-1] if is_packed(inputs) else None
        before = self._total_train_tokens
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if length is not None and self.model.training:
            local = torch.tensor(length, device=inputs["position_ids"].device)
            total = self.accelerator.gather_for_metrics(local).sum().item()
            self._total_train_tokens = before + total // self._tp_size
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result


@functools.cache
def padding_free_trainer(trainer_cls: type) -> type:
    """``trainer_cls`` with :class:`PaddingFreeTrainerMixin` in front (one class per base)."""
    return type(f"PaddingFree{trainer_cls.__name__}", (PaddingFreeTrainerMixin, trainer_cls), {})


__all__ = ["PACKABLE_MODEL_TYPES", "PaddingFreeCollator", "PaddingFreeTrainerMixin", "RopeIndex", "is_packed",
           "pack_batch", "padding_free_blocker", "padding_free_trainer", "resolve_padding_free", "sample_bounds"]
