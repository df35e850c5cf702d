"""One loader for tiny local model directories and real Hub checkpoints (Qwen2/2.5/3-VL, ...)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gleamx.checks import check_pixel_budget
from gleamx.errors import GleamModelError, first_line
from gleamx.sources import hub_access, missing_path

from gleamx.choices import DTYPES  # noqa: F401  (re-exported)


def _one_line(e: BaseException) -> str:
    """``Type: first line`` of an exception, short enough for a one-line error."""
    return first_line(e, with_type=True)


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return "auto"
    if dtype in DTYPES:
        return getattr(torch, dtype)
    raise GleamModelError(f"model: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def resolve_source(name_or_path: str | os.PathLike[str]) -> tuple[str, bool]:
    """``(what to pass to from_pretrained, local_files_only)``; raises a one-line error if unusable."""
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise GleamModelError(f"model: directory {name!r} has no config.json (expected a saved model directory)")
        return str(path), True
    if path.exists():
        raise GleamModelError(f"model: {name!r} is not a directory with config.json (no such local model directory)")
    missing = missing_path(name)
    if missing:
        raise GleamModelError(f"model: {missing}")
    # One quick metadata call: an unknown id or no network fails here in well under a second,
    # instead of from_pretrained's minutes of retries per file.
    problem, cache_only = hub_access(name, "model")
    if problem:
        raise GleamModelError(f"model: {name!r}: {problem}")
    return name, cache_only


def set_pixel_budget(processor: Any, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Set the image processor's min/max pixels per image (``size`` shortest/longest edge) in place."""
    if min_pixels is None and max_pixels is None:
        return
    ip = getattr(processor, "image_processor", None)
    if ip is None or getattr(ip, "size", None) is None:
        raise GleamModelError(
            f"model: min_pixels/max_pixels need a processor with an image processor, got {type(processor).__name__}"
        )
    size = dict(ip.size)
    saved_lo, saved_hi = pixel_budget(processor)
    lo = int(min_pixels) if min_pixels is not None else saved_lo
    hi = int(max_pixels) if max_pixels is not None else saved_hi
    if lo is None or hi is None:
        raise GleamModelError(f"model: the processor keeps no pixel budget to complete (min_pixels={lo}, "
                              f"max_pixels={hi}); pass both")
    check_pixel_budget("model: min_pixels", lo, "max_pixels", hi)
    # Qwen-VL image processors (transformers 5) keep the pixel budget as size shortest/longest edge.
    size = {k: v for k, v in size.items() if k not in ("min_pixels", "max_pixels")}
    size.update(shortest_edge=lo, longest_edge=hi)
    ip.size = type(ip.size)(**size) if not isinstance(ip.size, dict) else size


def pixel_budget(processor: Any) -> tuple[int | None, int | None]:
    """``(min_pixels, max_pixels)`` per image that ``processor``'s image processor resizes to (``None`` if unknown)."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    if size is None:
        return None, None
    size = dict(size)
    lo = size.get("shortest_edge", size.get("min_pixels"))
    hi = size.get("longest_edge", size.get("max_pixels"))
    return (None if lo is None else int(lo)), (None if hi is None else int(hi))


def _load_processor(source: str, common: dict[str, Any]) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source, **common)
    except Exception as e:
        raise GleamModelError(f"model: could not load a processor from {source!r} ({_one_line(e)})") from e


def _common_kwargs(local_only: bool, trust_remote_code: bool) -> dict[str, Any]:
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if local_only:
        common["local_files_only"] = True
    return common


def load_processor(
    name_or_path: str | os.PathLike[str],
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """The ``AutoProcessor`` of a local model directory or Hub id, with an optional pixel budget override."""
    source, local_only = resolve_source(name_or_path)
    processor = _load_processor(source, _common_kwargs(local_only, trust_remote_code))
    set_pixel_budget(processor, min_pixels, max_pixels)
    return processor


def load_model_and_processor(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: str | Any = "auto",
    attn_implementation: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    device_map: str | dict[str, Any] | None = None,
    quantization_config: Any = None,
    trust_remote_code: bool = False,
    with_processor: bool = True,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a local directory or a Hub id.

    The model comes from ``AutoModelForImageTextToText`` and the processor from ``AutoProcessor``.
    ``dtype`` is ``"auto"`` (the checkpoint's), ``"bfloat16"``, ``"float16"`` or ``"float32"``.
    ``min_pixels`` / ``max_pixels`` override the image processor's per-image pixel budget.
    ``with_processor=False`` skips the processor (returned as ``None``) for callers that take it from
    elsewhere, e.g. a training run's directory. Every failure is a one-line :class:`GleamModelError`.
    """
    from transformers import AutoModelForImageTextToText

    torch_dtype = _resolve_dtype(dtype)
    source, local_only = resolve_source(name_or_path)
    common = _common_kwargs(local_only, trust_remote_code)
    processor = None
    if with_processor:
        processor = _load_processor(source, common)
        set_pixel_budget(processor, min_pixels, max_pixels)

    kwargs: dict[str, Any] = {"dtype": torch_dtype, **common}
    optional = {
        "attn_implementation": attn_implementation,
        "device_map": device_map,
        "quantization_config": quantization_config,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except Exception as e:
        raise GleamModelError(
            f"model: could not load {source!r} as an image-text-to-text model ({_one_line(e)})"
        ) from e
    return model, processor


def image_token_count(processor: Any, width: int, height: int) -> int:
    """How many image placeholder tokens a ``width`` x ``height`` image becomes under ``processor``.

    Uses the image processor's own resize rule (Qwen's ``smart_resize`` with factor
    ``patch_size * merge_size`` and its min/max pixels), then merges ``merge_size**2`` patches per token.
    """
    ip = getattr(processor, "image_processor", processor)
    merge = getattr(ip, "merge_size", None)
    if merge is None or not hasattr(ip, "patch_size"):
        raise GleamModelError(
            f"model: image_token_count expects a Qwen-VL style image processor, got {type(ip).__name__}"
        )
    if width <= 0 or height <= 0:
        raise GleamModelError(f"model: image size must be positive, got {width}x{height}")
    if hasattr(ip, "get_number_of_image_patches"):
        patches = int(ip.get_number_of_image_patches(int(height), int(width)))
    else:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        size = dict(ip.size)
        h, w = smart_resize(
            int(height),
            int(width),
            factor=ip.patch_size * merge,
            min_pixels=size["shortest_edge"],
            max_pixels=size["longest_edge"],
        )
        patches = (h // ip.patch_size) * (w // ip.patch_size)
    return patches // (merge * merge)


__all__ = ["DTYPES", "image_token_count", "load_model_and_processor", "load_processor", "pixel_budget",
           "set_pixel_budget"]
