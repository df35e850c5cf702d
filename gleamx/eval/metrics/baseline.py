"""Shuffled-pair baselines: rescale an embedding score so that chance lands at 0 and a copy at 1.

Embedding similarities have no floor: with multilingual-e5-small, random characters score ~0.8 cosine
against a reference and "I am not sure." ~0.76, so a raw mean says little until it is compared with what
the same predictions score against references they do not belong to. In the spirit of BERTScore's
baseline rescaling, but measured on the evaluated data itself:

* baseline ``b_i`` of sample ``i``: the mean similarity of prediction ``i`` to the references of the
  *other* samples (all of them for cosine, where it is exact and cheap; a few cyclic shifts for
  BERTScore, where each pair costs a greedy token match);
* rescaled ``r_i = (s_i - b_i) / (1 - b_i)``: 1 for a copy of the reference, about 0 for an answer no
  closer to its own reference than to anyone else's (a refusal, garbage, a generic text), negative
  when it is further (reported as is, never clipped);
* the run's ``<metric>_baseline`` is the mean ``b_i`` and ``<metric>_rescaled`` the mean ``r_i``.

A per-sample baseline (rather than one constant) keeps a refusal at 0 in a run whose other answers are
good: each prediction is compared with its own chance level, which depends on its length and style.
With fewer than two samples there are no other references: baselines and rescaled scores are ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_SAMPLES = 2
UNDEFINED_NOTE = ("rescaled scores need at least 2 samples (a baseline compares each answer with other samples' "
                  "references)")


def cosine_baselines(pred_emb: np.ndarray, ref_emb: np.ndarray, zero: np.ndarray | None = None) -> np.ndarray | None:
    """``b_i`` = mean cosine of prediction i with every reference j != i (exact, O(n) from the sum of unit vectors).

    Rows flagged in ``zero`` (empty predictions, scored 0 against their own reference) get 0 here too.
    ``None`` for fewer than :data:`MIN_SAMPLES` rows.
    """
    n = len(pred_emb)
    if n < MIN_SAMPLES:
        return None
    p = unit(pred_emb)
    r = unit(ref_emb)
    own = (p * r).sum(axis=1)
    b = (p @ r.sum(axis=0) - own) / (n - 1)
    if zero is not None:
        b[np.asarray(zero, dtype=bool)] = 0.0
    return b


def cyclic_shifts(n: int, k_max: int) -> list[int]:
    """The derangements ``j = (i + s) mod n`` used for pairwise-expensive metrics: s = 1..min(n-1, k_max)."""
    return list(range(1, min(n - 1, k_max) + 1))


def rescaled(scores: Sequence[float], baselines: Sequence[float] | None) -> list[float | None]:
    """Per-sample ``(s_i - b_i) / (1 - b_i)``; ``None`` where there is no baseline or ``b_i`` is 1."""
    if baselines is None:
        return [None] * len(scores)
    return [None if 1.0 - b <= 1e-9 else float((s - b) / (1.0 - b)) for s, b in zip(scores, baselines)]


def summary(name: str, scores: Sequence[float], baselines: Sequence[float] | None) -> dict:
    """``{name, name_baseline, name_rescaled}`` means, plus the per-sample rescaled scores under ``rescaled_scores``."""
    per = rescaled(scores, baselines)
    defined = [x for x in per if x is not None]
    out = {
        name: float(np.mean(scores)),
        f"{name}_baseline": None if baselines is None else float(np.mean(baselines)),
        f"{name}_rescaled": float(np.mean(defined)) if defined else None,
        "rescaled_scores": per,
    }
    if baselines is None:
        out["rescale_note"] = UNDEFINED_NOTE
    elif len(defined) < len(per):
        out["rescale_note"] = (f"{len(per) - len(defined)} of {len(per)} answers have baseline 1 (as similar to "
                               "every other reference as can be) and are left out of the rescaled mean")
    return out


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
