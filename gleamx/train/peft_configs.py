"""The adapter and quantisation configs of a run, built by TRL's own helpers (``get_peft_config``,
``get_quantization_config``) so every option of ``ModelConfig`` reaches them; gleamx adds only its LoRA targets,
the trained merger, the bitsandbytes skip list and the checks that fail in one line instead of deep in a kernel."""

from __future__ import annotations

from typing import Any

from trl import ModelConfig

from gleamx.errors import GleamConfigError, GleamModelError
from gleamx.train.arguments import LLM_LORA_TARGETS, VISION_LORA_TARGETS, GleamScriptArguments
from gleamx.train.freeze import merger_module_names


def lora_config(model_args: ModelConfig, script_args: GleamScriptArguments, model: Any):
    """TRL's ``get_peft_config`` (every LoRA option of ``ModelConfig``, ``lora_target_parameters`` included), with
    gleamx's defaults on top: the language model's linear layers as targets (the vision tower's too with
    ``lora_vision``) when the recipe names none, and the merger trained in full unless ``freeze_merger``."""
    from dataclasses import replace

    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is None:
        return None
    if model_args.lora_target_modules:
        targets: Any = model_args.lora_target_modules
    else:
        targets = LLM_LORA_TARGETS if not script_args.lora_vision else f"(?:{LLM_LORA_TARGETS})|(?:{VISION_LORA_TARGETS})"
    to_save = list(model_args.lora_modules_to_save or [])
    if not script_args.freeze_merger:
        to_save += [m for m in merger_module_names(model) if m not in to_save]
    return replace(config, target_modules=targets, modules_to_save=to_save or None)


def quantization_config(model_args: ModelConfig):
    """TRL's ``get_quantization_config`` (bitsandbytes 4-bit or 8-bit, ``bnb_4bit_quant_storage`` included), with
    the vision tower and the LM head left unquantised and a compute dtype that ``dtype: auto`` cannot break."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise GleamConfigError("recipe: load_in_4bit/load_in_8bit need bitsandbytes: pip install 'gleamx[quant]'") from None
    import copy

    from trl import get_quantization_config

    # TRL computes in the weights' dtype; "auto" or unset means bf16 here (float32 stays float32).
    resolved = copy.copy(model_args)
    resolved.dtype = "bfloat16" if model_args.dtype in ("bfloat16", None, "auto") else "float32"
    config = get_quantization_config(resolved)
    # Full module prefixes: bitsandbytes matches llm_int8_skip_modules against qualified names.
    config.llm_int8_skip_modules = ["lm_head", "model.visual"]
    return config


def check_quantisable(model: Any) -> None:
    """bitsandbytes 4-bit kernels need linear widths >= 64 (its block size); fail here, not in a kernel."""
    import torch.nn as nn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and "visual" not in name and not name.endswith("lm_head"):
            if min(mod.in_features, mod.out_features) < 64:
                raise GleamModelError(
                    f"model: {name} is {mod.in_features}x{mod.out_features}; 4-bit quantisation needs linear layers "
                    ">= 64 wide (bitsandbytes block size)"
                )


def run_quantization_config(model_args: ModelConfig, training_args: Any):
    """:func:`quantization_config` for a run: QLoRA trains its adapters in bfloat16, so it needs ``bf16: true``
    (without autocast the first matmul fails deep in torch)."""
    quant = quantization_config(model_args)
    if quant is not None and not training_args.bf16:
        raise GleamConfigError("recipe: load_in_4bit/load_in_8bit (QLoRA) train adapters in bfloat16: set bf16: true")
    return quant
