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


@dataclass
class RunSummary:
    """A finished run in a few lines (:meth:`summary_lines`)."""

    what: str  # "SFT", "GRPO", "retrieval encoder"
    out: Path
    steps: int
    final: dict[str, float | None] = field(default_factory=dict)  # name -> last logged value
    warnings: list[str] = field(default_factory=list)
    next_command: str | None = None

    def summary_lines(self) -> list[str]:
        numbers = ", ".join(f"{k} {v:.4f}" for k, v in self.final.items() if v is not None)
        lines = [f"{self.what} run saved to {self.out} after {self.steps} step(s)" + (f"; final {numbers}" if numbers else "")]
        lines += [f"warning: {w}" for w in self.warnings]
        if self.next_command:
            lines.append(f"next: {self.next_command}")
        return lines
