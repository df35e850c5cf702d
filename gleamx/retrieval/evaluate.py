"""Score a GLEAM-C encoder on a retrieval split, and propose top-k satellite candidates per query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gleamx.retrieval.data import Query, RetrievalSet
from gleamx.retrieval.embed import embed_images
from gleamx.retrieval.encoder import GleamCEncoder
from gleamx.retrieval.metrics import summarise_ranks
from gleamx.retrieval.search import ranks_of_positives_chunked, topk_search


def embed_set(encoder: GleamCEncoder, rset: RetrievalSet, *, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(query embeddings, gallery embeddings) in the set's order."""
    g = embed_images(encoder, [t.image for t in rset.gallery], batch_size=batch_size, desc="gallery")
    q = embed_images(encoder, [q.image for q in rset.queries], batch_size=batch_size, desc="queries")
    return q, g


def evaluate_retrieval(encoder: GleamCEncoder, rset: RetrievalSet, *, batch_size: int = 64,
                       ks: tuple[int, ...] = (1, 5, 10), percent: float = 1.0) -> dict[str, Any]:
    """R@k, R@1%, mAP (standard and University-1652 trapezoid) over all queries and per query view.

    The whole split's satellite tiles are the gallery for every query (the one at the query's
    location is its positive); search is chunked, so a large gallery never needs the full
    similarity matrix in memory.
    """
    q, g = embed_set(encoder, rset, batch_size=batch_size)
    ranks = ranks_of_positives_chunked(q, g, rset.positives())
    out: dict[str, Any] = summarise_ranks(ranks, len(rset.gallery), ks=ks, percent=percent)
    out["by_view"] = {
        view: summarise_ranks([r for r, qq in zip(ranks, rset.queries) if qq.view == view], len(rset.gallery),
                              ks=ks, percent=percent)
        for view in rset.views()
    }
    return out


@dataclass
class Candidates:
    """One query's top-k satellite tiles, best first, with cosine similarities."""

    query: Query
    gallery_indices: list[int]
    scores: list[float]


def propose_candidates(encoder: GleamCEncoder, rset: RetrievalSet, k: int = 10, *,
                       batch_size: int = 64) -> list[Candidates]:
    """GLEAM-C's job in the pipeline: the ``k`` most similar satellite tiles for every query."""
    q, g = embed_set(encoder, rset, batch_size=batch_size)
    scores, idx = topk_search(q, g, k)
    return [Candidates(query, i, s) for query, i, s in zip(rset.queries, idx.tolist(), scores.tolist())]
