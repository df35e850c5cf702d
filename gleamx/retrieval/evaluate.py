"""Score a retrieval encoder on a retrieval split, and propose top-k satellite candidates per query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gleamx.console import percent_text as pc
from gleamx.errors import GleamConfigError
from gleamx.retrieval.data import Query, RetrievalSet
from gleamx.retrieval.embed import cache_keys, embed_images
from gleamx.retrieval.embed_cache import EmbeddingCache
from gleamx.retrieval.encoder import RetrievalEncoder
from gleamx.retrieval.index import IndexOptions, SearchResult, describe, gallery_search, index_recall
from gleamx.retrieval.metrics import percent_cutoff, ranks_of_positives, summarise_ranks
from gleamx.retrieval.run_config import RetrievalEvalConfig
from gleamx.retrieval.search import rows_for_budget, similarity_chunks, topk_stable


def embed_set(encoder: RetrievalEncoder, rset: RetrievalSet, *, batch_size: int = 64, num_workers: int = 0,
              cache: EmbeddingCache | None = None, shard: bool = False,
              ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, str] | None]:
    """(query embeddings, gallery embeddings, the gallery's cache key or ``None`` without ``cache``) in the set's
    order (``cache``, ``shard``: see :func:`~gleamx.retrieval.embed.embed_images`); the key also names the gallery's
    search index (:func:`~gleamx.retrieval.index.gallery_search`)."""
    kw = dict(batch_size=batch_size, num_workers=num_workers, cache=cache, shard=shard)
    paths = [t.image for t in rset.gallery]
    key = cache_keys(encoder, paths) if cache is not None else None
    g = embed_images(encoder, paths, desc="gallery", keys=key, **kw)
    q = embed_images(encoder, [q.image for q in rset.queries], desc="queries", **kw)
    return q, g, key


def trivial_recalls(n_gallery: int, ks: tuple[int, ...] = (1, 5, 10), percent: float = 1.0,
                    ) -> tuple[list[str], list[str]]:
    """``(metric names, notes)``: the recalls that say nothing on a gallery of ``n_gallery`` tiles.

    R@k with k >= the gallery size is 100% whatever the encoder does (every tile is within the top
    k), so it is reported as null with a note; so is R@percent when its cutoff reaches the whole
    gallery. A cutoff raised to 1 (the percentage of a small gallery is under one tile) is noted.
    """
    names: list[str] = []
    notes: list[str] = []
    big = [k for k in ks if k >= n_gallery]
    if big:
        names += [f"R@{k}" for k in big]
        notes.append(f"{', '.join(f'R@{k}' for k in big)} not reported (null): the gallery has {n_gallery} tile(s), "
                     f"so every query's tile is within the top {big[0]} whatever the encoder does")
    name = f"R@{percent:g}%"
    cut = percent_cutoff(n_gallery, percent)
    if cut >= n_gallery:
        names.append(name)
        notes.append(f"{name} not reported (null): {percent:g}% of {n_gallery} tile(s) gives a cutoff of top {cut}, "
                     "the whole gallery")
    elif round(n_gallery * percent / 100) < 1:
        notes.append(f"{name} uses the top 1 (= R@1): {percent:g}% of {n_gallery} tiles is under one tile")
    return names, notes


def evaluate_retrieval(encoder: RetrievalEncoder, rset: RetrievalSet, *, batch_size: int = 64, num_workers: int = 0,
                       ks: tuple[int, ...] = (1, 5, 10), percent: float = 1.0, strict_ks: bool = False,
                       cache: EmbeddingCache | None = None, shard: bool = False,
                       index: IndexOptions | None = None) -> dict[str, Any]:
    """R@k, R@1%, mAP (standard and University-1652 trapezoid) over all queries and per query view,
    plus ``hit_rate@1`` where queries have semi-positive tiles (VIGOR).

    The whole split's satellite tiles are the gallery for every query (the one at the query's
    location is its positive); search is chunked, so a large gallery never needs the full
    similarity matrix in memory. Recalls that are 100% by construction on this gallery (k >= its
    size; see :func:`trivial_recalls`) are null, and ``notes`` says why; with ``strict_ks`` (the user
    named ``ks``) such a k is an error instead. ``cache`` and ``shard``: see
    :func:`~gleamx.retrieval.embed.embed_images`; the hit rate comes from the same pass over the similarity
    blocks as the ranks.

    The metrics are always exact (every score is computed). When ``index`` makes the gallery's search approximate
    (:meth:`~gleamx.retrieval.index.IndexOptions.method`), ``search`` also says what the index costs: its
    ``recall@k`` against the exact top-k of the same queries (taken from the same pass) and ``R@k`` through it.
    """
    n_gallery = len(rset.gallery)
    big = [k for k in ks if k >= n_gallery]
    if strict_ks and big:
        raise GleamConfigError(f"--ks: R@{big[0]} needs a gallery of more than {big[0]} tiles, and this split's "
                               f"gallery has {n_gallery} (every query's tile is within its top {n_gallery}); "
                               f"expected each k < {n_gallery}")
    nulls, notes = trivial_recalls(n_gallery, ks, percent)
    q, g, key = embed_set(encoder, rset, batch_size=batch_size, num_workers=num_workers, cache=cache, shard=shard)
    index = index or IndexOptions(index="exact")
    top = min(max(ks), n_gallery) if index.method(n_gallery) != "exact" else 0
    ranks, hits, exact_top = scan(q, g, rset, top)

    def summary(keep: list[bool]) -> dict[str, Any]:
        m: dict[str, Any] = summarise_ranks([r for r, k in zip(ranks, keep) if k], n_gallery, ks=ks,
                                            percent=percent)
        m.update({name: None for name in nulls})
        if hits is not None:
            sel = [h for h, k in zip(hits, keep) if k]
            m["hit_rate@1"] = sum(sel) / len(sel)
        return m

    out = summary([True] * len(ranks))
    out["notes"] = notes
    out["by_view"] = {view: summary([qq.view == view for qq in rset.queries]) for view in rset.views()}
    out["search"] = {"method": "exact"}
    if exact_top is not None:
        res = gallery_search(q, g, top, index, cache=cache, gallery_key=key)
        out["search"] = index_report(res, exact_top, rset, ks)
    return out


def index_report(res: SearchResult, exact_top: torch.Tensor, rset: RetrievalSet, ks: tuple[int, ...],
                 ) -> dict[str, Any]:
    """What an approximate search costs on these queries: ``recall@k`` of its top-k against the exact top-k, and
    ``R@k`` through it (the share of queries whose positive it ranks within k; exact search's is the metrics' own).
    A k the gallery cannot test (k >= its size) is left out, as its R@k is."""
    n = len(rset.gallery)
    pos = rset.positives()
    idx = res.indices.cpu()
    rep = res.describe()
    for k in (k for k in ks if k < n):
        rep[f"recall@{k}"] = index_recall(idx, exact_top, k)
    for k in (k for k in ks if k < n):  # after every recall@k: the json reads recall@1, recall@5, ..., R@1, ...
        rep[f"R@{k}"] = sum(bool(set(p) & set(row[:k])) for p, row in zip(pos, idx.tolist())) / max(1, len(pos))
    return rep


def scan(q: torch.Tensor, g: torch.Tensor, rset: RetrievalSet, top: int = 0,
         ) -> tuple[list, list[bool] | None, torch.Tensor | None]:
    """One pass over the similarity blocks: each query's positive ranks; where queries have semi-positive tiles
    (VIGOR), whether the top-1 tile is the positive or a semi-positive (its hit); with ``top``, each query's exact
    top-``top`` gallery indices (ordered as ``topk_search`` orders them), else ``None``. ``argmax`` keeps the lower
    index among equal scores, as ``topk_search`` does."""
    positives = rset.positives()
    good = ([set(p) | set(s) for p, s in zip(positives, rset.semi_positives())]
            if any(qq.semi_positives for qq in rset.queries) else None)
    ranks: list = []
    hits: list[bool] = []
    tops: list[torch.Tensor] = []
    # blocks sized by memory, not by a row count: a 50k-tile gallery would make 4096 rows a 780 MiB block
    for start, end, block in similarity_chunks(q, g, chunk_size=rows_for_budget(g.shape[0])):
        ranks.extend(ranks_of_positives(block, positives[start:end]))
        if good is not None:
            hits.extend(int(t) in ok for t, ok in zip(block.argmax(dim=1).tolist(), good[start:end]))
        if top:  # the blocks are full gallery width: their top-k is the exact top-k, at no second pass
            tops.append(topk_stable(block, top)[1].cpu())
    exact_top = (torch.cat(tops) if tops else torch.empty(0, top, dtype=torch.int64)) if top else None
    return ranks, hits if good is not None else None, exact_top


def scan_ranks(q: torch.Tensor, g: torch.Tensor, rset: RetrievalSet) -> tuple[list, list[bool] | None]:
    """Each query's positive ranks and hits (see :func:`scan`)."""
    ranks, hits, _ = scan(q, g, rset)
    return ranks, hits


@dataclass
class Candidates:
    """One query's top-k satellite tiles, best first, with cosine similarities."""

    query: Query
    gallery_indices: list[int]
    scores: list[float]


def propose_candidates(encoder: RetrievalEncoder, rset: RetrievalSet, k: int = 10, *, batch_size: int = 64,
                       num_workers: int = 0, cache: EmbeddingCache | None = None,
                       index: IndexOptions | None = None) -> list[Candidates]:
    """The retrieval encoder's job in the pipeline: the ``k`` most similar satellite tiles for every query."""
    return search_candidates(encoder, rset, k, batch_size=batch_size, num_workers=num_workers, cache=cache,
                             index=index)[0]


def search_candidates(encoder: RetrievalEncoder, rset: RetrievalSet, k: int = 10, *, batch_size: int = 64,
                      num_workers: int = 0, cache: EmbeddingCache | None = None,
                      index: IndexOptions | None = None) -> tuple[list[Candidates], SearchResult]:
    """:func:`propose_candidates`, and how they were found: exact search, or a faiss index for a big gallery
    (``index``: see :func:`~gleamx.retrieval.index.gallery_search`; it is saved beside ``cache``'s embeddings)."""
    if k < 1:
        raise GleamConfigError(f"k: expected at least 1 candidate per query, got {k}")
    if k > len(rset.gallery):
        raise GleamConfigError(f"k: expected at most the gallery's {len(rset.gallery)} tiles, got {k}")
    q, g, key = embed_set(encoder, rset, batch_size=batch_size, num_workers=num_workers, cache=cache)
    res = gallery_search(q, g, k, index, cache=cache, gallery_key=key)
    cands = [Candidates(query, i, s) for query, i, s in zip(rset.queries, res.indices.tolist(), res.scores.tolist())]
    return cands, res


def _broadcast_weights(encoder: RetrievalEncoder) -> None:
    """Rank 0's weights on every process: shards embedded by different random ``tiny`` encoders would not
    compare (a saved encoder loads the same everywhere; this costs one broadcast per tensor)."""
    import torch.distributed as dist

    for t in encoder.state_dict().values():
        if dist.get_backend() == "nccl":
            dist.broadcast(t, 0)
        else:
            cpu = t.detach().cpu()
            dist.broadcast(cpu, 0)
            t.copy_(cpu)


def search_lines(search: dict[str, Any], ks: tuple[int, ...]) -> list[str]:
    """What an approximate index cost, as ``gleamx retrieval eval`` prints it (nothing for exact search)."""
    if search.get("method", "exact") == "exact":
        return []
    how = (f"built in {search['build_seconds']:.1f} s" if search.get("built") else "loaded") + (
        f", {search['index_file']}" if search.get("index_file") else ", not saved (--embedding-cache off)")
    found = [k for k in ks if f"recall@{k}" in search]
    return [f"search: {describe(search['method'], search['params'])}, {how}",
            "  its top-k vs exact search's on these queries: "
            + "  ".join(f"recall@{k} {pc(search[f'recall@{k}'])}" for k in found)
            + "; through it " + "  ".join(f"R@{k} {pc(search[f'R@{k}'])}" for k in found)
            + " (the metrics above are exact)"]


@dataclass
class RetrievalEvalResult:
    """What :func:`run_retrieval_eval` wrote: ``results`` is ``retrieval_results.json`` in ``output``; ``is_main``:
    this process is the one that reports (the first under ``accelerate launch``)."""

    results: dict[str, Any]
    output: Path
    ks: tuple[int, ...]
    is_main: bool = True

    def as_dict(self) -> dict[str, Any]:
        return self.results

    def summary_lines(self) -> list[str]:
        """What ``gleamx retrieval eval`` prints (on the first process only): R@k, R@1%, mAP (and the hit rate
        where there are semi-positives), each view's, what an approximate index costs (:func:`search_lines`), the
        notes, and where the numbers are."""
        if not self.is_main:
            return []
        m, ks, pct = self.results, self.ks, "R@1%"
        lines = [f"{m['n_query']} queries, gallery {m['n_gallery']}: "
                 + "  ".join(f"R@{k} {pc(m[f'R@{k}'])}" for k in ks)
                 + f"  {pct} {pc(m[pct])} (top {m[pct + '_k']})  mAP {pc(m['mAP'])}"
                 + (f"  hit rate {pc(m['hit_rate@1'])}" if "hit_rate@1" in m else "")]
        lines += [f"  {view:<10} R@1 {pc(v['R@1'])}  R@{ks[-1]} {pc(v[f'R@{ks[-1]}'])}  mAP {pc(v['mAP'])}"
                  for view, v in m["by_view"].items()]
        return (lines + search_lines(m.get("search", {}), ks) + [f"note: {note}" for note in m["notes"]]
                + [f"numbers: {self.output / 'retrieval_results.json'}"])


def run_retrieval_eval(cfg: RetrievalEvalConfig) -> RetrievalEvalResult:
    """``gleamx retrieval eval``: score ``cfg.encoder`` on ``cfg.split`` and write ``retrieval_results.json``
    (the metrics plus the resolved config) into ``cfg.output``.

    Under ``accelerate launch`` with N processes the gallery and the queries are embedded in N shards (see
    :func:`~gleamx.retrieval.embed.embed_images`); the first process writes the results.
    """
    import json
    import os
    from dataclasses import asdict

    from accelerate import PartialState

    from gleamx.checks import gleamx_provenance
    from gleamx.console import console
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.embed_cache import EmbeddingCache, cache_dir
    from gleamx.retrieval.encoder import load_encoder
    from gleamx.retrieval.from_pairs import is_retrieval_layout, retrieval_root

    # accelerate launch's process group (one process without it); cpu=True on a machine without a GPU, or the
    # processes torchrun started each think they are alone
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = PartialState(cpu=use_cpu)
    say = (lambda m: console.print(m, markup=False)) if state.is_main_process else (lambda m: None)
    out = Path(cfg.output)
    with state.main_process_first():  # the first process derives a layout from pairs, the others read it
        data = (retrieval_root(cfg.data, cfg.split, out / "pairs_layout", say) if state.is_main_process else
                cfg.data if is_retrieval_layout(cfg.data) else str(out / "pairs_layout"))
    rset = load_retrieval(data, cfg.split, views=cfg.views)
    encoder = load_encoder(cfg.encoder, tiny_img_size=cfg.img_size, device=state.device)
    if state.num_processes > 1:
        _broadcast_weights(encoder)
    root = cache_dir(cfg.embedding_cache)
    ks = tuple(cfg.ks or (1, 5, 10))  # --ks named by the user: a k the gallery cannot test is an error, not a note
    metrics = evaluate_retrieval(encoder, rset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, ks=ks,
                                 strict_ks=cfg.ks is not None, cache=EmbeddingCache(root) if root else None,
                                 shard=True, index=cfg.index_options())
    results = {"encoder": cfg.encoder, "data": str(cfg.data), "split": cfg.split, **metrics,
               "n_processes": state.num_processes, "config": asdict(cfg), "gleamx": gleamx_provenance()}
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "retrieval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    state.wait_for_everyone()
    return RetrievalEvalResult(results, out, ks, state.is_main_process)
