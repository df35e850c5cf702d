"""What a finished training run says last: where it saved, how far it got, its final numbers, any warning that it
did not learn, and the command to run next. SFT, GRPO and the retrieval encoder all end with these lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def last_logged(log_history: list[dict[str, Any]], key: str) -> float | None:
    """The last value of ``key`` in a log history (``None``: never logged)."""
    values = [h[key] for h in log_history if isinstance(h.get(key), (int, float))]
    return float(values[-1]) if values else None


def kept_checkpoint(trainer: Any) -> dict[str, Any] | None:
    """The checkpoint whose weights the run saved when ``load_best_model_at_end`` reloaded its best evaluation:
    ``{"checkpoint", "step", "metric", "value"}``; ``None`` when the run saved its last step's weights."""
    args, state = trainer.args, trainer.state
    if not args.load_best_model_at_end or state.best_model_checkpoint is None:
        return None
    metric = args.metric_for_best_model or "loss"  # transformers' own default with load_best_model_at_end
    return {"checkpoint": Path(state.best_model_checkpoint).name, "step": state.best_global_step,
            "metric": metric if metric.startswith("eval_") else f"eval_{metric}", "value": state.best_metric}


def kept_text(kept: dict[str, Any]) -> str:
    """``kept_checkpoint`` in words, for the last lines and the model card."""
    value = kept["value"]
    score = f"{value:.4f}" if isinstance(value, (int, float)) else value
    return f"{kept['checkpoint']}, the best evaluation by {kept['metric']} ({score}), reloaded at the end"


@dataclass
class RunSummary:
    """A finished run in a few lines (:meth:`summary_lines`)."""

    what: str  # "SFT", "GRPO", "retrieval encoder"
    out: Path
    steps: int
    final: dict[str, float | None] = field(default_factory=dict)  # name -> last logged value
    warnings: list[str] = field(default_factory=list)
    next_command: str | None = None
    kept: dict[str, Any] | None = None  # kept_checkpoint: the checkpoint whose weights were saved

    def summary_lines(self) -> list[str]:
        numbers = ", ".join(f"{k} {v:.4f}" for k, v in self.final.items() if v is not None)
        lines = [f"{self.what} run saved to {self.out} after {self.steps} step(s)" + (f"; final {numbers}" if numbers else "")]
        if self.kept:
            lines.append(f"weights: {kept_text(self.kept)}")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.next_command:
            lines.append(f"next: {self.next_command}")
        return lines
