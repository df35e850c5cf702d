"""Apply a training run to a base model for inference: its processor and its LoRA adapter.

Used by ``gleamx-eval``, ``gleamx localize`` and ``gleamx merge`` alike, so a model is evaluated,
verified and merged with the images, chat template and weights it was trained with.

* Processor: an SFT output dir holds the run's processor (``processor_config.json``: pixel budget,
  chat template, tokenizer) beside ``adapter_config.json``; it is used instead of the base model's,
  whose default budget (Qwen: 12.8 M pixels per image) may be far from the one trained with.
* Adapter: the adapter's tensors are compared with the tensors the PEFT-wrapped model expects.
  Adapters saved with transformers 4's Qwen2-VL / Qwen2.5-VL layout (``model.layers.*``,
  ``visual.*``) are renamed to transformers 5's (``model.language_model.layers.*``,
  ``model.visual.*``), which ``PeftModel.from_pretrained`` would otherwise load as zero LoRA
  tensors with only a warning. An adapter whose tensors still do not all fit (another base model,
  another width) is refused with one line.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from gleamx.errors import GleamConfigError, GleamModelError, first_line

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
PEFT_PREFIX = "base_model.model."
# transformers 4 -> 5 Qwen-VL key layout, as in transformers 5's conversion mapping for
# Qwen2VLForConditionalGeneration (used when the model's own mapping is not registered).
QWEN_VL_OLD_LAYOUT: tuple[tuple[str, str], ...] = (
    (r"^visual", "model.visual"),
    (r"^model(?!\.(language_model|visual))", "model.language_model"),
)


def _say(message: str) -> None:
    from gleamx.console import console

    console.print(message, markup=False)


def has_saved_processor(path: str | Path | None) -> bool:
    """Whether ``path`` is a local directory holding a saved processor (a training run's output dir)."""
    return path is not None and Path(path).is_dir() and any((Path(path) / f).is_file() for f in PROCESSOR_FILES)


def load_inference_processor(
    model: str | Path, adapter: str | Path | None = None, *, min_pixels: int | None = None,
    max_pixels: int | None = None, flag: str = "--adapter",
) -> tuple[Any, str]:
    """``(processor, where it came from)``: the adapter run's processor when ``adapter`` holds one, else ``model``'s.

    ``min_pixels`` / ``max_pixels`` still override; when they change the loaded budget, one console
    line says so (a run's budget is what the model was trained with).
    """
    from gleamx.models.load import load_processor, pixel_budget, set_pixel_budget

    if has_saved_processor(adapter):
        from transformers import AutoProcessor

        source = str(adapter)
        try:
            processor = AutoProcessor.from_pretrained(source, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - many loader errors; the user needs one line
            raise GleamModelError(f"{flag}: could not load the processor saved in {source} "
                                  f"({first_line(e, with_type=True)})") from None
    else:
        source = str(model)
        processor = load_processor(model)
    saved = pixel_budget(processor)
    set_pixel_budget(processor, min_pixels, max_pixels)
    now = pixel_budget(processor)
    if now != saved:
        _say(f"note: --min-pixels/--max-pixels override the pixel budget of {source}'s processor: "
             f"min {saved[0]} / max {saved[1]} -> min {now[0]} / max {now[1]} pixels per image")
    return processor, source


def _same_model(a: str, b: str) -> bool:
    """Whether two model names point at one model: equal, the same directory, or a Hub id and a copy of it."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return pa.name.lower() == pb.name.lower()


def _renamings(model: Any) -> list[list[tuple[str, str]]]:
    """Candidate key renamings (old layout -> this model's), most specific first."""
    out: list[list[tuple[str, str]]] = []
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
        from transformers.core_model_loading import WeightRenaming

        conversions = (get_checkpoint_conversion_mapping(type(model).__name__)
                       or get_checkpoint_conversion_mapping(getattr(model.config, "model_type", None)) or [])
        own = [(src, tgt) for c in conversions if isinstance(c, WeightRenaming)
               for src, tgt in zip(c.source_patterns, c.target_patterns)]
        if own:
            out.append(own)
    except ImportError:  # an older transformers without the conversion registry
        pass
    if list(QWEN_VL_OLD_LAYOUT) not in out:
        out.append(list(QWEN_VL_OLD_LAYOUT))
    return out


def _rename_key(key: str, renames: list[tuple[str, str]]) -> str:
    for pattern, target in renames:
        key = re.sub(pattern, target, key, count=1)
    return key


def _rename(state: dict[str, Any], renames: list[tuple[str, str]]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        if key.startswith(PEFT_PREFIX):  # the renamings are written for model keys, without PEFT's prefix
            key = PEFT_PREFIX + _rename_key(key[len(PEFT_PREFIX):], renames)
        out[key] = value
    return out


def load_saved_weights(model: Any, folder: str | Path) -> None:
    """Load a full model's ``model.safetensors`` (or its shards) from ``folder`` into ``model``, every tensor.

    ``save_pretrained`` writes Qwen2/2.5-VL weights in the checkpoint's own layout (``model.*``, ``visual.*``),
    which a plain ``load_state_dict`` (the Trainer's reload of its best checkpoint) matches to nothing, with only a
    warning; the keys are renamed as for adapters. A tensor that fits nowhere, or a model tensor with no saved one
    (tied weights aside), is one :class:`GleamModelError` line.
    """
    import json

    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())) if index.is_file()
             else ["model.safetensors"])
    saved: dict[str, Any] = {}
    for name in files:
        saved.update(load_file(str(folder / name), device="cpu"))
    own = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in own.items()}
    state, best = _best_naming(saved, expected, model, adapter=False)
    if best < len(saved):
        raise GleamModelError(f"{folder}: {best} of {len(saved)} saved tensors match the model's (weights of another "
                              "model or layout?)")
    result = model.load_state_dict(state, strict=False)
    loaded = {own[k].data_ptr() for k in state}
    missing = [k for k in result.missing_keys if own[k].data_ptr() not in loaded]  # a tied weight came with its twin
    if missing:
        raise GleamModelError(f"{folder}: holds no weights for {len(missing)} of the model's tensors "
                              f"(e.g. {missing[0]})")


def check_adapter_dir(adapter: str | Path, flag: str = "--adapter") -> None:
    """One line unless ``adapter`` is a folder holding ``adapter_config.json`` (a PEFT adapter, e.g. a LoRA run's
    ``output_dir``): a folder that is not there says ``not found``, not what it lacks."""
    if not Path(adapter).exists():
        raise GleamConfigError(f"{flag}: {adapter}: not found (expected a PEFT adapter directory, e.g. a LoRA run's "
                               "output_dir)")
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise GleamConfigError(f"{flag}: {adapter} has no adapter_config.json (expected a PEFT adapter directory)")


def _n_fitting(state: dict[str, Any], expected: dict[str, tuple[int, ...]]) -> int:
    return sum(1 for k, v in state.items() if expected.get(k) == tuple(v.shape))


def _best_naming(saved: dict[str, Any], fits: dict[str, tuple[int, ...]], model: Any, *, adapter: bool,
                 try_others: bool = False) -> tuple[dict[str, Any], int]:
    """``saved`` under the key naming (as saved, or one of ``model``'s older layouts) that fits the most tensors,
    and how many fit; the other namings are tried when some tensor does not fit as saved, or ``try_others``.
    ``adapter``: the keys carry PEFT's prefix, which the renamings leave alone."""
    state, best = saved, _n_fitting(saved, fits)
    if best < len(saved) or try_others:
        for renames in _renamings(model):
            renamed = _rename(saved, renames) if adapter else {_rename_key(k, renames): v for k, v in saved.items()}
            n = _n_fitting(renamed, fits)
            if n > best:
                state, best = renamed, n
    return state, best


def _read_adapter(adapter: Path, flag: str) -> tuple[Any, dict[str, Any]]:
    """``(PeftConfig, saved tensors)`` of an adapter directory; unreadable is one line."""
    from peft import PeftConfig
    from peft.utils import load_peft_weights

    check_adapter_dir(adapter, flag)
    try:
        return PeftConfig.from_pretrained(str(adapter)), load_peft_weights(str(adapter), device="cpu")
    except Exception as e:  # noqa: BLE001 - json, safetensors and PEFT errors alike
        raise GleamModelError(f"{flag} {adapter}: could not read the adapter ({first_line(e, with_type=True)})") from None


def _matching_state(peft_model: Any, saved: dict[str, Any], where: str) -> dict[str, Any]:
    """``saved`` with every tensor named as ``peft_model`` expects it (old key layouts renamed); one line when
    any tensor fits nowhere or an expected one is missing."""
    from peft.utils import get_peft_model_state_dict
    from peft.utils.constants import EMBEDDING_LAYER_NAMES

    # save_embedding_layers=False: PEFT's "auto" asks the Hub about the base model. Embedding weights an
    # adapter saved anyway (resized vocabulary) are accepted where the model has that weight.
    wanted = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    expected = {k: tuple(v.shape) for k, v in wanted.items()}
    embeddings = {PEFT_PREFIX + k: tuple(v.shape) for k, v in peft_model.get_base_model().state_dict().items()
                  if any(f"{name}." in k for name in EMBEDDING_LAYER_NAMES) and "lora_" not in k}
    fits = {**embeddings, **expected}

    state, best = _best_naming(saved, fits, peft_model.get_base_model(), adapter=True,
                               try_others=not set(expected) <= set(saved))
    if best < len(saved):
        raise GleamModelError(f"{where}: {best} of {len(saved)} adapter tensors match the model's modules "
                              "(adapter made for another model or layout?)")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise GleamModelError(f"{where}: holds {len(saved)} tensors, but its config puts {len(expected)} on the model "
                              f"(missing e.g. {missing[0]})")
    return state


def load_adapter(model: Any, adapter_dir: str | Path, *, flag: str = "--adapter") -> Any:
    """Wrap ``model`` with the PEFT adapter in ``adapter_dir`` and load every one of its tensors.

    The saved keys are matched against the tensors the wrapped model expects (names and shapes);
    an adapter in transformers 4's Qwen-VL layout is renamed to transformers 5's. Anything that
    still does not fit is a one-line :class:`GleamModelError` naming the adapter and how many of its
    tensors matched. A ``base_model_name_or_path`` other than ``model``'s prints a one-line warning.
    Returns the ``PeftModel`` in eval mode.
    """
    from peft import PeftModel
    from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING
    from peft.utils import set_peft_model_state_dict

    adapter = Path(adapter_dir)
    where = f"{flag} {adapter}"
    config, saved = _read_adapter(adapter, flag)

    base_name, model_name = config.base_model_name_or_path, getattr(model, "name_or_path", None)
    if base_name and model_name and not _same_model(str(base_name), str(model_name)):
        _say(f"warning: {where} was trained on {base_name!r}, and is applied to {model_name!r}")

    config.inference_mode = True
    wrapper = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(config.task_type, PeftModel)
    try:
        with warnings.catch_warnings():
            # PEFT's wrapper reads a property transformers 5 deprecated; not the user's concern.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = wrapper(model, config)
    except Exception as e:  # noqa: BLE001 - e.g. PEFT's "Target modules ... not found in the base model"
        raise GleamModelError(f"{where}: does not fit the model ({first_line(e, with_type=True)})") from None
    result = set_peft_model_state_dict(peft_model, _matching_state(peft_model, saved, where))
    if getattr(result, "unexpected_keys", None):  # cannot happen after the check above; never load silently
        raise GleamModelError(f"{where}: {len(result.unexpected_keys)} adapter tensors were not loaded "
                              f"(e.g. {result.unexpected_keys[0]})")
    return peft_model.eval()


def load_for_inference(
    model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto", min_pixels: int | None = None,
    max_pixels: int | None = None, processor: Any = None, flag: str = "--adapter", device: str | None = "auto",
) -> tuple[Any, Any]:
    """``(model in eval mode, processor)``: ``model`` plus ``adapter`` (if any), with the run's processor.

    Pass ``processor`` when it is already loaded (see :func:`load_inference_processor`). ``device``
    ``"auto"`` puts the model on the GPU when there is one; ``None`` leaves it where it loads (CPU).
    """
    from gleamx.models.load import load_model_and_processor

    if adapter is not None:
        check_adapter_dir(adapter, flag)
    if processor is None:
        processor, _ = load_inference_processor(model, adapter, min_pixels=min_pixels, max_pixels=max_pixels,
                                                flag=flag)
    net, _ = load_model_and_processor(model, dtype=dtype, with_processor=False)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    if device is not None:
        net = net.to(device)  # before the adapter: PEFT builds its layers on the base layer's device
    if adapter is not None:
        net = load_adapter(net, adapter, flag=flag)
    return net.eval(), processor


__all__ = ["has_saved_processor", "load_adapter", "load_for_inference", "load_inference_processor"]
