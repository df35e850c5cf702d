"""Retrieval metrics for the retrieval encoder: ranks of the true satellite tiles, R@k, R@1%, mAP.

Every metric is computed from *ranks*: for each query, the sorted 0-based
positions of its positive gallery tiles in descending-score order. Computing
ranks once and deriving all metrics from them keeps the metrics consistent with
each other and lets a chunked search (``search.ranks_of_positives_chunked``)
feed the same functions.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Sequence
from typing import Union

import numpy as np
import torch

Scores = Union[np.ndarray, torch.Tensor]
Positives = Sequence[Union[Collection[int], int, np.ndarray, torch.Tensor]]
Ranks = Sequence[Union[np.ndarray, Sequence[int]]]


def _scores_array(scores: Scores) -> np.ndarray:
    """``scores`` as a 2-D numpy array; torch half types are widened because numpy lacks bf16."""
    if isinstance(scores, torch.Tensor):
        t = scores.detach()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        arr = t.cpu().numpy()
    else:
        arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"scores: expected a 2-D (n_query, n_gallery) array, got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"scores: expected a numeric array, got dtype {arr.dtype}")
    # NaN compares false with everything, which would silently rank a positive first.
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError("scores: expected finite similarities, found NaN (degenerate or unnormalised embeddings?)")
    return arr


def _positive_indices(positives: Positives, n_query: int, n_gallery: int) -> list[np.ndarray]:
    """Validate ``positives`` and return, per query, its unique gallery indices as int64."""
    if isinstance(positives, (str, bytes)) or not isinstance(positives, Sequence):
        raise ValueError(f"positives: expected a sequence with one entry per query, got {type(positives).__name__}")
    if len(positives) != n_query:
        raise ValueError(f"positives: expected one entry per query ({n_query}), got {len(positives)}")
    out = []
    for i, p in enumerate(positives):
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, numbers.Integral) and not isinstance(p, bool):
            idx = np.asarray([int(p)], dtype=np.int64)
        else:
            raw = np.asarray(p if isinstance(p, np.ndarray) else list(p)).ravel()
            if raw.size and (raw.dtype.kind not in "iu"):
                raise ValueError(f"positives[{i}]: expected integer gallery indices, got dtype {raw.dtype}")
            idx = np.unique(raw.astype(np.int64))
        if idx.size == 0:
            raise ValueError(f"positives[{i}]: expected at least one gallery index, got none")
        if idx[0] < 0 or idx[-1] >= n_gallery:
            bad = int(idx[0] if idx[0] < 0 else idx[-1])
            raise ValueError(f"positives[{i}]: gallery index {bad} out of range; expected 0 <= index < {n_gallery}")
        out.append(idx)
    return out


def ranks_of_positives(scores: Scores, positives: Positives) -> list[np.ndarray]:
    """Per query, the sorted 0-based ranks of its positives in descending-score order.

    ``scores`` is (n_query, n_gallery), higher = more similar (numpy or torch);
    ``positives[i]`` holds query i's positive gallery indices (an int or a
    collection; duplicates are ignored).

    Ties are broken pessimistically: a positive tied with a negative is ranked
    after it (ties among positives do not matter; they fill consecutive
    ranks). Optimistic tie-breaking would give a constant score matrix, i.e.
    collapsed embeddings, perfect recall.
    """
    arr = _scores_array(scores)
    n_query, n_gallery = arr.shape
    pos = _positive_indices(positives, n_query, n_gallery)
    out = []
    for row, idx in zip(arr, pos):
        p = np.sort(row[idx])[::-1]
        # The j-th best positive sits behind every negative scoring >= it (pessimistic)
        # and behind the j positives before it: rank = #neg(>= s_j) + j.
        ge_all = (row[None, :] >= p[:, None]).sum(axis=1)
        ge_pos = (p[None, :] >= p[:, None]).sum(axis=1)
        out.append((ge_all - ge_pos + np.arange(p.size)).astype(np.int64))
    return out


def _rank_arrays(ranks: Ranks) -> list[np.ndarray]:
    """Validate ``ranks``: non-empty, one non-empty strictly increasing run of ranks >= 0 per query."""
    if len(ranks) == 0:
        raise ValueError("ranks: expected at least one query, got none")
    out = []
    for i, r in enumerate(ranks):
        a = np.asarray(r, dtype=np.int64).ravel()
        if a.size == 0:
            raise ValueError(f"ranks[{i}]: expected at least one positive rank, got none")
        if a[0] < 0 or (a.size > 1 and np.any(np.diff(a) <= 0)):
            raise ValueError(f"ranks[{i}]: expected sorted, distinct ranks >= 0, got {a.tolist()}")
        out.append(a)
    return out


def _best_ranks(ranks: Ranks) -> np.ndarray:
    return np.asarray([a[0] for a in _rank_arrays(ranks)], dtype=np.int64)


def recall_at_k(ranks: Ranks, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``{"R@k": fraction}``: a query is a hit at k if its best positive has rank < k."""
    best = _best_ranks(ranks)
    out = {}
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"ks: expected positive integers, got {k!r}")
        out[f"R@{int(k)}"] = float(np.mean(best < k))
    return out


def percent_cutoff(n_gallery: int, percent: float = 1.0) -> int:
    """The R@percent cutoff ``k = max(1, round(n_gallery * percent / 100))`` (Python ``round``)."""
    if isinstance(n_gallery, bool) or not isinstance(n_gallery, numbers.Integral) or n_gallery < 1:
        raise ValueError(f"n_gallery: expected a positive integer, got {n_gallery!r}")
    if not 0 < percent <= 100:
        raise ValueError(f"percent: expected 0 < percent <= 100, got {percent!r}")
    return max(1, round(n_gallery * percent / 100))


def recall_at_percent(ranks: Ranks, n_gallery: int, percent: float = 1.0) -> dict[str, float | int]:
    """R@1% (by default): the fraction of queries whose best positive has rank < k.

    Cutoff: ``k = max(1, round(n_gallery * percent / 100))`` with Python's
    ``round`` (half to even), e.g. 250 tiles at 1% -> 2.5 -> k = 2; 8884
    (CVUSA) -> k = 89. Public repositories differ by one here (``int()`` vs
    ``round()``, and ``rank < k`` vs ``rank <= k``), so the cutoff is returned
    too: ``{"R@1%": value, "k": k}`` (the key follows ``percent``).
    """
    k = percent_cutoff(n_gallery, percent)
    best = _best_ranks(ranks)
    if best.max() >= n_gallery:
        raise ValueError(f"ranks: expected ranks < n_gallery ({n_gallery}), got {int(best.max())}")
    return {f"R@{percent:g}%": float(np.mean(best < k)), "k": int(k)}


def average_precision(ranks: Ranks) -> np.ndarray:
    """Standard AP per query: mean over positives of precision at each positive.

    The j-th positive (0-based) at rank r has precision (j + 1) / (r + 1). A
    single positive at rank r scores 1 / (r + 1): rank 0 -> 1.0, 1 -> 0.5, 3 -> 0.25.
    """
    return np.asarray([np.mean((np.arange(a.size) + 1) / (a + 1)) for a in _rank_arrays(ranks)])


def average_precision_trapezoid(ranks: Ranks) -> np.ndarray:
    """University-1652 / Sample4Geo re-identification AP per query (trapezoid rule over recall).

    For the j-th positive (0-based) at rank r: ``old = j / r`` if r > 0 else
    1.0, ``new = (j + 1) / (r + 1)``, and AP adds ``(old + new) / 2 / n_pos``.
    Because ``old = 0`` for the first positive when r > 0, a single positive at
    rank r > 0 scores ``1 / (2 (r + 1))``, half the standard AP: rank 0 -> 1.0,
    rank 1 -> (0 + 0.5) / 2 = 0.25, rank 3 -> (0 + 0.25) / 2 = 0.125. Reported
    separately so numbers stay comparable with papers that use it.
    """
    out = []
    for a in _rank_arrays(ranks):
        j = np.arange(a.size, dtype=np.float64)
        old = np.divide(j, a, out=np.ones_like(j), where=a > 0)
        new = (j + 1) / (a + 1)
        out.append(float(np.mean((old + new) / 2)))
    return np.asarray(out)


def mean_average_precision(ranks: Ranks) -> float:
    """Mean over queries of :func:`average_precision`."""
    return float(np.mean(average_precision(ranks)))


def retrieval_metrics(scores: Scores, positives: Positives, ks: Sequence[int] = (1, 5, 10),
                      percent: float = 1.0) -> dict[str, float | int]:
    """All retrieval metrics as one JSON-serialisable dict.

    Keys: ``n_query``, ``n_gallery``, ``R@k`` for each k, ``R@1%`` and its
    cutoff ``R@1%_k`` (named after ``percent``), ``mAP`` (standard) and
    ``mAP_trapezoid`` (University-1652 style).
    """
    arr = _scores_array(scores)
    ranks = ranks_of_positives(arr, positives)
    return summarise_ranks(ranks, arr.shape[1], ks=ks, percent=percent)


def summarise_ranks(ranks: Ranks, n_gallery: int, ks: Sequence[int] = (1, 5, 10),
                    percent: float = 1.0) -> dict[str, float | int]:
    """:func:`retrieval_metrics` from precomputed ranks (e.g. from a chunked search)."""
    pct = recall_at_percent(ranks, n_gallery, percent)
    name = f"R@{percent:g}%"
    return {
        "n_query": len(ranks),
        "n_gallery": int(n_gallery),
        **recall_at_k(ranks, ks),
        name: pct[name],
        f"{name}_k": pct["k"],
        "mAP": mean_average_precision(ranks),
        "mAP_trapezoid": float(np.mean(average_precision_trapezoid(ranks))),
    }

