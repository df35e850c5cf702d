"""Match metrics over parsed verdicts.

Unparseable outputs (``None``) are counted as invalid and as wrong, never
mapped to "no": the untuned base model is biased toward "not the same place",
so accuracy is also reported on positives and negatives separately.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def _safe_div(a: float, b: float) -> float | None:
    return a / b if b else None


def match_metrics(labels: Sequence[bool], predictions: Sequence[bool | None]) -> dict[str, Any]:
    """Accuracy (overall, positives, negatives), precision/recall/F1 of "match", invalid rate, confusion."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    tp = fn = fp = tn = inv_pos = inv_neg = 0
    for y, p in zip(labels, predictions):
        if p is None:
            inv_pos += y
            inv_neg += not y
        elif y:
            tp += p
            fn += not p
        else:
            fp += p
            tn += not p
    n = len(labels)
    n_pos, n_neg = tp + fn + inv_pos, fp + tn + inv_neg
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, n_pos)  # an invalid answer on a positive is a miss
    # F1 = 2TP / (2TP + FP + FN), the harmonic mean of precision and recall where both exist. It is 0,
    # not undefined, for a model that never says "match" on data with positives (as in scikit-learn);
    # only with no positives and no false alarms is it undefined.
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn + inv_pos)
    return {
        "n": n,
        "n_positive": n_pos,
        "n_negative": n_neg,
        "accuracy": _safe_div(tp + tn, n),
        "accuracy_positive": _safe_div(tp, n_pos),
        "accuracy_negative": _safe_div(tn, n_neg),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "invalid_rate": _safe_div(inv_pos + inv_neg, n),
        "confusion": {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "invalid_positive": inv_pos, "invalid_negative": inv_neg},
    }


def grouped_match_metrics(
    groups: Sequence[str], labels: Sequence[bool], predictions: Sequence[bool | None]
) -> dict[str, dict[str, Any]]:
    """:func:`match_metrics` per group (query view, source, ...), groups sorted by name."""
    idx: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        idx[g].append(i)
    return {
        g: match_metrics([labels[i] for i in ids], [predictions[i] for i in ids]) for g, ids in sorted(idx.items())
    }
