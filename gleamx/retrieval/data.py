"""The retrieval layout GLEAM-C trains and evaluates on: a satellite gallery and a query list.

``DIR/retrieval/gallery.jsonl`` holds one satellite tile per line
(``{"location_id", "image", "split"}``) and ``DIR/retrieval/queries.jsonl`` one query view per
line (``{"query_id", "image", "query_view", "location_id", "split"}``, optionally
``"semi_positive_ids"``); image paths are relative to the JSONL file. A query's positive is the
gallery tile with its ``location_id``; semi-positives (VIGOR) count only for the hit rate.
``gleamx data synth`` writes this layout; real CVGL data (University-1652, VIGOR, ...) can be
converted to it. Every line is checked on load, and a bad one is reported as ``file:line: field: expected``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gleamx.data.schema import SPLITS, VIEWS
from gleamx.errors import GleamDataError


@dataclass(frozen=True)
class GalleryTile:
    location_id: str
    image: Path
    split: str


@dataclass(frozen=True)
class Query:
    query_id: str
    image: Path
    view: str
    location_id: str
    split: str
    semi_positives: tuple[str, ...] = ()  # other tiles that also cover the query (VIGOR); not positives for R@k


@dataclass
class RetrievalSet:
    """One split's gallery and queries, with each query's positive gallery index."""

    gallery: list[GalleryTile]
    queries: list[Query]
    split: str | None

    def __post_init__(self) -> None:
        self._index = {t.location_id: i for i, t in enumerate(self.gallery)}

    def positive(self, q: Query) -> int:
        """Gallery index of the tile at ``q``'s location."""
        return self._index[q.location_id]

    def positives(self) -> list[list[int]]:
        return [[self.positive(q)] for q in self.queries]

    def semi_positives(self) -> list[list[int]]:
        """Gallery indices of each query's semi-positive tiles (empty for most datasets)."""
        return [[self._index[s] for s in q.semi_positives] for q in self.queries]

    def views(self) -> list[str]:
        return sorted({q.view for q in self.queries})


def _read(path: Path, required: Sequence[str]) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "file", "missing (expected the retrieval layout that "
                                "`gleamx data synth` writes: retrieval/gallery.jsonl and retrieval/queries.jsonl)")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise GleamDataError.at(str(path), n, "line", f"expected a JSON object ({e.msg})") from None
            if not isinstance(row, dict):
                raise GleamDataError.at(str(path), n, "line", "expected a JSON object")
            for key in required:
                if not isinstance(row.get(key), str) or not row[key]:
                    raise GleamDataError.at(str(path), n, key, "expected a non-empty string")
            rows.append((n, row))
    return rows


def _check_split(path: Path, n: int, row: dict) -> None:
    # An unknown split (a typo, "Test") would otherwise drop the line silently from every split.
    if row["split"] not in SPLITS:
        raise GleamDataError.at(str(path), n, "split", f"expected one of {', '.join(SPLITS)}, got {row['split']!r}")


def _image(path: Path, n: int, value: str, check: bool) -> Path:
    p = (path.parent / value).resolve()
    if check and not p.is_file():
        raise GleamDataError.at(str(path), n, "image", f"file not found: {p}")
    return p


def load_retrieval(root: str | Path, split: str | None = None, *, views: Sequence[str] | None = None,
                   check_images: bool = True) -> RetrievalSet:
    """Read ``root/retrieval`` (or ``root`` itself if it holds the two files) for one split (None: all).

    Queries whose location has no gallery tile are an error (a query without a positive cannot be
    scored), not silently dropped; ``views`` keeps only those query views.
    """
    base = Path(root)
    if (base / "retrieval" / "gallery.jsonl").is_file() or not (base / "gallery.jsonl").is_file():
        base = base / "retrieval"
    if split is not None and split not in SPLITS:
        raise GleamDataError.at(str(base), None, "split", f"expected one of {', '.join(SPLITS)}, got {split!r}")
    if views is not None and (bad := [v for v in views if v not in VIEWS]):
        raise GleamDataError.at(str(base), None, "views", f"expected some of {', '.join(VIEWS)}, got {bad[0]!r}")
    gpath, qpath = base / "gallery.jsonl", base / "queries.jsonl"
    gallery: list[GalleryTile] = []
    seen: set[str] = set()
    for n, row in _read(gpath, ("location_id", "image", "split")):
        _check_split(gpath, n, row)
        if row["location_id"] in seen:
            raise GleamDataError.at(str(gpath), n, "location_id", f"duplicate {row['location_id']!r} "
                                    "(expected one tile per location)")
        seen.add(row["location_id"])
        if split is None or row["split"] == split:
            gallery.append(GalleryTile(row["location_id"], _image(gpath, n, row["image"], check_images), row["split"]))
    locations = {t.location_id for t in gallery}
    queries: list[Query] = []
    for n, row in _read(qpath, ("query_id", "image", "query_view", "location_id", "split")):
        _check_split(qpath, n, row)
        if split is not None and row["split"] != split:
            continue
        if row["query_view"] not in VIEWS:
            raise GleamDataError.at(str(qpath), n, "query_view", f"expected one of {', '.join(VIEWS)}, "
                                    f"got {row['query_view']!r}")
        if views is not None and row["query_view"] not in views:
            continue
        if row["location_id"] not in locations:
            raise GleamDataError.at(str(qpath), n, "location_id", f"{row['location_id']!r} has no gallery tile"
                                    + (f" in split {split!r}" if split else ""))
        semis = row.get("semi_positive_ids") or []
        if not isinstance(semis, list) or not all(isinstance(x, str) for x in semis):
            raise GleamDataError.at(str(qpath), n, "semi_positive_ids", "expected a list of location ids")
        missing = [x for x in semis if x not in locations]
        if missing:
            raise GleamDataError.at(str(qpath), n, "semi_positive_ids", f"{missing[0]!r} has no gallery tile")
        queries.append(Query(row["query_id"], _image(qpath, n, row["image"], check_images), row["query_view"],
                             row["location_id"], row["split"], tuple(semis)))
    if not gallery or not queries:
        raise GleamDataError.at(str(base), None, "split", f"no {'gallery tiles' if not gallery else 'queries'}"
                                + (f" in split {split!r}" if split else ""))
    return RetrievalSet(gallery, queries, split)
