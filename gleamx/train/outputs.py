"""What a finished run leaves beside its weights: arguments, loss curve, model card."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from gleamx.train.learning_checks import learning_warnings
from gleamx.train.summary import kept_checkpoint, kept_text

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
        elif isinstance(v, (list, tuple)) and all(isinstance(x, dict) for x in v):  # dataset_mixture's entries
            out[k] = [_plain(x) for x in v]
        elif hasattr(v, "value"):  # enums (eval_strategy, ...)
            out[k] = v.value
    return out


def training_args_dict(training_args: Any) -> dict[str, Any]:
    d = _plain(training_args.to_dict())
    # Never write credentials into files that get uploaded.
    return {k: v for k, v in d.items() if "token" not in k.lower()}


@contextmanager
def _figure(path: Path, ylabel: str, legend_size: int | None = None) -> Iterator[Any]:
    """A 6x3.5 in axes against step; saved to ``path`` (no software tag, so reruns give the same bytes) and
    closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    yield ax
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot_loss(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training (and eval) loss against step, as a PNG."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if not train:
        return None
    with _figure(path, "loss (assistant tokens)") as ax:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4")
        evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
        if evals:
            ax.plot(*zip(*evals), "o-", label="eval loss", color="#d62728")
    return path


def write_outputs(out: Path, trainer: Any, script_args: Any, training_args: Any, model_args: Any, *,
                  n_train: int | None) -> None:
    """Arguments (YAML), log history (JSON), loss curve (PNG) and model card (README.md). ``n_train`` ``None``:
    a streamed train set, whose rows read are the steps times the total batch size."""
    from gleamx.hub.card import build_model_card

    if n_train is None:
        a = training_args
        n_train = f"{trainer.state.global_step * a.per_device_train_batch_size * a.gradient_accumulation_steps * max(1, a.world_size)} streamed"

    args = {"script": _plain(asdict(script_args)), "model": _plain(asdict(model_args)),
            "training": training_args_dict(training_args)}
    (out / ARGS_FILE).write_text(yaml.safe_dump(args, sort_keys=True, allow_unicode=True), encoding="utf-8")
    history = trainer.state.log_history
    (out / LOG_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    plot_loss(history, out / LOSS_PLOT)
    kept = kept_checkpoint(trainer)
    card = build_model_card(out, args, history, n_train=n_train, eval_results=script_args.eval_results,
                            warnings=learning_warnings(history, grpo=False), kept=kept_text(kept) if kept else None)
    card.save(out / "README.md")


REWARD_PLOT = "reward_curve.png"
KL_PLOT = "kl_curve.png"


def reward_names(log_history: list[dict[str, Any]]) -> list[str]:
    """The reward functions a GRPO log history holds (``rewards/<name>/mean``), in logged order."""
    names: list[str] = []
    for h in log_history:
        for k in h:
            if k.startswith("rewards/") and k.endswith("/mean") and k[8:-5] not in names:
                names.append(k[8:-5])
    return names


def plot_rewards(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Each reward's mean (band: +- its std) and the weighted total against step, as a PNG."""
    names = reward_names(log_history)
    if not names:
        return None
    with _figure(path, "reward (mean over answers)", legend_size=8) as ax:
        for name in names:
            rows = [(h["step"], h[f"rewards/{name}/mean"], h.get(f"rewards/{name}/std") or 0.0)
                    for h in log_history if h.get(f"rewards/{name}/mean") is not None and "step" in h]
            if not rows:
                continue
            steps, means, stds = zip(*rows)
            (line,) = ax.plot(steps, means, label=name)
            ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=line.get_color(), alpha=0.12)
        total = [(h["step"], h["reward"]) for h in log_history if h.get("reward") is not None and "step" in h]
        if total:
            ax.plot(*zip(*total), "k--", label="weighted total")
    return path


def plot_kl(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """KL to the reference policy against step (TRL logs ``kl`` only when ``beta`` > 0), as a PNG."""
    rows = [(h["step"], h["kl"]) for h in log_history if h.get("kl") is not None and "step" in h]
    if not rows:
        return None
    with _figure(path, "KL per completion token") as ax:
        ax.plot(*zip(*rows), color="#9467bd", label="KL(policy || reference)")
    return path


def write_grpo_outputs(out: Path, trainer: Any, script_args: Any, training_args: Any, model_args: Any, *,
                       n_train: int | None, parent: dict[str, Any] | None = None) -> None:
    """What :func:`write_outputs` writes for SFT, for a GRPO run: arguments (plus the SFT parent), log history
    (each reward's mean and std), loss, reward and KL curves, and a GRPO model card."""
    from gleamx.hub.card import build_grpo_model_card

    args = {"script": _plain(asdict(script_args)), "model": _plain(asdict(model_args)),
            "training": training_args_dict(training_args), "method": "grpo"}
    if parent:
        args["sft_parent"] = dict(parent)
    (out / ARGS_FILE).write_text(yaml.safe_dump(args, sort_keys=True, allow_unicode=True), encoding="utf-8")
    history = trainer.state.log_history
    (out / LOG_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    plot_loss(history, out / LOSS_PLOT)
    plot_rewards(history, out / REWARD_PLOT)
    plot_kl(history, out / KL_PLOT)
    card = build_grpo_model_card(out, args, history, n_train="streamed" if n_train is None else n_train,
                                 eval_results=script_args.eval_results,
                                 parent=parent, warnings=learning_warnings(
                                     history, grpo=True, max_completion_length=training_args.max_completion_length))
    card.save(out / "README.md")
