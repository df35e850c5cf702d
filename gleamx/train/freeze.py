"""Which parts of a Qwen-VL model train: vision tower, merger (projector), language model.

Parts are told apart by parameter name, which is stable across Qwen2-VL,
Qwen2.5-VL and Qwen3-VL in transformers 5 (``model.visual.*``,
``model.visual.merger.*``, ``model.visual.deepstack_merger_list.*``) and
survives PEFT wrapping (``base_model.model.`` prefixes, ``modules_to_save`` copies).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from gleamx.errors import GleamModelError

PARTS = ("language", "merger", "vision")


def part_of(name: str) -> str:
    """``vision``, ``merger`` or ``language`` for a parameter or module name."""
    if "visual." not in name and not name.endswith("visual"):
        return "language"
    return "merger" if (".merger" in name or "deepstack_merger" in name) else "vision"


def check_vision_model(model: nn.Module) -> None:
    if not any(part_of(n) != "language" for n, _ in model.named_parameters()):
        raise GleamModelError(
            f"model: {type(model).__name__} has no parameters under 'visual.' (expected a Qwen-VL-class model)"
        )


def apply_freezing(model: nn.Module, *, freeze_vision_tower: bool, freeze_merger: bool) -> dict[str, int]:
    """Set ``requires_grad`` per part (for full fine-tuning); returns trainable parameter counts per part."""
    check_vision_model(model)
    counts = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():
        part = part_of(name)
        if part == "vision":
            p.requires_grad_(not freeze_vision_tower)
        elif part == "merger":
            p.requires_grad_(not freeze_merger)
        counts[part] += p.numel() if p.requires_grad else 0
    return counts


def merger_module_names(model: nn.Module) -> list[str]:
    """Merger module names as PEFT ``modules_to_save`` takes them (matched as name suffixes).

    PEFT wraps single modules only, so a ``ModuleList`` of mergers (Qwen3-VL's
    ``deepstack_merger_list``) is named by its members (``deepstack_merger_list.0``, ...).
    """
    names: set[str] = set()
    for name, module in model.named_modules():
        if name.endswith(".merger"):
            names.add("merger")
        elif name.endswith(".deepstack_merger_list"):
            if isinstance(module, nn.ModuleList):
                names.update(f"deepstack_merger_list.{i}" for i in range(len(module)))
            else:
                names.add("deepstack_merger_list")
    return sorted(names)


def upcast_trainable(model: nn.Module) -> int:
    """Give every trainable half-precision parameter a float32 copy to train; returns how many.

    Outside DeepSpeed/FSDP the optimizer updates parameters in their own dtype: a bf16 merger at
    lr 1e-5 loses most updates to rounding (bf16 keeps 8 mantissa bits). Under bf16 autocast the
    float32 weights still run their matmuls in bf16, so only the updates gain precision.
    """
    import torch

    n = 0
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()
            n += 1
    return n


def trainable_counts(model: nn.Module) -> dict[str, int]:
    counts = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():
        if p.requires_grad:
            counts[part_of(name)] += getattr(p, "ds_numel", p.numel())  # ZeRO-3 shards show numel() 0
    return counts


def param_groups(
    model: nn.Module, base_lr: float, weight_decay: float, *, vision_lr: float | None, merger_lr: float | None,
    no_decay: set[str],
) -> list[dict[str, Any]]:
    """Optimizer groups: each part with its own learning rate, decay and no-decay apart."""
    lrs = {"language": base_lr, "vision": vision_lr or base_lr, "merger": merger_lr or base_lr}
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((part_of(name), name in no_decay), []).append(p)
    return [
        {"params": ps, "lr": lrs[part], "weight_decay": 0.0 if nd else weight_decay}
        for (part, nd), ps in sorted(groups.items())
    ]


class PartLearningRates:
    """Trainer mixin: ``vision_lr`` / ``merger_lr`` give the vision tower and the merger learning rates of their
    own (:func:`param_groups`); unset, the trainer builds its optimizer as it always does.

    Put it before the TRL trainer in the bases (``class T(PartLearningRates, SFTTrainer)``).
    """

    def __init__(self, *args: Any, vision_lr: float | None = None, merger_lr: float | None = None, **kwargs: Any):
        self.vision_lr, self.merger_lr = vision_lr, merger_lr
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):  # noqa: ANN001, ANN201
        if self.optimizer is None and (self.vision_lr or self.merger_lr):
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            decay = set(self.get_decay_parameter_names(self.model))
            no_decay = {n for n, _ in self.model.named_parameters()} - decay
            groups = param_groups(self.model, self.args.learning_rate, self.args.weight_decay,
                                  vision_lr=self.vision_lr, merger_lr=self.merger_lr, no_decay=no_decay)
            kwargs.pop("lr", None)
            self.optimizer = cls(groups, **kwargs)
            return self.optimizer
        return super().create_optimizer() if model is None else super().create_optimizer(model)
