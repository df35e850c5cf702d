"""What a finished run leaves beside its weights: arguments, loss curve, model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

ARGS_FILE = "gleamx_args.yaml"
LOSS_PLOT = "loss_curve.png"
LOG_FILE = "log_history.json"


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (str, int, float, bool, type(None))):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)
        elif hasattr(v, "value"):  # enums (eval_strategy, ...)
            out[k] = v.value
    return out


def training_args_dict(training_args: Any) -> dict[str, Any]:
    d = _plain(training_args.to_dict())
    # Never write credentials into files that get uploaded.
    return {k: v for k, v in d.items() if "token" not in k.lower()}


def plot_loss(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training (and eval) loss against step, as a PNG."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(*zip(*train), label="train loss", color="#1f77b4")
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="#d62728")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def write_outputs(out: Path, trainer: Any, script_args: Any, training_args: Any, model_args: Any, *, n_train: int) -> None:
    """Arguments (YAML), log history (JSON), loss curve (PNG) and model card (README.md)."""
    from gleamx.hub.card import build_model_card

    args = {"script": _plain(asdict(script_args)), "model": _plain(asdict(model_args)),
            "training": training_args_dict(training_args)}
    (out / ARGS_FILE).write_text(yaml.safe_dump(args, sort_keys=True, allow_unicode=True), encoding="utf-8")
    history = trainer.state.log_history
    (out / LOG_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    plot_loss(history, out / LOSS_PLOT)
    card = build_model_card(out, args, history, n_train=n_train, eval_results=script_args.eval_results)
    card.save(out / "README.md")
