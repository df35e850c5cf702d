"""Top-k search over L2-normalised embeddings without the full similarity matrix.

A VIGOR-size evaluation (~52k queries x ~91k tiles) would need ~19 GB for the
float32 score matrix; these helpers work block by block instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np
import torch

from .metrics import Positives, _positive_indices, ranks_of_positives


def check_pair(queries: torch.Tensor, gallery: torch.Tensor) -> None:
    for name, t in (("queries", queries), ("gallery", gallery)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D (n, d) tensor, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name}: expected floating-point embeddings, got {t.dtype}")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"gallery: expected embedding dim {queries.shape[1]} (as queries), got {gallery.shape[1]}")
    if queries.device != gallery.device:
        raise ValueError(f"gallery: expected device {queries.device} (as queries), got {gallery.device}")


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _topk_stable_slow(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk_stable` for rows where ties straddle the k-th place (rare with float embeddings)."""
    kth = torch.topk(block, k, dim=1).values[:, -1:]
    above = block > kth
    tied = block == kth
    need = k - above.sum(dim=1, keepdim=True)
    keep = above | (tied & (torch.cumsum(tied, dim=1, dtype=torch.int32) <= need))
    # Exactly k kept per row; nonzero() is row-major, so columns ascend within each row.
    cols = keep.nonzero()[:, 1].view(-1, k)
    return block.gather(1, cols), cols


def topk_stable(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-k, descending, lower column first among equal scores.

    ``torch.topk`` picks an arbitrary subset of the values tied at the k-th place. Its choice is
    kept where no tie straddles that place, which holds exactly when the (k+1)-th largest value
    is below the k-th (so top-(k+1) tells, at the cost of top-k); only the other rows take the
    slower exact path, which keeps the leftmost tied columns.
    """
    if k + 1 >= block.shape[1]:
        vals, cols = torch.sort(block, dim=1, descending=True, stable=True)
        if torch.isnan(vals[:, :1]).any():
            raise ValueError("embeddings: expected finite similarities, found NaN")
        return vals, cols
    vals, cols = torch.topk(block, k + 1, dim=1)
    # topk ranks NaN above every number, so a NaN anywhere in a row shows up among its top k.
    if torch.isnan(vals).any():
        raise ValueError("embeddings: expected finite similarities, found NaN")
    straddle = vals[:, k] == vals[:, k - 1]
    vals, cols = vals[:, :k].contiguous(), cols[:, :k].contiguous()
    if straddle.any():
        rows = straddle.nonzero()[:, 0]
        vals[rows], cols[rows] = _topk_stable_slow(block[rows], k)
    # Order the k by score, lower column first among equals: sort by column, then stably by score.
    by_col = torch.sort(cols, dim=1).indices
    vals, cols = vals.gather(1, by_col), cols.gather(1, by_col)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)


@torch.no_grad()
def topk_search(queries: torch.Tensor, gallery: torch.Tensor, k: int,
                chunk_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k gallery items per query by inner product (cosine for L2-normalised inputs).

    Returns float32 ``scores`` and int64 ``indices`` of shape
    (n_query, min(k, n_gallery)), best first, on the inputs' device; equal
    scores list the lower gallery index first. Queries and gallery are both
    processed in ``chunk_size`` blocks (computed in float32) and partial
    results merged, so peak memory is O(chunk_size^2), not O(n_query x n_gallery).
    """
    check_pair(queries, gallery)
    check_positive_int("k", k)
    check_positive_int("chunk_size", chunk_size)
    n_q, n_g = queries.shape[0], gallery.shape[0]
    k_eff = min(k, n_g)
    device = queries.device
    scores = torch.empty((n_q, k_eff), dtype=torch.float32, device=device)
    indices = torch.empty((n_q, k_eff), dtype=torch.int64, device=device)
    if n_q == 0 or k_eff == 0:
        return scores, indices
    for qs in range(0, n_q, chunk_size):
        q = queries[qs:qs + chunk_size].float()
        best_s = q.new_empty((q.shape[0], 0))
        best_i = torch.empty((q.shape[0], 0), dtype=torch.int64, device=device)
        for gs in range(0, n_g, chunk_size):
            s, i = topk_stable(q @ gallery[gs:gs + chunk_size].float().T, k_eff)
            # Earlier chunks hold lower gallery indices and come first, so a
            # stable sort keeps the lower-index-first order among ties.
            cand_s = torch.cat([best_s, s], dim=1)
            cand_i = torch.cat([best_i, i + gs], dim=1)
            order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k_eff]
            best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
        scores[qs:qs + q.shape[0]] = best_s
        indices[qs:qs + q.shape[0]] = best_i
    return scores, indices


BLOCK_MIB = 64
"""Memory of one float32 score block of :func:`similarity_chunks` when its rows are sized by
:func:`rows_for_budget`: a VIGOR-size gallery (~91k tiles) then takes ~180 queries per block."""


def rows_for_budget(n_gallery: int, mib: float = BLOCK_MIB, most: int = 4096) -> int:
    """Query rows per full-width float32 score block so that one block stays within ``mib`` MiB (at least 1,
    at most ``most``)."""
    return max(1, min(most, int(mib * 2**20 // (4 * max(1, n_gallery)))))


@torch.no_grad()
def similarity_chunks(queries: torch.Tensor, gallery: torch.Tensor,
                      chunk_size: int = 4096) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(start, end, scores)`` with float32 ``scores = queries[start:end] @ gallery.T``.

    For metrics that need every score of a query (ranks, AP). Each block is
    full gallery width: chunk_size x n_gallery x 4 bytes (4096 x 90k tiles is
    ~1.5 GB), so lower ``chunk_size`` for big galleries; the whole matrix is
    never held unless the caller keeps the blocks.
    """
    check_pair(queries, gallery)
    check_positive_int("chunk_size", chunk_size)
    g = gallery.float()  # cast once, not per block
    for start in range(0, queries.shape[0], chunk_size):
        end = min(start + chunk_size, queries.shape[0])
        yield start, end, queries[start:end].float() @ g.T


def ranks_of_positives_chunked(queries: torch.Tensor, gallery: torch.Tensor, positives: Positives,
                               chunk_size: int = 4096) -> list[np.ndarray]:
    """:func:`~gleamx.retrieval.metrics.ranks_of_positives` of ``queries @ gallery.T``, one query chunk at a time."""
    check_pair(queries, gallery)
    # Validate up front so an error names the global query index, not one within a chunk.
    pos = _positive_indices(positives, queries.shape[0], gallery.shape[0])
    ranks: list[np.ndarray] = []
    for start, end, block in similarity_chunks(queries, gallery, chunk_size):
        ranks.extend(ranks_of_positives(block, pos[start:end]))
    return ranks


def faiss_topk(queries: torch.Tensor, gallery: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk_search` via an exact ``faiss.IndexFlatIP`` on CPU (results on the queries' device)."""
    try:
        import faiss
    except ImportError:
        raise ImportError("faiss_topk needs faiss: pip install 'gleamx[retrieval]'") from None
    check_pair(queries, gallery)
    check_positive_int("k", k)
    n_q, d = queries.shape
    k_eff = min(k, gallery.shape[0])
    if n_q == 0 or k_eff == 0:
        return (torch.empty((n_q, k_eff), dtype=torch.float32, device=queries.device),
                torch.empty((n_q, k_eff), dtype=torch.int64, device=queries.device))

    def to_np(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().float().cpu().numpy())

    index = faiss.IndexFlatIP(d)
    index.add(to_np(gallery))
    scores, indices = index.search(to_np(queries), k_eff)
    return (torch.from_numpy(scores).to(queries.device),
            torch.from_numpy(indices.astype(np.int64)).to(queries.device))
