"""Matching and non-matching image pairs from a retrieval layout: the label-only GLEAM-X data that annotation
then explains.

Input is any ``DIR/retrieval/`` layout (``gleamx data cvgl`` for University-1652, VIGOR, CVUSA, CVACT and
paired folders, or ``gleamx data synth``). Each query gives one positive (its own location's tile) and, on
average, ``neg_ratio`` negatives (another location's tile of the same split): *hard* negatives are the
query's nearest wrong tiles by a retrieval encoder when ``encoder`` is given, else tiles of the query's region
(the ``<region>/`` prefix of a location id, as in VIGOR's ``NewYork/...``; the whole split when there is
none); the rest are *random*. A query's semi-positives (VIGOR) are never its negatives. Every location
(query images and tile) lies in one split, so train, val and test share no place.

Out: ``OUT/{train,val,test}.jsonl`` (gleamx JSONL, no explanations, image paths relative to the file and
pointing into the dataset left in place), ``OUT/README.md`` (a dataset card with counts per split, view,
label and negative kind) and ``OUT/pairs_config.json``. Same layout and settings, same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gleamx.checks import (BATCH_MAX, COUNT_MAX, SEED_MAX, SIDE_MAX, check_at_least, check_choice, check_given,
                           check_int, check_ranges, comma_list, field_help, shown)
from gleamx.choices import SPLITS, VIEWS, Split
from gleamx.data.card import PairCounts, size_category
from gleamx.data.cvgl import LAYOUT_FILE
from gleamx.data.paths import MANIFEST_NAME
from gleamx.data.schema import GleamSample
from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.outputs import claim_folder, overwrite_option
from gleamx.retrieval.data import GalleryTile, Query, RetrievalSet, load_retrieval


CONFIG_NAME = "pairs_config.json"  # the settings (also what marks an older gleamx's output)


@dataclass(kw_only=True)
class PairsConfig:
    """Matching and non-matching pairs (positives, random and hard negatives) from a retrieval layout."""

    retrieval: str = field(metadata={"help": "dataset dir holding retrieval/ (gleamx data cvgl or synth writes one)"})
    out: str = field(metadata={"help": "output dir for {train,val,test}.jsonl, README.md and pairs_config.json"})
    split: Split | None = field(default=None, metadata={"help": "only this split of the layout (default: all)"})
    split_fractions: list[float] | None = field(default=None, metadata=field_help(
        "re-split the locations train,val,test by these fractions, e.g. 0.9,0.1,0 (default: each location keeps "
        "its tile's split)", low=0, high=1))
    views: list[str] | None = field(default=None, metadata={"help": "query views, comma-separated (default: all)"})
    # 100: every query's negatives are held in memory, and 1:100 is already far past any paper's ratio
    neg_ratio: float = field(default=1.0, metadata=field_help("negatives per positive (positive:negative = 1:R)",
                                                              low=0, high=100))
    hard_ratio: float = field(default=0.5, metadata=field_help("share of the negatives that are hard (0 to 1)",
                                                               low=0, high=1))
    balance_views: bool = field(default=False, metadata={
        "help": "as many queries of each view per split as its rarest view has (default: every query)"})
    max_per_view: int | None = field(default=None, metadata=field_help(
        "at most this many queries per view and split", low=1, high=COUNT_MAX))
    encoder: str | None = field(default=None, metadata={
        "help": "retrieval encoder dir or Hub id ('tiny': untrained, seeded by --seed) whose nearest wrong tiles are "
                "the hard negatives (default: tiles of the same region, else split)"})
    img_size: int = field(default=64, metadata=field_help("input size of the untrained 'tiny' encoder", low=1,
                                                          high=SIDE_MAX))
    batch_size: int = field(default=64, metadata=field_help("images per embedding batch", low=1, high=BATCH_MAX))
    source: str | None = field(default=None, metadata={
        "help": "the samples' source (default: the layout that gleamx data cvgl recorded, else the dir's name)"})
    seed: int = field(default=0, metadata=field_help("random seed; same seed, same bytes", low=0, high=SEED_MAX))
    allow_outside_paths: bool = field(default=False, metadata={
        "help": "accept layout image paths outside the dataset dir and its manifest's roots"})
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        check_given("--retrieval", self.retrieval, "a dataset dir holding retrieval/")
        check_given("--out", self.out, "an output directory")
        if self.split is not None:
            check_choice("--split", self.split, SPLITS)
        self.views = comma_list(self.views)
        for v in self.views or ():
            check_choice("--views", v, VIEWS)
        try:
            self.split_fractions = comma_list(self.split_fractions, float)
        except ValueError:
            raise GleamConfigError(f"--split-fractions: expected three numbers, got {shown(self.split_fractions)}") \
                from None
        fr = self.split_fractions
        if fr is not None and (len(fr) != 3 or not all(0 <= x <= 1 for x in fr) or abs(sum(fr) - 1) > 1e-6):
            raise GleamConfigError(f"--split-fractions: expected three numbers >= 0 summing to 1 (train,val,test), "
                                   f"got {fr!r}")
        check_at_least("--neg-ratio", self.neg_ratio, 0)
        check_at_least("--hard-ratio", self.hard_ratio, 0)
        if self.hard_ratio > 1:
            raise GleamConfigError(f"--hard-ratio: expected a number from 0 to 1, got {self.hard_ratio!r}")
        check_int("--max-per-view", self.max_per_view, 1, optional=True)
        check_int("--img-size", self.img_size, 1)
        check_int("--batch-size", self.batch_size, 1)
        check_int("--seed", self.seed, 0)
        check_ranges(self)


@dataclass
class PairsSummary(PairCounts):
    out_dir: Path
    source: str
    short: int  # negatives asked for that no tile could supply (a split with too few locations)
    files: list[Path]
    card: Path

    def summary_lines(self) -> list[str]:
        """What ``gleamx data pairs`` prints: the pairs by label and kind of negative, each split, the card."""
        negatives = ", ".join(f"{k}={v}" for k, v in self.by_negative.items()) or "no negatives"
        lines = [f"{self.source}: {self.by_label['positive']} positive and {self.by_label['negative']} negative pairs "
                 f"({negatives}) -> {self.out_dir}", *self.split_lines()]
        if self.short:
            lines.append(f"note: {self.short} negative(s) left out: a split has too few other locations")
        return lines + [f"dataset card: {self.card}"]


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _source(cfg: PairsConfig) -> str:
    if cfg.source:
        return cfg.source
    base = Path(cfg.retrieval)
    for d in (base / "retrieval", base):
        if (d / LAYOUT_FILE).is_file():
            try:
                return str(json.loads((d / LAYOUT_FILE).read_text(encoding="utf-8"))["layout"])
            except (ValueError, KeyError, TypeError):
                raise GleamDataError.at(str(d / LAYOUT_FILE), None, "layout", "expected {\"layout\": NAME, ...}") \
                    from None
    if (base / "synth_config.json").is_file():
        return "gleamx-synth"
    return base.resolve().name


def _location_splits(rset: RetrievalSet, fractions: list[float] | None, seed: int) -> dict[str, str]:
    """Each location's split: its tile's, or a seeded re-split by ``fractions`` (train, val, test)."""
    if fractions is None:
        return {t.location_id: t.split for t in rset.gallery}
    locs = sorted(t.location_id for t in rset.gallery)
    order = _rng(seed, 1).permutation(len(locs))
    # largest remainders: the counts sum to the locations, and a split asked for 0 gets none (rounding train and
    # val and giving test the rest put a location in a test split of 0 at 0.5,0.5,0 over 9 locations)
    raw = [len(locs) * f for f in fractions]
    counts = [int(x) for x in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[:len(locs) - sum(counts)]:
        counts[i] += 1
    names = [name for name, n in zip(("train", "val", "test"), counts) for _ in range(n)]
    return {locs[int(j)]: names[i] for i, j in enumerate(order)}


def _select(queries: list[Query], cfg: PairsConfig, rng: np.random.Generator) -> list[Query]:
    """The queries a split uses: per view, all of them, or a seeded subset (``balance_views``, ``max_per_view``)."""
    by_view = {v: [q for q in queries if q.view == v] for v in VIEWS}
    by_view = {v: qs for v, qs in by_view.items() if qs}
    cap = min(map(len, by_view.values())) if cfg.balance_views and by_view else None
    if cfg.max_per_view is not None:
        cap = min(cap, cfg.max_per_view) if cap is not None else cfg.max_per_view
    keep: set[int] = set()
    for qs in by_view.values():
        chosen = rng.permutation(len(qs))[:cap] if cap is not None and cap < len(qs) else range(len(qs))
        keep.update(id(qs[int(i)]) for i in chosen)
    return [q for q in queries if id(q) in keep]


def _negative_counts(n_pos: int, neg_ratio: float, hard_ratio: float,
                     rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(hard, random) negatives per query: ``round(n_pos * neg_ratio)`` in all, spread evenly at random."""
    n_neg = round(n_pos * neg_ratio)
    per = [n_neg // n_pos] * n_pos if n_pos else []
    for i in rng.permutation(n_pos)[: n_neg - sum(per)]:
        per[int(i)] += 1
    slots = [i for i, k in enumerate(per) for _ in range(k)]
    hard = [0] * n_pos
    for s in rng.permutation(len(slots))[: round(len(slots) * hard_ratio)]:
        hard[slots[int(s)]] += 1
    return hard, [k - h for k, h in zip(per, hard)]


def _region(location_id: str) -> str | None:
    return location_id.split("/", 1)[0] if "/" in location_id else None


class _Encoded:
    """Each query's gallery indices (of its split's tiles) by encoder similarity, best first."""

    def __init__(self, cfg: PairsConfig) -> None:
        import torch

        from gleamx.retrieval.encoder import load_encoder

        with torch.random.fork_rng(devices=[]):  # 'tiny' is random: seeded, so the same seed gives the same pairs
            torch.manual_seed(cfg.seed)
            self.encoder = load_encoder(cfg.encoder, tiny_img_size=cfg.img_size)
        self.batch_size = cfg.batch_size

    def ranking(self, queries: list[Query], tiles: list[GalleryTile], depth: int) -> list[list[int]]:
        from gleamx.retrieval.embed import embed_images
        from gleamx.retrieval.search import topk_search

        q = embed_images(self.encoder, [x.image for x in queries], batch_size=self.batch_size, desc="queries")
        g = embed_images(self.encoder, [t.image for t in tiles], batch_size=self.batch_size, desc="tiles")
        _, idx = topk_search(q, g, min(depth, len(tiles)))
        return idx.tolist()


def _split_pairs(split: str, queries: list[Query], tiles: list[GalleryTile], cfg: PairsConfig, source: str,
                 encoded: _Encoded | None, split_index: int) -> tuple[list[GleamSample], int]:
    rng = _rng(cfg.seed, 2, split_index)
    queries = _select(queries, cfg, rng)
    hard_n, random_n = _negative_counts(len(queries), cfg.neg_ratio, cfg.hard_ratio, rng)
    index = {t.location_id: i for i, t in enumerate(tiles)}
    regions: dict[str | None, list[int]] = {}
    for i, t in enumerate(tiles):
        regions.setdefault(_region(t.location_id), []).append(i)
    ranking = None
    if encoded is not None and any(hard_n):
        depth = max(hard_n) + 1 + max(len(q.semi_positives) for q in queries)
        ranking = encoded.ranking(queries, tiles, depth)
    everywhere = range(len(tiles))
    samples: list[GleamSample] = []
    short = 0

    def add(q: Query, tile: GalleryTile, kind: str | None, how: str | None, rank: int | None) -> None:
        samples.append(GleamSample(
            id=f"{source}-{split}-{len(samples):06d}", query_image=str(q.image), satellite_image=str(tile.image),
            query_view=q.view, label=kind is None, source=source, split=split,
            meta={"location_id": q.location_id, "satellite_location_id": tile.location_id, "query_id": q.query_id,
                  "negative": kind, "hard_source": how, "negative_rank": rank, "source": source,
                  "layout_split": q.split}))

    for n, q in enumerate(queries):
        add(q, tiles[index[q.location_id]], None, None, None)
        banned = {index[q.location_id], *(index[s] for s in q.semi_positives if s in index)}  # never negatives
        if ranking is not None:
            hard = [(i, "encoder", r + 1) for r, i in enumerate(ranking[n]) if i not in banned][: hard_n[n]]
        else:
            region = regions.get(_region(q.location_id), []) if _region(q.location_id) is not None else []
            hard = [(i, "region", None) for i in _draw(rng, region, hard_n[n], banned)]
        # too few near or same-region tiles (a ranking cut short by semi-positives, a small region): the split's
        hard += [(i, "split", None) for i in _draw(rng, everywhere, hard_n[n] - len(hard),
                                                     banned | {h[0] for h in hard})]
        for i, how, rank in hard:
            add(q, tiles[i], "hard", how, rank)
            banned.add(i)
        picked = _draw(rng, everywhere, random_n[n], banned)
        for i in picked:
            add(q, tiles[i], "random", None, None)
        short += hard_n[n] + random_n[n] - len(hard) - len(picked)
    return samples, short


def _draw(rng: np.random.Generator, pool: Sequence[int], k: int, banned: set[int]) -> list[int]:
    """``k`` distinct items of ``pool`` outside ``banned`` at random (fewer when too few are left), in draw order.

    A big pool (a VIGOR city holds ~20k tiles) is sampled by rejection, so a query costs O(k), not O(pool)."""
    if k <= 0 or not pool:
        return []
    if len(pool) <= 4 * (k + len(banned)) + 64:
        free = [i for i in pool if i not in banned]
        return [free[int(j)] for j in rng.permutation(len(free))[:k]]
    chosen: list[int] = []
    while len(chosen) < k:
        i = pool[int(rng.integers(len(pool)))]
        if i not in banned and i not in chosen:
            chosen.append(i)
    return chosen


def _count_row(name: str, rows: list[GleamSample], views: list[str]) -> str:
    neg = Counter(s.meta["negative"] for s in rows if not s.label)
    return (f"| {name} | {len(rows)} | {sum(s.label for s in rows)} | {sum(not s.label for s in rows)} | "
            f"{neg['random']} | {neg['hard']} | " + " | ".join(str(sum(s.query_view == v for s in rows)) for v in views)
            + " |")


def _card(source: str, config: dict[str, Any], by_split: dict[str, list[GleamSample]]) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    rows = [s for v in by_split.values() for s in v]
    views = [v for v in VIEWS if any(s.query_view == v for s in rows)]
    n = len(rows)
    data = DatasetCardData(
        license="other", pretty_name=f"GLEAM-X pairs from {source}",
        task_categories=["image-text-to-text", "visual-question-answering"],
        size_categories=[size_category(n)],
        tags=["geo-localization", "cross-view", "gleamx"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"{s}.jsonl"} for s in SPLITS if by_split.get(s)]}])
    lines = [
        f"# {data.pretty_name}", "",
        f"Matching and non-matching (query view, satellite tile) pairs built by `gleamx data pairs` from a {source} "
        "retrieval layout. Labels only: explanations are added by annotation later. Image paths point into the "
        "original dataset (see `gleamx_manifest.json`); its license applies.", "",
        "## Counts", "",
        "| split | samples | positive | negative | random negative | hard negative | " + " | ".join(views) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(views),
        *(_count_row(s, by_split[s], views) for s in SPLITS if by_split.get(s)),
        _count_row("**total**", rows, views), "",
        "| view | positive | negative |", "|---|---|---|",
        *(f"| {v} | {sum(s.label for s in rows if s.query_view == v)} | "
          f"{sum(not s.label for s in rows if s.query_view == v)} |" for v in views), "",
        f"{len({s.meta['location_id'] for s in rows})} query locations; train, val and test share no location. "
        "A negative pairs a query with another location's tile of its split: `hard` ones are the encoder's nearest "
        "wrong tiles (`meta.hard_source` `encoder`, with `meta.negative_rank`), or tiles of the same region "
        "(`region`) or split (`split`); the others are `random`. VIGOR's semi-positive tiles are never negatives.",
        "", "## Settings", "", "| setting | value |", "|---|---|",
        *(f"| {k} | {json.dumps(v, ensure_ascii=False)} |" for k, v in config.items()), "",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def make_pairs(cfg: PairsConfig) -> PairsSummary:
    """Write the pairs of ``cfg.retrieval``'s layout to ``cfg.out`` (see the module docstring)."""
    from gleamx import __version__
    from gleamx.data.jsonl import write_samples

    source = _source(cfg)
    config = {**asdict(cfg), "source": source}
    for key in ("retrieval", "out", "overwrite", "allow_outside_paths"):
        config.pop(key)  # where it ran, not what it made: the bytes do not depend on it
    folder = claim_folder(cfg.out, "--out", command="data pairs", identity=config, overwrite=cfg.overwrite,
                          inputs={"--retrieval": cfg.retrieval, "--encoder": cfg.encoder},
                          writes=[*(f"{s}.jsonl" for s in SPLITS), MANIFEST_NAME, CONFIG_NAME, "README.md"],
                          marker=CONFIG_NAME)
    out = folder.path
    rset = load_retrieval(cfg.retrieval, cfg.split, views=cfg.views, allow_outside_paths=cfg.allow_outside_paths)
    loc_split = _location_splits(rset, cfg.split_fractions, cfg.seed)
    encoded = _Encoded(cfg) if cfg.encoder and cfg.neg_ratio > 0 and cfg.hard_ratio > 0 else None
    by_split: dict[str, list[GleamSample]] = {}
    short = 0
    for k, split in enumerate(SPLITS):
        tiles = [t for t in rset.gallery if loc_split[t.location_id] == split]
        queries = [q for q in rset.queries if loc_split[q.location_id] == split]
        if queries:
            by_split[split], n_short = _split_pairs(split, queries, tiles, cfg, source, encoded, k)
            short += n_short
    for f in [*(out / f"{s}.jsonl" for s in SPLITS), out / MANIFEST_NAME]:
        f.unlink(missing_ok=True)  # a rerun: no split or image root of the last one stays behind
    written = []
    for split, samples in by_split.items():
        write_samples(samples, out / f"{split}.jsonl")
        written.append(out / f"{split}.jsonl")
    config = {**config, "gleamx_version": __version__}
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8",
                                   newline="\n")
    card = out / "README.md"
    card.write_text(_card(source, config, by_split), encoding="utf-8", newline="\n")
    folder.done()
    return PairsSummary(out_dir=out, source=source, **PairCounts.of(by_split), short=short, files=written, card=card)
