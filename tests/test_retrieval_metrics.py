"""retrieval metrics (ranks, R@k, R@1%, both AP flavours) and chunked top-k search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gleamx.retrieval.metrics import (
    average_precision,
    average_precision_trapezoid,
    mean_average_precision,
    percent_cutoff,
    ranks_of_positives,
    recall_at_k,
    recall_at_percent,
    retrieval_metrics,
)
from gleamx.retrieval.search import (
    faiss_topk,
    ranks_of_positives_chunked,
    similarity_chunks,
    topk_search,
)


def _ranks(ranks):
    return [list(map(int, r)) for r in ranks]


def _embeddings(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


# --- ranks -----------------------------------------------------------------------------------


def test_ranks_hand_computed():
    scores = np.array([[0.9, 0.1, 0.5, 0.3],
                       [0.2, 0.8, 0.4, 0.6]])
    ranks = ranks_of_positives(scores, [[2], 0])
    assert _ranks(ranks) == [[1], [3]]
    assert recall_at_k(ranks, ks=(1, 2, 4)) == {"R@1": 0.0, "R@2": 0.5, "R@4": 1.0}


def test_ranks_torch_input_matches_numpy():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]], dtype=np.float32)
    assert _ranks(ranks_of_positives(torch.from_numpy(scores), [[2], [0]])) == [[1], [3]]


@pytest.mark.parametrize("as_torch", [False, True])
def test_constant_scores_rank_every_positive_last(as_torch):
    scores = np.ones((3, 5), dtype=np.float32)
    if as_torch:
        scores = torch.ones(3, 5, dtype=torch.bfloat16)
    ranks = ranks_of_positives(scores, [[0], [2], [4]])
    assert _ranks(ranks) == [[4], [4], [4]]
    assert recall_at_k(ranks, ks=(1, 4, 5)) == {"R@1": 0.0, "R@4": 0.0, "R@5": 1.0}
    assert mean_average_precision(ranks) == pytest.approx(0.2)


def test_constant_scores_single_item_gallery_is_a_hit():
    ranks = ranks_of_positives(np.ones((2, 1)), [[0], [0]])
    assert _ranks(ranks) == [[0], [0]]
    assert recall_at_k(ranks, ks=(1,)) == {"R@1": 1.0}


def test_ties_with_a_negative_are_pessimistic():
    scores = np.array([[0.5, 0.5, 0.2]])
    assert _ranks(ranks_of_positives(scores, [[0]])) == [[1]]
    assert _ranks(ranks_of_positives(scores, [[1]])) == [[1]]


def test_several_positives_per_query():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5],
                       [0.9, 0.8, 0.7, 0.6, 0.5],
                       [0.5, 0.5, 0.5, 0.9, 0.1]])
    # Row 2: positives 0 and 1 tie with negative 2 and trail negative 3.
    ranks = ranks_of_positives(scores, [{0, 2}, (2, 1, 1), np.array([1, 0])])
    assert _ranks(ranks) == [[0, 2], [1, 2], [2, 3]]
    assert recall_at_k(ranks, ks=(1, 2, 3)) == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0})
    # Standard AP: mean over positives of (j + 1) / (r + 1).
    expected = [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2, (1 / 3 + 2 / 4) / 2]
    assert average_precision(ranks).tolist() == pytest.approx(expected)
    # Trapezoid AP: ranks [0, 2] -> ((1+1)/2 + (1/2+2/3)/2) / 2 = 19/24; [1, 2] -> ((0+1/2)/2 + 7/12) / 2 = 5/12;
    # [2, 3] -> ((0+1/3)/2 + (1/3+2/4)/2) / 2 = 7/24.
    assert average_precision_trapezoid(ranks).tolist() == pytest.approx([19 / 24, 5 / 12, 7 / 24])


# --- AP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rank", "standard", "trapezoid"), [(0, 1.0, 1.0), (1, 0.5, 0.25), (3, 0.25, 0.125)])
def test_single_positive_ap(rank, standard, trapezoid):
    assert average_precision([[rank]]).tolist() == pytest.approx([standard])
    assert average_precision_trapezoid([[rank]]).tolist() == pytest.approx([trapezoid])
    # Same numbers end to end: the positive (index 0) preceded by `rank` higher-scoring tiles.
    scores = np.array([[0.5] + [0.9] * rank + [0.1] * (4 - rank)])
    m = retrieval_metrics(scores, [[0]], ks=(1,))
    assert (m["mAP"], m["mAP_trapezoid"]) == pytest.approx((standard, trapezoid))


def _university1652_ap(rows_good: list[int]) -> float:
    """The University-1652 ``compute_mAP`` loop, restated for ranks of the good (positive) items."""
    ngood, ap = len(rows_good), 0.0
    for i, r in enumerate(rows_good):
        precision = (i + 1) / (r + 1)
        old_precision = i / r if r != 0 else 1.0
        ap += (1.0 / ngood) * (old_precision + precision) / 2
    return ap


def test_trapezoid_ap_matches_university1652_definition():
    rng = np.random.default_rng(0)
    ranks = [np.sort(rng.choice(40, size=rng.integers(1, 6), replace=False)) for _ in range(50)]
    assert average_precision_trapezoid(ranks).tolist() == pytest.approx([_university1652_ap(r.tolist()) for r in ranks])


# --- R@1% ------------------------------------------------------------------------------------


def test_recall_at_percent_cutoff():
    # 250 * 1 / 100 = 2.5 -> Python round (half to even) -> k = 2: ranks 0 and 1 are hits.
    out = recall_at_percent([[0], [1], [2], [3]], n_gallery=250)
    assert out == {"R@1%": 0.5, "k": 2}
    assert percent_cutoff(8884) == 89      # CVUSA gallery
    assert percent_cutoff(50) == 1         # never below 1
    assert percent_cutoff(1000, 5.0) == 50
    assert recall_at_percent([[0]], 1000, percent=5.0) == {"R@5%": 1.0, "k": 50}


def test_retrieval_metrics_dict_is_json_ready():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]])
    m = retrieval_metrics(scores, [[0], [3]], ks=(1, 5))
    assert m == pytest.approx({"n_query": 2, "n_gallery": 4, "R@1": 0.5, "R@5": 1.0, "R@1%": 0.5, "R@1%_k": 1,
                               "mAP": 0.75, "mAP_trapezoid": 0.625})
    assert json.loads(json.dumps(m)) == m
    assert all(type(v) in (int, float) for v in m.values())


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(("scores", "positives", "match"), [
    (np.ones(4), [[0]], "2-D"),
    (np.ones((2, 4)), [[0]], r"one entry per query \(2\), got 1"),
    (np.ones((2, 4)), [[0], []], r"positives\[1\]: expected at least one"),
    (np.ones((2, 4)), [[0], [4]], r"positives\[1\]: gallery index 4 out of range"),
    (np.ones((2, 4)), [[-1], [0]], r"positives\[0\]: gallery index -1 out of range"),
    (np.ones((1, 4)), [[0.5]], "integer gallery indices"),
    (np.array([[np.nan, 1.0]]), [[0]], "NaN"),
])
def test_bad_input_raises(scores, positives, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(scores, positives)


def test_bad_ranks_and_args_raise():
    with pytest.raises(ValueError, match="at least one query"):
        recall_at_k([])
    with pytest.raises(ValueError, match="sorted, distinct"):
        average_precision([[3, 1]])
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_k([[0]], ks=(0,))
    with pytest.raises(ValueError, match="ranks < n_gallery"):
        recall_at_percent([[7]], n_gallery=5)
    with pytest.raises(ValueError, match="0 < percent <= 100"):
        recall_at_percent([[0]], n_gallery=5, percent=0)
    q, g = torch.zeros(3, 4), torch.zeros(5, 8)
    with pytest.raises(ValueError, match="embedding dim 4"):
        topk_search(q, g, 2)
    with pytest.raises(ValueError, match="k: expected a positive integer"):
        topk_search(q, torch.zeros(5, 4), 0)
    with pytest.raises(ValueError, match=r"positives\[2\]: gallery index 9"):
        ranks_of_positives_chunked(q, torch.zeros(5, 4), [[0], [1], [9]], chunk_size=2)


# --- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 53, 60])
def test_topk_search_matches_full_topk(k):
    q, g = _embeddings(37, 16, seed=1), _embeddings(53, 16, seed=2)
    scores, indices = topk_search(q, g, k, chunk_size=8)
    ref_s, ref_i = torch.topk(q @ g.T, min(k, 53), dim=1)
    assert scores.shape == indices.shape == (37, min(k, 53))
    assert scores.dtype == torch.float32 and indices.dtype == torch.int64
    torch.testing.assert_close(scores, ref_s)
    assert torch.equal(indices, ref_i)


def test_topk_search_low_precision_inputs_compute_in_float32():
    q, g = _embeddings(37, 16, seed=3).bfloat16(), _embeddings(53, 16, seed=4).bfloat16()
    scores, indices = topk_search(q, g, 7, chunk_size=8)
    ref_s, _ = torch.topk(q.float() @ g.float().T, 7, dim=1)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, ref_s)
    torch.testing.assert_close(torch.gather(q.float() @ g.float().T, 1, indices), ref_s)


def test_topk_search_ties_lower_index_first():
    # Constant embeddings: every score ties, so the answer must be 0..k-1 in order.
    _, indices = topk_search(torch.ones(5, 4), torch.ones(20, 4), 6, chunk_size=3)
    assert torch.equal(indices, torch.arange(6).expand(5, 6))
    # Heavily tied integer scores: compare with a stable sort of the full matrix.
    gen = torch.Generator().manual_seed(5)
    q = torch.randint(0, 2, (37, 4), generator=gen).float()
    g = torch.randint(0, 2, (53, 4), generator=gen).float()
    ref_s, ref_i = torch.sort(q @ g.T, dim=1, descending=True, stable=True)
    for k in (1, 4, 9, 60):
        scores, indices = topk_search(q, g, k, chunk_size=8)
        assert torch.equal(indices, ref_i[:, :k]) and torch.equal(scores, ref_s[:, :k])


def test_similarity_chunks_cover_the_matrix():
    q, g = _embeddings(37, 16, seed=6), _embeddings(53, 16, seed=7)
    blocks = list(similarity_chunks(q, g, chunk_size=8))
    assert [(s, e) for s, e, _ in blocks] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 37)]
    torch.testing.assert_close(torch.cat([b for _, _, b in blocks]), q @ g.T)


@pytest.mark.parametrize("quantised", [False, True])
def test_ranks_chunked_equal_unchunked(quantised):
    q, g = _embeddings(37, 16, seed=8), _embeddings(53, 16, seed=9)
    if quantised:  # many exact ties exercise the pessimistic rule across chunks
        q, g = (q > 0).float(), (g > 0).float()
    rng = np.random.default_rng(0)
    positives = [rng.choice(53, size=rng.integers(1, 4), replace=False).tolist() for _ in range(37)]
    chunked = ranks_of_positives_chunked(q, g, positives, chunk_size=8)
    assert _ranks(chunked) == _ranks(ranks_of_positives(q @ g.T, positives))


def test_faiss_topk_matches_topk_search():
    import faiss  # noqa: F401
    q, g = _embeddings(37, 16, seed=10), _embeddings(53, 16, seed=11)
    for k in (5, 60):
        scores, indices = faiss_topk(q, g, k)
        ref_s, ref_i = topk_search(q, g, k, chunk_size=8)
        torch.testing.assert_close(scores, ref_s)
        assert torch.equal(indices, ref_i)
