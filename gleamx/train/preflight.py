"""Before a model is loaded: optional packages a recipe asks for, each a one-line error or a notice.

A recipe written for a GPU node (flash attention, a tensorboard tracker, 4-bit, DeepSpeed) must not
die minutes later, deep in a library, on a machine that lacks one of them. What has a safe stand-in
falls back with one line (``sdpa`` for flash attention, no tracker for a missing one); what has
none fails at once and names the extra that installs it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from gleamx.errors import GleamConfigError

# report_to name -> (importable module that the integration needs, how to install it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install 'gleamx[tensorboard]'"),
    "wandb": ("wandb", "pip install wandb"),
    "mlflow": ("mlflow", "pip install mlflow"),
    "comet_ml": ("comet_ml", "pip install comet_ml"),
    "trackio": ("trackio", "pip install trackio"),
    "clearml": ("clearml", "pip install clearml"),
    "neptune": ("neptune", "pip install neptune"),
    "dvclive": ("dvclive", "pip install dvclive"),
    "swanlab": ("swanlab", "pip install swanlab"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _tensorboard_ok() -> bool:
    # transformers' TensorBoardCallback takes tensorboard's writer, or tensorboardX's.
    return _installed("tensorboard") or _installed("tensorboardX")


def resolve_trackers(training_args: Any, say: Callable[[str], None]) -> None:
    """Drop each ``report_to`` tracker that is not installed, saying so and how to install it."""
    wanted = training_args.report_to
    if wanted is None or wanted == "none":
        return
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    kept = []
    for name in names:
        if name in ("none", "all"):
            kept.append(name)
            continue
        module, how = TRACKERS.get(name, (name, f"pip install {name}"))
        ok = _tensorboard_ok() if name == "tensorboard" else _installed(module)
        if ok:
            kept.append(name)
        else:
            say(f"report_to: {name} is not installed ({how}); metrics go to log_history.json only")
    training_args.report_to = kept  # [] is what TrainingArguments makes of "none"


def resolve_attention(model_args: Any, say: Callable[[str], None], *, cuda: bool | None = None) -> None:
    """``flash_attention_2/3`` without the package or a CUDA GPU: ``sdpa``, with one line saying so."""
    impl = model_args.attn_implementation
    if impl not in ("flash_attention_2", "flash_attention_3"):
        return
    import torch

    has_cuda = torch.cuda.is_available() if cuda is None else cuda
    package = "flash_attn" if impl == "flash_attention_2" else "flash_attn_interface"
    if has_cuda and _installed(package):
        return
    why = "no CUDA GPU" if not has_cuda else f"the {package} package is not installed (pip install flash-attn --no-build-isolation)"
    say(f"attn_implementation: {impl} needs a CUDA GPU and flash-attn; {why}: using sdpa")
    model_args.attn_implementation = "sdpa"


def require_deepspeed(training_args: Any) -> None:
    """A DeepSpeed launch (accelerate config or ``deepspeed:``) without the package: one line naming the extra."""
    import os

    asked = bool(getattr(training_args, "deepspeed", None)) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if asked and not _installed("deepspeed"):
        raise GleamConfigError("deepspeed: this launch uses DeepSpeed, which is not installed: pip install 'gleamx[deepspeed]'")


def resolve_workers(training_args: Any, say: Callable[[str], None]) -> None:
    """``dataloader_num_workers`` above this process's share of the cores (a GPU node's recipe on a laptop):
    that share, with one line saying so. The run signature ignores it, so a resume elsewhere is unaffected."""
    from gleamx.checks import cap_workers

    asked = training_args.dataloader_num_workers
    if asked > (capped := cap_workers(asked)):
        say(f"dataloader_num_workers: {asked} is more than the {capped} core(s) this process has; using {capped}")
        training_args.dataloader_num_workers = capped


def preflight(training_args: Any, model_args: Any, say: Callable[[str], None]) -> None:
    """Every optional-package check of a run, and what the machine can run, before data or model are loaded."""
    require_deepspeed(training_args)
    resolve_workers(training_args, say)
    resolve_trackers(training_args, say)
    resolve_attention(model_args, say)
