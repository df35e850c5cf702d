"""Symmetric InfoNCE over a batch of (query, satellite) pairs, as in CLIP and Sample4Geo."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0
"""CLIP's clamp on exp(logit_scale): keeps the temperature from collapsing early in training."""


def info_nce(queries: torch.Tensor, satellites: torch.Tensor, logit_scale: torch.Tensor,
             label_smoothing: float = 0.1) -> torch.Tensor:
    """Mean of the query->satellite and satellite->query cross-entropies.

    Row ``i`` of ``queries`` and of ``satellites`` (both L2-normalised) is a matching pair, and every
    other satellite in the batch is a negative. So a batch must not hold two pairs of one location
    (:class:`~gleamx.retrieval.sampler.LocationBatchSampler` ensures it).
    """
    if queries.shape != satellites.shape or queries.ndim != 2:
        raise ValueError(f"expected two (batch, dim) tensors of one shape, got {tuple(queries.shape)} "
                         f"and {tuple(satellites.shape)}")
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * queries @ satellites.T
    labels = torch.arange(len(queries), device=queries.device)
    return (F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
            + F.cross_entropy(logits.T, labels, label_smoothing=label_smoothing)) / 2
