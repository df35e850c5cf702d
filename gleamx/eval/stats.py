"""Bootstrap confidence intervals and calibration (ECE, AUROC, Brier, reliability bins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Encodings for vectorised bootstrap: label 1/0; prediction 1 (match), 0 (no match), -1 (invalid).


def _encode(labels: Sequence[bool], predictions: Sequence[bool | None]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray([1 if v else 0 for v in labels], dtype=np.int8)
    p = np.asarray([-1 if v is None else (1 if v else 0) for v in predictions], dtype=np.int8)
    return y, p


def _rates(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics for a batch of resamples: ``y``/``p`` have shape (B, n)."""
    pos, neg = y == 1, y == 0
    tp = ((p == 1) & pos).sum(1)
    tn = ((p == 0) & neg).sum(1)
    fp = ((p == 1) & neg).sum(1)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # As match_metrics: 2TP / (2TP + FP + FN), undefined (nan, dropped) only when the denominator is 0.
        f1 = 2 * tp / (tp + fp + n_pos)
        return {
            "accuracy": (tp + tn) / y.shape[1],
            "accuracy_positive": tp / n_pos,
            "accuracy_negative": tn / n_neg,
            "f1": f1,
            "invalid_rate": (p == -1).mean(1),
        }


def bootstrap_ci(
    labels: Sequence[bool], predictions: Sequence[bool | None], *, n_resamples: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals for accuracy (all/positives/negatives), F1 and invalid rate."""
    y, p = _encode(labels, predictions)
    if y.size == 0:
        return {}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, size=(n_resamples, y.size))
    stats = _rates(y[idx], p[idx])
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict[str, list[float] | None] = {}
    for name, values in stats.items():
        v = values[np.isfinite(values)]
        out[name] = [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v.size else None
    return out


def auroc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty_like(s)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration(labels: Sequence[bool], p_yes: Sequence[float | None], n_bins: int = 10) -> dict[str, Any] | None:
    """ECE (equal-width bins over P(yes)), AUROC, Brier score and reliability bins; samples without P(yes) are left out
    and counted."""
    pairs = [(bool(y), float(p)) for y, p in zip(labels, p_yes) if p is not None]
    if not pairs:
        return None
    y = np.asarray([a for a, _ in pairs], dtype=float)
    p = np.clip(np.asarray([b for _, b in pairs]), 0.0, 1.0)
    # Bin b is [b/n_bins, (b+1)/n_bins), the last one closed at 1. The edges are computed as the table
    # reports them: floor(p * n_bins) would put p = 0.29 in bin 28 at n_bins=100 (0.29 * 100 < 29).
    edges = np.arange(n_bins + 1) / n_bins
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    ece, table = 0.0, []
    for b in range(n_bins):
        m = bins == b
        if not m.any():
            continue
        conf, acc = float(p[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(conf - acc)
        table.append({"bin": [b / n_bins, (b + 1) / n_bins], "n": int(m.sum()), "mean_p_yes": conf, "frac_match": acc})
    return {
        "n": len(pairs),
        "n_missing": len(labels) - len(pairs),
        "ece": float(ece),
        "auroc": auroc(y.astype(bool), p),
        "brier": float(((p - y) ** 2).mean()),
        "reliability": table,
    }


def paired_bootstrap_diff(
    a: Sequence[float], b: Sequence[float], *, n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
) -> dict[str, float]:
    """Mean of ``b - a`` over paired items (the same samples scored by two systems: 1/0 correct, or any score)
    with a percentile bootstrap interval that resamples the *pairs*, so what both systems share cancels."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired values need two equal, non-empty 1-D lists (got {x.shape} and {y.shape})")
    d = y - x
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_resamples, d.size))
    means = d[idx].mean(1)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {"diff": float(d.mean()), "ci_low": float(np.percentile(means, lo)), "ci_high": float(np.percentile(means, hi)),
            "n": int(d.size)}


def mean_t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and Student-t interval of the mean over independent runs (seeds): the
    interval a reader needs when the run-to-run spread, not the test-set size, dominates. One value: no interval."""
    from scipy import stats as scipy_stats

    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"need finite values, one per run (got {list(values)})")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "sd": 0.0, "ci_low": float("nan"), "ci_high": float("nan"), "n": 1}
    sd = float(v.std(ddof=1))
    half = float(scipy_stats.t.ppf((1 + level) / 2, v.size - 1)) * sd / np.sqrt(v.size)
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": int(v.size)}
