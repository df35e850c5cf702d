"""How well each automatic explanation metric agrees with people (``gleamx eval --ratings``).

People rate the answers a model gave (:mod:`gleamx.eval.ratings`: wrong 0 < partly 1 < faithful 2); the metrics
score those same answers against the reference. For every metric with a per-sample score (sentence cosine raw and
rescaled, BERTScore, sentence BLEU, chrF, ROUGE-L, the LLM judge's criteria and mean) this reports Spearman's rho
and Kendall's tau-b against the rating, and for the judge Cohen's kappa of its yes/no call "faithful" (mean score at
least :data:`JUDGE_FAITHFUL_AT`) against the rating "faithful". Each comes with a percentile bootstrap interval
that resamples the rated answers.

A rating counts only where it rates the answer that was scored: one whose ``text`` differs from the evaluated
answer, whose id was not evaluated, of another language, or of a sample without a reference (no metric scored
it) is skipped and counted by reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gleamx.eval.ratings import RATINGS, Rating, normalized
from gleamx.eval.stats import percentile_interval

JUDGE_FAITHFUL_AT = 4.0
"""The judge's call "faithful": its mean over the criteria is at least this. Its rubric's 5 is "all correct" and 3
"partly wrong", so 4 is the midpoint between the judge's "partly" and its "faithful"."""
# Metrics in the order the tables list them; any other per-sample score follows, sorted.
METRIC_ORDER: tuple[str, ...] = ("sbert_cosine", "sbert_cosine_rescaled", "bertscore", "bertscore_rescaled", "bleu",
                                 "chrf", "rouge_l", "judge")
SKIP_REASONS: dict[str, str] = {
    "other_lang": "of another language",
    "not_evaluated": "an id this run did not evaluate",
    "text_differs": "of another answer than the one scored",
    "no_reference": "of a sample without a reference (no metric scored it)",
}
_CHUNK_CELLS = 20_000_000  # bounds the memory of one block of bootstrap resamples


# --- the statistics ---------------------------------------------------------------------------------------------


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of ``a`` with the same row of ``b`` (nan where either row is constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    # a constant row's deviations are rounding noise, not zero: call it constant by its values
    const = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    return np.where(const, np.nan, np.clip(r, -1.0, 1.0))


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair: Pearson's r of the average ranks (ties share their mean rank)."""
    from scipy.stats import rankdata

    return _pearson_rows(rankdata(x, axis=1), rankdata(y, axis=1))


def kendall_tau_b_counts(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of ``x`` and ``y`` (1-D, one value per item) in each row of ``counts`` (how often each item
    is drawn: a bootstrap resample), nan where either side has no untied pair.

    Exact and fast for a ``y`` of few levels (ratings): the items are tallied by (x group, y level), so a resample
    costs O(items x levels) instead of O(items^2) pairs. A pair of draws of the same item is tied on both sides."""
    ux, gx = np.unique(x, return_inverse=True)
    uy, gy = np.unique(y, return_inverse=True)
    kx, ky = len(ux), len(uy)
    cell = gx * ky + gy
    out = np.empty(counts.shape[0])
    step = max(1, _CHUNK_CELLS // (kx * ky))
    for start in range(0, counts.shape[0], step):
        w = counts[start:start + step].astype(float)
        t = _tally(w, cell, kx * ky).reshape(w.shape[0], kx, ky)
        below = np.cumsum(t, axis=1) - t  # weight in the same y level with a smaller x
        lower_y = np.cumsum(below, axis=2) - below  # ... and a smaller y: concordant with this cell
        higher_y = below.sum(2, keepdims=True) - lower_y - below  # ... and a larger y: discordant
        diff = (t * lower_y).sum((1, 2)) - (t * higher_y).sum((1, 2))
        n = t.sum((1, 2))
        pairs = n * (n - 1) / 2
        tied_x = (t.sum(2) * (t.sum(2) - 1) / 2).sum(1)
        tied_y = (t.sum(1) * (t.sum(1) - 1) / 2).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + step] = diff / np.sqrt((pairs - tied_x) * (pairs - tied_y))
    return np.clip(out, -1.0, 1.0)


def _tally(w: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """``t[b, c]``: the total weight ``w[b, i]`` of the items ``i`` in cell ``c``."""
    rows = w.shape[0]
    flat = (np.arange(rows)[:, None] * n_cells + cell[None, :]).ravel()
    return np.bincount(flat, weights=w.ravel(), minlength=rows * n_cells).reshape(rows, n_cells)


def cohen_kappa_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's kappa of two yes/no raters, per row: (observed - chance agreement) / (1 - chance), chance from each
    rater's own yes rate; nan where chance agreement is 1 (both always say the same one thing)."""
    a, b = a.astype(float), b.astype(float)
    observed = (a == b).mean(1)
    pa, pb = a.mean(1), b.mean(1)
    chance = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance >= 1.0, np.nan, (observed - chance) / (1 - chance))


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _resamples(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def correlation(scores: Sequence[float], levels: Sequence[int], *, n_resamples: int = 1000, seed: int = 0,
                level: float = 0.95) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau-b of ``scores`` against the rating ``levels``, with percentile bootstrap
    intervals (``n_resamples`` 0: none); ``None`` where undefined (a constant side)."""
    x, y = np.asarray(scores, dtype=float), np.asarray(levels, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores and ratings need equal 1-D lists (got {x.shape} and {y.shape})")
    out: dict[str, Any] = {"n": int(x.size), "spearman": None, "spearman_ci95": None, "kendall": None,
                           "kendall_ci95": None}
    if x.size < 2:
        return out
    out["spearman"] = _number(spearman_rows(x[None], y[None])[0])
    out["kendall"] = _number(kendall_tau_b_counts(x, y, np.ones((1, x.size)))[0])
    if n_resamples:
        idx = _resamples(x.size, n_resamples, seed)
        counts = np.zeros((n_resamples, x.size))
        np.add.at(counts, (np.arange(n_resamples)[:, None], idx), 1)
        out["spearman_ci95"] = percentile_interval(spearman_rows(x[idx], y[idx]), level)
        out["kendall_ci95"] = percentile_interval(kendall_tau_b_counts(x, y, counts), level)
    return out


def kappa(a: Sequence[bool], b: Sequence[bool], *, n_resamples: int = 1000, seed: int = 0,
          level: float = 0.95) -> dict[str, Any]:
    """Cohen's kappa of two yes/no raters with a percentile bootstrap interval, the observed agreement, and each
    rater's yes count."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"two raters need equal 1-D lists (got {x.shape} and {y.shape})")
    out: dict[str, Any] = {"n": int(x.size), "kappa": None, "kappa_ci95": None, "observed_agreement": None,
                           "n_yes_a": int(x.sum()), "n_yes_b": int(y.sum())}
    if not x.size:
        return out
    out["kappa"] = _number(cohen_kappa_rows(x[None], y[None])[0])
    out["observed_agreement"] = float((x == y).mean())
    if n_resamples:
        idx = _resamples(x.size, n_resamples, seed)
        out["kappa_ci95"] = percentile_interval(cohen_kappa_rows(x[idx], y[idx]), level)
    return out


# --- which ratings count, and the report's section ---------------------------------------------------------------


def usable_ratings(ratings: dict[tuple[str, str], Rating], predictions: dict[str, dict[str, Any]],
                   evaluated: Sequence[str], scored: set[str], lang: str) -> tuple[dict[str, Rating], dict[str, int]]:
    """``(used, skipped)``: the ratings of answers this run scored, by id, and how many were skipped for each of
    :data:`SKIP_REASONS`."""
    wanted = set(evaluated)
    used: dict[str, Rating] = {}
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for (sample_id, rated_lang), rating in ratings.items():
        if rated_lang != lang:
            skipped["other_lang"] += 1
        elif sample_id not in wanted:
            skipped["not_evaluated"] += 1
        elif rating.text is not None and normalized(rating.text) != normalized(predictions[sample_id]["prediction"]):
            skipped["text_differs"] += 1
        elif sample_id not in scored:
            skipped["no_reference"] += 1
        else:
            used[sample_id] = rating
    return used, skipped


def _metric_names(per_sample: dict[str, dict[str, Any]]) -> list[str]:
    names = {k for scores in per_sample.values() for k, v in scores.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def agreement(used: dict[str, Rating], skipped: dict[str, int], per_sample: dict[str, dict[str, Any]],
              judge: dict[str, dict[str, float]] | None, *, source: str, n_resamples: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """The ``explanation.agreement`` section of ``results.json``: per metric ``{n, spearman, spearman_ci95,
    kendall, kendall_ci95}`` over the used ratings (a metric without a score for a sample leaves it out), the
    judge's kappa, the rating counts and the skipped ones."""
    scores: dict[str, dict[str, Any]] = {i: dict(per_sample.get(i) or {}) for i in used}
    for i in used:  # the judge's criteria and mean, as judge_<criterion> and judge
        for k, v in ((judge or {}).get(i) or {}).items():
            scores[i]["judge" if k == "overall" else f"judge_{k}"] = v
    metrics = {}
    for name in _metric_names(scores):
        pairs = [(float(scores[i][name]), used[i].level) for i in used
                 if isinstance(scores[i].get(name), (int, float)) and np.isfinite(scores[i][name])]
        metrics[name] = correlation([p for p, _ in pairs], [r for _, r in pairs], n_resamples=n_resamples, seed=seed)
    judged = [i for i in used if isinstance(scores[i].get("judge"), (int, float))]
    judge_kappa = None
    if judge is not None:
        judge_kappa = {"faithful_at": JUDGE_FAITHFUL_AT,
                       **kappa([scores[i]["judge"] >= JUDGE_FAITHFUL_AT for i in judged],
                               [used[i].rating == "faithful" for i in judged], n_resamples=n_resamples, seed=seed)}
    counts = {r: sum(1 for x in used.values() if x.rating == r) for r in reversed(RATINGS)}
    return {"source": source, "n": len(used), "n_unchecked": sum(1 for x in used.values() if x.text is None),
            "counts": counts, "skipped": skipped, "n_skipped": sum(skipped.values()),
            "scale": "wrong=0 < partly=1 < faithful=2", "metrics": metrics, "judge_kappa": judge_kappa,
            "bootstrap": {"resamples": n_resamples, "seed": seed, "level": 0.95}}


def skipped_text(section: dict[str, Any]) -> str:
    """``"2 of 40 ratings skipped: 1 of another answer than the one scored, 1 ..."`` (empty when none was)."""
    if not section.get("n_skipped"):
        return ""
    total = section["n"] + section["n_skipped"]
    parts = [f"{n} {SKIP_REASONS[k]}" for k, n in section["skipped"].items() if n]
    return f"{section['n_skipped']} of {total} ratings skipped: " + ", ".join(parts)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def agreement_lines(section: dict[str, Any] | None) -> list[str]:
    """What ``gleamx eval`` prints of the section: each metric's Spearman rho, the judge's kappa, the skipped
    ratings (the intervals are in the reports)."""
    if not section:
        return []
    counts = ", ".join(f"{n} {r}" for r, n in section["counts"].items())
    rhos = ", ".join(f"{m} {_fmt(v['spearman'])}" for m, v in section["metrics"].items())
    kappa_text = ""
    if section.get("judge_kappa"):
        kappa_text = f"; judge kappa {_fmt(section['judge_kappa']['kappa'])}"
    lines = [f"agreement with {section['n']} people's ratings ({counts}): Spearman {rhos or '-'}{kappa_text}"]
    skipped = skipped_text(section)
    return lines + ([f"note: {skipped}"] if skipped else [])


__all__ = ["JUDGE_FAITHFUL_AT", "SKIP_REASONS", "agreement", "agreement_lines", "cohen_kappa_rows", "correlation",
           "kendall_tau_b_counts", "kappa", "skipped_text", "spearman_rows", "usable_ratings"]
