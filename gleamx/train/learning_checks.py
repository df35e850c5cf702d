"""Did a run learn? One-line warnings read from its log history, for the console and the model card.

A run can finish cleanly and still learn nothing: GRPO's advantages are zero in every group whose answers all got
the same reward (TRL logs the share as ``frac_reward_zero_std``), and answers cut at ``max_completion_length``
(``completions/clipped_ratio``) never reach the verdict line the rewards read; an SFT loss that does not move
means the weights did not either. Each warning says what to change.
"""

from __future__ import annotations

from typing import Any

# GRPO: the mean share of zero-spread groups above which the run mostly did not learn.
ZERO_SPREAD_SHARE = 0.5
# GRPO: the mean share of answers cut at max_completion_length above which (almost) none reached a verdict line.
CLIPPED_SHARE = 0.95
# SFT: the relative change of the logged loss (first to last) below which it "did not move".
FLAT_LOSS = 1e-3


def _series(log_history: list[dict[str, Any]], key: str) -> list[float]:
    return [float(h[key]) for h in log_history if h.get(key) is not None and "step" in h and "train_runtime" not in h]


def grpo_warnings(log_history: list[dict[str, Any]], max_completion_length: int | None = None) -> list[str]:
    """Warnings for a GRPO run whose groups mostly had no reward spread, or whose answers were all clipped."""
    out = []
    zero = _series(log_history, "frac_reward_zero_std")
    if zero and sum(zero) / len(zero) >= ZERO_SPREAD_SHARE:
        out.append(f"GRPO learned little: in {sum(zero) / len(zero):.0%} of groups every answer got the same reward "
                   "(zero advantage, no gradient); raise temperature or num_generations, start from an SFT run that "
                   "already writes verdicts, or pick rewards that tell this model's answers apart")
    clipped = _series(log_history, "completions/clipped_ratio")
    if clipped and sum(clipped) / len(clipped) >= CLIPPED_SHARE:
        limit = f" ({max_completion_length} tokens)" if max_completion_length else ""
        out.append(f"{sum(clipped) / len(clipped):.0%} of answers were cut at max_completion_length{limit} before "
                   "they ended; raise max_completion_length")
    return out


def loss_warnings(log_history: list[dict[str, Any]]) -> list[str]:
    """A warning for a run (SFT, the retrieval encoder) whose logged loss did not move, or whose gradients were all
    zero."""
    losses = _series(log_history, "loss")
    grads = _series(log_history, "grad_norm")
    if len(losses) < 2:
        return []
    first, last = losses[0], losses[-1]
    if (grads and max(grads) == 0.0) or abs(last - first) <= FLAT_LOSS * max(abs(first), 1e-12):
        return [f"the loss did not move (first {first:.4f}, last {last:.4f}): check learning_rate, that the model "
                "has trainable parameters, and that the data has answers to learn (assistant tokens)"]
    return []


def learning_warnings(log_history: list[dict[str, Any]], *, grpo: bool,
                      max_completion_length: int | None = None) -> list[str]:
    """The warnings of a finished run's log history (``grpo``: GRPO's checks, else SFT's)."""
    return grpo_warnings(log_history, max_completion_length) if grpo else loss_warnings(log_history)
