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
    return {name: percentile_interval(values, level) for name, values in _rates(y[idx], p[idx]).items()}


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


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, float | int]:
    """McNemar's exact test on paired right/wrong outcomes: of the ``n_discordant`` samples exactly one system got
    right, ``a_only`` went to A and ``b_only`` to B; under "equally good" each is a fair coin, so the two-sided p is
    twice the smaller binomial tail (capped at 1). Computed with integers (``math.comb``): exact at any size."""
    from math import comb

    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired outcomes need equal lengths (got {len(a_correct)} and {len(b_correct)})")
    a_only = sum(1 for x, y in zip(a_correct, b_correct) if x and not y)
    b_only = sum(1 for x, y in zip(a_correct, b_correct) if y and not x)
    n = a_only + b_only
    tail = sum(comb(n, k) for k in range(min(a_only, b_only) + 1))
    p = 1.0 if n == 0 else min(1.0, 2 * tail / 2 ** n)
    return {"a_only": a_only, "b_only": b_only, "n_discordant": n, "p_value": p}


def percentile_interval(values: np.ndarray, level: float) -> list[float] | None:
    """The central ``level`` percentile interval of the finite values (``None`` when there are none)."""
    v = values[np.isfinite(values)]
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v.size else None


def paired_bootstrap_match(
    labels: Sequence[bool], pred_a: Sequence[bool | None], pred_b: Sequence[bool | None], *, n_resamples: int = 2000,
    seed: int = 0, level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """B minus A for every match metric of :func:`_rates` (accuracy, F1, ...) on the same samples: each resample
    draws the *samples* once and scores both systems on them, so the interval is that of the difference."""
    y, pa = _encode(labels, pred_a)
    _, pb = _encode(labels, pred_b)
    if y.size == 0 or pb.size != y.size:
        raise ValueError(f"paired verdicts need equal, non-empty lists (got {y.size} and {pb.size})")
    whole_a, whole_b = _rates(y[None], pa[None]), _rates(y[None], pb[None])
    idx = np.random.default_rng(seed).integers(0, y.size, size=(n_resamples, y.size))
    res_a, res_b = _rates(y[idx], pa[idx]), _rates(y[idx], pb[idx])
    out: dict[str, dict[str, Any]] = {}
    for name in whole_a:
        a, b = float(whole_a[name][0]), float(whole_b[name][0])
        out[name] = {"a": a if np.isfinite(a) else None, "b": b if np.isfinite(b) else None,
                     "diff": float(b - a) if np.isfinite(b - a) else None,
                     "ci95": percentile_interval(res_b[name] - res_a[name], level)}
    return out


def yes_rate_bias(labels: Sequence[bool], predictions: Sequence[bool | None], *, n_resamples: int = 2000,
                  seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """How often a system says "match" against how often the pair matches: the rate of "yes" verdicts (an
    unreadable answer is not a yes), the label rate, and their difference (below 0: a lean to "no match"), with
    bootstrap intervals over samples."""
    y, p = _encode(labels, predictions)
    if y.size == 0:
        raise ValueError("no samples")
    idx = np.random.default_rng(seed).integers(0, y.size, size=(n_resamples, y.size))
    yes, lab = (p[idx] == 1).mean(1), (y[idx] == 1).mean(1)
    return {"n": int(y.size), "yes_rate": float((p == 1).mean()), "yes_rate_ci95": percentile_interval(yes, level),
            "label_rate": float(y.mean()), "bias": float((p == 1).mean() - y.mean()),
            "bias_ci95": percentile_interval(yes - lab, level)}
