"""Top-k search over a gallery of any size: exact, or through an approximate faiss index (IVF-PQ or HNSW).

:func:`gallery_search` is the one function search callers use (``gleamx retrieval eval``, ``gleamx localize``).
By default every gallery is searched exactly (:func:`~gleamx.retrieval.search.topk_search`); ``index: hnsw`` or
``ivfpq`` asks for an approximate index, and ``index: auto`` for exact search below ``index_threshold`` tiles and an
HNSW index from there. The index is built once and
saved beside the embedding cache, under the gallery's embedding-cache key (encoder and image list) plus the index
type and its build parameters, so a second search loads it; a changed gallery or build parameter is another file.
Search-time parameters (``nprobe``, ``ef_search``, ``pq_rerank``) are set on the loaded index and are no part of
the key.

The candidates an index returns are re-scored exactly against the gallery embeddings (which every caller holds
anyway): scores are true cosines, ordered as ``topk_search`` orders them, and IVF-PQ can fetch ``pq_rerank`` times
k candidates to make up for its compressed codes without storing the raw vectors a second time (as faiss's
``IndexRefineFlat`` would, in the index file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch

from gleamx.checks import COUNT_MAX, check_choice, check_ranges, field_help
from gleamx.errors import GleamConfigError
from gleamx.retrieval.search import check_pair, check_positive_int, topk_search

if TYPE_CHECKING:
    from gleamx.retrieval.embed_cache import EmbeddingCache

IndexKind = Literal["auto", "exact", "ivfpq", "hnsw"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)
INDEX_THRESHOLD = 100_000
AUTO_INDEX = "hnsw"  # what `auto` builds past the threshold: the best recall per query time; ivfpq when memory is short
SUFFIX = ".faiss"
_INSTALL = "pip install 'gleamx[retrieval]'"


@dataclass(kw_only=True)
class IndexOptions:
    """How a gallery is searched (``gleamx retrieval eval`` and ``gleamx localize`` take these as options)."""

    # exact by default: on the benchmark's random 512-d galleries (bench_retrieval_scale.py --index) both indexes
    # at their defaults found under a third of the true top-10 past 10^4 tiles, and exact search of 10^6 tiles
    # took 14 s per 1,000 queries; an index is a choice to make after retrieval eval's search.recall@k on one's
    # own embeddings
    index: IndexKind = field(default="exact", metadata={
        "help": f"gallery search: exact (chunked, every score; the default), ivfpq or hnsw (approximate faiss "
                f"indexes, built once and saved beside the embedding cache; retrieval eval reports their recall "
                f"against exact search), or auto: exact below --index-threshold tiles, {AUTO_INDEX} from it"})
    index_threshold: int = field(default=INDEX_THRESHOLD, metadata=field_help(
        "gallery size from which index: auto uses an approximate index", low=1, high=COUNT_MAX))
    nlist: int | None = field(default=None, metadata=field_help(
        "ivfpq: inverted lists (default: about the square root of the gallery size)", low=1, high=COUNT_MAX))
    nprobe: int = field(default=32, metadata=field_help("ivfpq: lists searched per query", low=1, high=COUNT_MAX))
    pq_m: int = field(default=64, metadata=field_help(
        "ivfpq: sub-quantizers per vector (must divide the embedding dim)", low=1, high=4096))
    pq_nbits: int = field(default=8, metadata=field_help("ivfpq: bits per sub-quantizer code", low=1, high=16))
    pq_rerank: int = field(default=4, metadata=field_help(
        "ivfpq: candidates fetched per wanted one, re-scored exactly against the gallery embeddings", low=1,
        high=1024))
    hnsw_m: int = field(default=32, metadata=field_help("hnsw: graph neighbours per node", low=2, high=512))
    ef_construction: int = field(default=40, metadata=field_help(
        "hnsw: candidate list while building", low=1, high=COUNT_MAX))
    ef_search: int = field(default=128, metadata=field_help(
        "hnsw: candidate list while searching (raise it for recall, lower it for speed)", low=1, high=COUNT_MAX))

    def __post_init__(self) -> None:
        check_choice("--index", self.index, INDEX_KINDS)  # API callers can pass any string; the CLI restricts it
        check_ranges(self)

    @classmethod
    def of(cls, config: Any) -> IndexOptions:
        """The index options a command's config declares (:func:`index_option`), checked."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def method(self, n_gallery: int) -> str:
        """``exact``, ``ivfpq`` or ``hnsw``: what searches a gallery of ``n_gallery`` tiles."""
        if self.index != "auto":
            return self.index
        return AUTO_INDEX if n_gallery >= self.index_threshold else "exact"

    def build_params(self, method: str, n_gallery: int, dim: int) -> dict[str, int]:
        """The parameters that decide what ``method``'s index holds (its cache key), checked against the gallery."""
        if method == "hnsw":
            return {"hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction}
        nlist = self.nlist or max(1, round(math.sqrt(n_gallery)))
        if nlist > n_gallery:
            raise GleamConfigError(f"--nlist: expected at most the gallery's {n_gallery} tiles (each list is trained "
                                   f"from them), got {nlist}")
        if dim % self.pq_m:
            raise GleamConfigError(f"--pq-m: expected a divisor of the embedding dim {dim}, got {self.pq_m}")
        if 2**self.pq_nbits > n_gallery:
            raise GleamConfigError(f"--pq-nbits: expected 2**nbits codes per sub-quantizer to be at most the "
                                   f"gallery's {n_gallery} tiles (they are trained from them), got {self.pq_nbits} "
                                   f"({2**self.pq_nbits} codes)")
        return {"nlist": nlist, "pq_m": self.pq_m, "pq_nbits": self.pq_nbits}

    def search_params(self, method: str) -> dict[str, int]:
        """The parameters set on ``method``'s index when it searches (no part of its cache key)."""
        return {"nprobe": self.nprobe, "pq_rerank": self.pq_rerank} if method == "ivfpq" else {
            "ef_search": self.ef_search}


def index_option(name: str) -> Any:
    """The field ``name`` of :class:`IndexOptions` (default, help, range), for a command's config to declare as its
    own: after the command's other options in its ``--help``, which a base class's fields would precede."""
    f = next(f for f in dataclasses.fields(IndexOptions) if f.name == name)
    return field(default=f.default, metadata=f.metadata)


def describe(method: str, params: dict[str, int]) -> str:
    """``hnsw (hnsw_m 32, ef_construction 40, ef_search 128)``: one method and its parameters, as reports print it."""
    return method + (f" ({', '.join(f'{k} {v}' for k, v in params.items())})" if params else "")


def _require_faiss(method: str, n_gallery: int, opts: IndexOptions) -> None:
    try:
        importlib.import_module("faiss")
    except ImportError:
        why = (f"auto searches a gallery of {n_gallery:,} tiles (>= --index-threshold {opts.index_threshold:,}) "
               f"with an {method} index, which needs" if opts.index == "auto" else f"{method} needs")
        raise GleamConfigError(f"--index: {why} faiss: {_INSTALL} (or pass --index exact)") from None


def build_index(gallery: np.ndarray, method: str, params: dict[str, int]) -> Any:
    """A faiss inner-product index of ``method`` over ``gallery`` (``(n, d)`` float32, C-contiguous)."""
    import faiss

    n, d = gallery.shape
    if method == "hnsw":
        index = faiss.index_factory(d, f"HNSW{params['hnsw_m']},Flat", faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        # "np": no polysemous training, which only serves Hamming filtering and took 110 of the 111 s of a
        # 10k x 512-d build here (one thread)
        index = faiss.index_factory(d, f"IVF{params['nlist']},PQ{params['pq_m']}x{params['pq_nbits']}np",
                                    faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))  # the IndexIVFPQ, with its PQ
        # build_params checked there are enough tiles for every centroid: no per-sub-quantizer stderr warnings
        ivf.cp.min_points_per_centroid = ivf.pq.cp.min_points_per_centroid = 1
        ivf.pq.cp.max_points_per_centroid = 64  # faiss's 256 points per code made PQ training most of a build
        # k-means needs tens of points per centroid, not the whole gallery: a fixed sample keeps a 1M build short
        want = min(n, max(64 * params["nlist"], 64 * 2 ** params["pq_nbits"]))
        rows = np.sort(np.random.default_rng(0).choice(n, want, replace=False)) if want < n else slice(None)
        index.train(gallery[rows])
    index.add(gallery)
    return index


def _set_search_params(index: Any, method: str, params: dict[str, int]) -> None:
    import faiss

    if method == "hnsw":
        faiss.ParameterSpace().set_index_parameters(index, f"efSearch={params['ef_search']}")
    else:
        faiss.ParameterSpace().set_index_parameters(index, f"nprobe={params['nprobe']}")


@torch.no_grad()
def _rescore(queries: torch.Tensor, gallery: torch.Tensor, cand: torch.Tensor, k: int,
             chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The best ``k`` of each query's candidate gallery rows (``-1``: none), by exact inner product, best first,
    lower index first among equal scores (as :func:`topk_search`)."""
    scores, indices = [], []
    for s in range(0, queries.shape[0], chunk):
        c = cand[s:s + chunk]
        valid = c >= 0
        sc = torch.einsum("qd,qkd->qk", queries[s:s + chunk].float(), gallery[c.clamp(min=0)].float())
        sc = sc.masked_fill(~valid, -math.inf)
        # ascending index, then a stable sort by score: equal scores keep the lower index first
        by_id = torch.sort(c.masked_fill(~valid, torch.iinfo(torch.int64).max), dim=1).indices
        sc, c = sc.gather(1, by_id), c.gather(1, by_id)
        order = torch.sort(sc, dim=1, descending=True, stable=True).indices[:, :k]
        scores.append(sc.gather(1, order))
        indices.append(c.gather(1, order).masked_fill(~torch.isfinite(scores[-1]), -1))
    return torch.cat(scores), torch.cat(indices)


def search_index(index: Any, queries: torch.Tensor, gallery: torch.Tensor, k: int, method: str,
                 params: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` through a built ``index``, re-scored exactly; a query the index finds fewer than ``k`` tiles for
    (a sparse IVF list, an unlucky graph walk) is searched exactly instead, so every row has ``k``."""
    _set_search_params(index, method, params)
    fetch = min(gallery.shape[0], k * params.get("pq_rerank", 1))
    q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
    _, cand = index.search(q, fetch)
    g = gallery.detach().cpu()
    scores, indices = _rescore(queries.detach().cpu(), g, torch.from_numpy(cand.astype(np.int64)), k)
    short = (indices < 0).any(dim=1).nonzero()[:, 0]
    if len(short):
        scores[short], indices[short] = topk_search(queries.detach().cpu()[short], g, k)
    return scores, indices


@dataclass
class SearchResult:
    """Top-k of :func:`gallery_search`: ``scores`` (float32) and ``indices`` (int64), ``(n_query, k)``, best first; how
    they were found (``method``, its ``params``), and for an index, its file (``None``: not saved) and whether this
    call built it (``build_seconds``) or loaded it."""

    scores: torch.Tensor
    indices: torch.Tensor
    method: str
    params: dict[str, int] = field(default_factory=dict)
    index_file: Path | None = None
    built: bool = False
    build_seconds: float | None = None

    @property
    def approximate(self) -> bool:
        return self.method != "exact"

    def describe(self) -> dict[str, Any]:
        """What results files record about the search."""
        out: dict[str, Any] = {"method": self.method, "params": self.params}
        if self.approximate:
            out.update(index_file=str(self.index_file) if self.index_file else None, built=self.built,
                       build_seconds=self.build_seconds)
        return out


def index_path(cache: EmbeddingCache, gallery_key: tuple[str, str], method: str,
               params: dict[str, int]) -> tuple[Path, dict]:
    """Where the index of a gallery goes (beside its embeddings' entry) and the full key its sidecar holds."""
    import faiss

    enc, imgs = gallery_key
    key = {"encoder": enc, "images": imgs, "method": method, "params": params, "faiss": faiss.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache.root / f"{enc[:20]}-{imgs[:20]}.{method}-{digest[:16]}{SUFFIX}", key


def _load(path: Path, key: dict, n: int, d: int) -> Any | None:
    """The index saved at ``path`` under ``key`` with ``n`` vectors of dim ``d``, or ``None`` (missing, damaged,
    another key): the caller builds it again."""
    import faiss

    meta = path.with_name(path.name + ".json")
    try:
        if json.loads(meta.read_text(encoding="utf-8")) != key:
            return None
        index = faiss.read_index(str(path))
    except (OSError, ValueError, RuntimeError):  # faiss raises RuntimeError on a damaged file
        return None
    return index if (index.ntotal, index.d) == (n, d) else None


def _save(index: Any, path: Path, key: dict) -> None:
    """The index, then its key beside it, each written to a temporary file renamed into place: a killed run leaves
    no index that a key vouches for but that was not wholly written."""
    import faiss

    meta = path.with_name(path.name + ".json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, write in ((path, lambda t: faiss.write_index(index, str(t))),
                              (meta, lambda t: t.write_text(json.dumps(key, sort_keys=True), encoding="utf-8"))):
            tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, RuntimeError) as e:  # faiss raises RuntimeError when it cannot open the file
        raise GleamConfigError(f"--embedding-cache: cannot write the index {path} ({getattr(e, 'strerror', None) or e}"
                               f"); pass another directory or 'off'") from None


def gallery_search(queries: torch.Tensor, gallery: torch.Tensor, k: int, options: IndexOptions | None = None, *,
                   cache: EmbeddingCache | None = None, gallery_key: tuple[str, str] | None = None) -> SearchResult:
    """Top-``min(k, n_gallery)`` gallery items per query by inner product (cosine for L2-normalised embeddings).

    ``options`` decides exact or approximate search (default: ``exact``). An index is saved in ``cache``'s folder
    under ``gallery_key`` (the gallery's ``(encoder key, images key)`` in the embedding cache) and loaded from there
    next time; without both it is built in memory for this call only.
    """
    options = options or IndexOptions()
    check_pair(queries, gallery)
    check_positive_int("k", k)
    n, d = gallery.shape
    method = options.method(n)
    if method == "exact" or n == 0 or queries.shape[0] == 0:
        scores, indices = topk_search(queries, gallery, k)
        return SearchResult(scores, indices, "exact")
    _require_faiss(method, n, options)  # a one-line error, before any work, when faiss is missing
    params = options.build_params(method, n, d)
    path = key = None
    index = None
    if cache is not None and gallery_key is not None:
        path, key = index_path(cache, gallery_key, method, params)
        index = _load(path, key, n, d)
    built, seconds = index is None, None
    if index is None:
        t0 = time.perf_counter()
        index = build_index(np.ascontiguousarray(gallery.detach().float().cpu().numpy()), method, params)
        seconds = round(time.perf_counter() - t0, 3)
        if path is not None:
            _save(index, path, key)
    search = options.search_params(method)
    scores, indices = search_index(index, queries, gallery, min(k, n), method, search)
    return SearchResult(scores.to(queries.device), indices.to(queries.device), method, {**params, **search}, path,
                        built, seconds)


def index_recall(approx: torch.Tensor, exact: torch.Tensor, k: int) -> float:
    """Recall@k of an index against exact search: the share of each query's exact top-``k`` that the index's top-``k``
    holds, averaged over queries (1.0: the index lost nothing)."""
    a, e = approx[:, :k], exact[:, :k]
    if e.numel() == 0:
        return 1.0
    hits = (a.unsqueeze(2) == e.unsqueeze(1)).any(dim=1).sum(dim=1)
    return float(hits.float().mean() / e.shape[1])


__all__ = ["INDEX_KINDS", "INDEX_THRESHOLD", "IndexKind", "IndexOptions", "SearchResult", "build_index",
           "gallery_search", "index_option", "index_recall", "search_index"]
