"""What a test that says a run *trains* checks: the weights moved by a real amount and gradients flowed.

A run at ``learning_rate 1e-30`` still logs losses, saves files and even changes LoRA's B matrices (by ~1e-30),
so "the file exists" or "B is non-zero" prove nothing; a change above :data:`MIN_CHANGE` does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

MIN_CHANGE = 1e-6
"""Largest absolute change a trained tensor must exceed: one AdamW step moves a weight by about the learning
rate (1e-4 .. 1e-1 in the tests' recipes), a run at 1e-30 by about 1e-30."""


def tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, as float32."""
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(path).items()}


def max_change(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]) -> float:
    """The largest absolute difference over the tensors both hold (there must be some)."""
    common = [k for k in after if k in before]
    assert common, "no tensor names in common: not the same model"
    return max((after[k].float() - before[k].float()).abs().max().item() for k in common)


def assert_moved(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], what: str = "weights") -> None:
    change = max_change(before, after)
    assert change > MIN_CHANGE, f"{what} moved by at most {change:.3g} (<= {MIN_CHANGE}): nothing was trained"


def assert_lora_trained(adapter: Path | Mapping[str, torch.Tensor]) -> None:
    """A saved LoRA adapter whose B matrices left PEFT's default initialisation (zeros) by a real amount."""
    weights = tensors(Path(adapter) / "adapter_model.safetensors") if isinstance(adapter, (str, Path)) else adapter
    b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert b, "no lora_B tensors in the adapter"
    assert_moved({k: torch.zeros_like(v) for k, v in b.items()}, b, "LoRA B matrices (zero at init)")


def assert_gradients_flowed(run: Path | list[dict]) -> None:
    """Some logged training step of ``run`` (its ``log_history.json``) has ``grad_norm > 0``."""
    history = json.loads((Path(run) / "log_history.json").read_text()) if isinstance(run, (str, Path)) else run
    norms = [h["grad_norm"] for h in history if "grad_norm" in h]
    assert norms, "no grad_norm was logged"
    assert any(n > 0 for n in norms), f"every logged grad_norm is 0 ({norms}): the loss had no gradient"


def tiny_encoder_at_start(img_size: int, seed: int) -> dict[str, torch.Tensor]:
    """The weights a retrieval run with ``encoder: tiny`` starts from (``setup_run`` seeds, then builds it)."""
    from accelerate.utils import set_seed

    from gleamx.retrieval.encoder import RetrievalEncoder

    set_seed(seed)
    return {k: v.detach().clone().float() for k, v in RetrievalEncoder.tiny(img_size).state_dict().items()}


def run_card_snippet(card: Path, workdir: Path, images: Mapping[str, Path]) -> str:
    """Run a model card's Python usage snippet as written, in ``workdir`` holding ``images`` (name -> source
    image, e.g. ``query.jpg``); returns what it printed. A snippet that does not load the run fails here."""
    import contextlib
    import io
    import os
    import re

    from PIL import Image

    match = re.search(r"```python\n(.*?)```", card.read_text(encoding="utf-8"), re.S)
    assert match, f"{card}: no python usage snippet"
    for name, source in images.items():
        Image.open(source).convert("RGB").save(workdir / name)
    printed, here = io.StringIO(), os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(match.group(1), str(card), "exec"), {"__name__": "__card__"})  # noqa: S102
    finally:
        os.chdir(here)
    return printed.getvalue()


def straight_and_resumed(train: Callable[..., Path], root: Path, step: int, *flags: str,
                         resume: str | None = None) -> tuple[Path, Path]:
    """``(straight, resumed)``: ``train(folder, *flags)`` run straight into ``root/straight``, then again into
    ``root/resumed`` from a copy of the straight run's ``checkpoint-<step>`` (the run killed there), passed as
    ``--resume_from_checkpoint`` (its path, or ``resume``, e.g. ``"true"``)."""
    straight = train(root / "straight", *flags)
    checkpoint = root / "resumed" / f"checkpoint-{step}"
    shutil.copytree(straight / checkpoint.name, checkpoint)
    return straight, train(root / "resumed", *flags, "--resume_from_checkpoint", resume or str(checkpoint))
