"""Localize: the retrieval encoder proposes top-k satellite tiles per query, the MLLM verifies and explains each one.

encoder -> top-k candidates (exact search, or a faiss index past a gallery size: :mod:`gleamx.retrieval.index`) ->
``candidates.jsonl`` (GLEAM-X pairs, label = same location) ->
``gleamx-eval`` machinery (batched, resumable, P(yes) from the verdict token, report) in
``verify/`` -> rerank each query's candidates: the MLLM's "yes" first, then by P(yes), then by
retrieval similarity -> ``localize_results.json`` with R@1 before and after verification, and
``ranked.jsonl`` with each query's reranked candidates and the MLLM's answers (explanations).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gleamx.checks import gleamx_provenance
from gleamx.console import percent_text as pc
from gleamx.data.jsonl import write_samples
from gleamx.errors import GleamConfigError
from gleamx.data.schema import GleamSample
from gleamx.task.verdict import parse_verdict
from gleamx.retrieval.data import RetrievalSet, load_retrieval
from gleamx.retrieval.embed_cache import EmbeddingCache, cache_dir
from gleamx.retrieval.encoder import load_encoder
from gleamx.retrieval.evaluate import Candidates, search_candidates
from gleamx.retrieval.from_pairs import retrieval_root
from gleamx.retrieval.run_config import LocalizeConfig  # noqa: F401  (re-exported)

SOURCE = "gleamc-candidates"
PAIRS_LAYOUT = "pairs_layout"  # where the layout derived from GLEAM-X pairs goes (--data not a retrieval layout)


def candidate_samples(rset: RetrievalSet, cands: list[Candidates]) -> list[GleamSample]:
    """One GLEAM-X pair per (query, candidate tile); the label says whether it is the query's location."""
    out = []
    for c in cands:
        for rank, (g, score) in enumerate(zip(c.gallery_indices, c.scores)):
            tile = rset.gallery[g]
            out.append(GleamSample(
                id=f"{c.query.query_id}@{tile.location_id}", query_image=str(c.query.image),
                satellite_image=str(tile.image), query_view=c.query.view, label=tile.location_id == c.query.location_id,
                source=SOURCE, split=rset.split or "test",
                meta={"query_id": c.query.query_id, "candidate_location": tile.location_id, "retrieval_rank": rank,
                      "retrieval_score": round(float(score), 6)}))
    return out


def rerank(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The MLLM's "yes" first, then higher P(yes), then the retrieval order. An answer without a
    verdict ranks with the "no"s; a missing P(yes) counts as 0.5 only among equal verdicts."""
    def key(c: dict[str, Any]) -> tuple:
        p = c.get("p_yes")
        return (c.get("verdict") is not True, -(0.5 if p is None else p), c["retrieval_rank"])

    return sorted(cands, key=key)


def _recall_at_1(ranked: dict[str, list[dict[str, Any]]]) -> float:
    return sum(bool(c) and c[0]["is_match"] for c in ranked.values()) / max(1, len(ranked))


@dataclass
class LocalizeResult:
    """What :func:`localize` wrote: ``results`` is ``localize_results.json`` in ``output``."""

    results: dict[str, Any]
    output: Path

    def as_dict(self) -> dict[str, Any]:
        return self.results

    def summary_lines(self) -> list[str]:
        """What ``gleamx localize`` prints: the recall of the candidates, R@1 before and after verification, and
        where the ranked candidates and the verification report are."""
        r = self.results
        among = ("every query's candidates hold every tile" if r["recall_at_k"] is None else
                 f"the right tile is among the candidates for {pc(r['recall_at_k'], 1)}%")
        return [f"{r['n_query']} queries, top-{r['k']} of {r['n_gallery']} tiles: {among}; "
                f"R@1 {pc(r['R@1_retrieval'], 1)}% by retrieval, "
                f"{pc(r['R@1_verified'], 1)}% after the MLLM's verification",
                f"ranked candidates with answers: {self.output / 'ranked.jsonl'}  "
                f"verification report: {self.output / 'verify' / 'report.html'}"]


def localize(cfg: LocalizeConfig) -> LocalizeResult:
    """Run the pipeline into ``cfg.output``."""
    from gleamx.eval.appendlog import single_writer

    with single_writer(cfg.output, "gleamx localize"):
        return LocalizeResult(_localize(cfg, Path(cfg.output)), Path(cfg.output))


def _candidate_count(cfg: LocalizeConfig, rset: RetrievalSet) -> tuple[int, list[str]]:
    """``(k, notes)``: the candidates per query the gallery can give, and what the numbers then cannot say."""
    n_gallery, k, notes = len(rset.gallery), cfg.candidates, []
    if k > n_gallery:
        if cfg.k is not None:  # the user named k: a k the gallery cannot give is an error, not a note
            raise GleamConfigError(f"--k: expected at most the gallery's {n_gallery} tiles "
                                   f"(split {rset.split or cfg.split}), got {k}")
        k = n_gallery
        notes.append(f"k {cfg.candidates} is more than the gallery's {n_gallery} tiles: every tile is a candidate "
                     f"(k = {k})")
    if k >= n_gallery:
        notes.append(f"recall_at_k not reported (null): with k = {k} and {n_gallery} tiles every query's tile is a "
                     "candidate whatever the encoder does")
    return k, notes


def _localize(cfg: LocalizeConfig, out: Path) -> dict[str, Any]:
    from gleamx.console import console
    from gleamx.eval.run import EvalConfig, evaluate

    say = lambda msg: console.print(msg, markup=False)  # noqa: E731
    rset = load_retrieval(retrieval_root(cfg.data, cfg.split, out / PAIRS_LAYOUT, say), cfg.split, views=cfg.views)
    if cfg.limit:
        rset = RetrievalSet(rset.gallery, rset.queries[: cfg.limit], rset.split)
    n_gallery = len(rset.gallery)
    k, notes = _candidate_count(cfg, rset)
    for note in notes:
        console.print(f"note: {note}", markup=False)
    root = cache_dir(cfg.embedding_cache)
    cands, found = search_candidates(load_encoder(cfg.encoder), rset, k, cache=EmbeddingCache(root) if root else None,
                                     index=cfg.index_options())
    samples = candidate_samples(rset, cands)
    write_samples(samples, out / "candidates.jsonl")

    max_new = cfg.max_new_tokens or (16 if cfg.task == "label" else 256)
    results, preds = evaluate(EvalConfig(
        data=str(out / "candidates.jsonl"), split=rset.split, model=cfg.model, adapter=cfg.adapter, lang=cfg.lang,
        task=cfg.task, batch_size=cfg.batch_size, max_new_tokens=max_new, repetition_penalty=cfg.repetition_penalty,
        dtype=cfg.dtype, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, output=str(out / "verify"),
        overwrite=cfg.overwrite, no_explanation_metrics=True, bootstrap=0))

    ranked: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        p = preds.get(s.id, {})
        ranked.setdefault(s.meta["query_id"], []).append({
            "candidate_location": s.meta["candidate_location"], "retrieval_rank": s.meta["retrieval_rank"],
            "retrieval_score": s.meta["retrieval_score"], "is_match": s.label,
            "verdict": parse_verdict(p.get("prediction", "")), "p_yes": p.get("p_yes"),
            "answer": p.get("prediction")})
    retrieval_order = {q: sorted(c, key=lambda x: x["retrieval_rank"]) for q, c in ranked.items()}
    reranked = {q: rerank(c) for q, c in ranked.items()}
    with (out / "ranked.jsonl").open("w", encoding="utf-8") as f:
        for q in reranked:
            f.write(json.dumps({"query_id": q, "candidates": reranked[q]}, ensure_ascii=False) + "\n")
    summary = {
        "config": asdict(cfg), "gleamx": gleamx_provenance(),
        "n_query": len(ranked),
        "k": k,
        "n_gallery": n_gallery,
        "search": found.describe(),
        "recall_at_k": (sum(any(c["is_match"] for c in v) for v in ranked.values()) / max(1, len(ranked))
                        if k < n_gallery else None),
        "R@1_retrieval": _recall_at_1(retrieval_order),
        "R@1_verified": _recall_at_1(reranked),
        "verification": {key: results.get(key) for key in ("accuracy", "accuracy_positive", "accuracy_negative",
                                                            "invalid_rate", "f1")},
        "images": results.get("images"),
        "generation": results.get("generation"),
        "notes": notes,
    }
    (out / "localize_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
