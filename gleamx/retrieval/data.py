"""The retrieval layout the retrieval encoder trains and evaluates on: a satellite gallery and a query list.

``DIR/retrieval/gallery.jsonl`` holds one satellite tile per line
(``{"location_id", "image", "split"}``) and ``DIR/retrieval/queries.jsonl`` one query view per
line (``{"query_id", "image", "query_view", "location_id", "split"}``, optionally
``"semi_positive_ids"``); image paths are relative to the JSONL file. A query's positive is the
gallery tile with its ``location_id``; semi-positives (VIGOR) count only for the hit rate.
``gleamx data synth`` writes this layout; real CVGL data (University-1652, VIGOR, ...) can be
converted to it. Every line is checked on load, and a bad one is reported as ``file:line: field: expected``.
Image paths must resolve inside the dataset directory (the one holding ``retrieval/``) or a root that
``retrieval/gleamx_manifest.json`` names (:mod:`gleamx.data.paths`; ``gleamx data cvgl`` writes one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gleamx.data.images import ImageTooLargeError, max_image_pixels, open_lazy
from gleamx.data.paths import ImageRoots
from gleamx.data.schema import SPLITS, VIEWS, canonical_split
from gleamx.data.jsonl import read_json_objects
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
    for n, row in read_json_objects(path):  # a bad byte, line or value is file:line, not a traceback
        for key in required:
            if not isinstance(row.get(key), str) or not row[key]:
                raise GleamDataError.at(str(path), n, key, "expected a non-empty string")
        rows.append((n, row))
    return rows


def _split_name(value: str) -> str | None:
    """``train``, ``val`` or ``test``, read case-insensitively (``validation`` is ``val``); else ``None``."""
    name = canonical_split(value)
    return name if name in SPLITS else None


def _check_split(path: Path, n: int, row: dict) -> str:
    # An unknown split (a typo) would otherwise drop the line silently from every split; "Test" is test.
    name = _split_name(row["split"])
    if name is None:
        raise GleamDataError.at(str(path), n, "split", f"expected one of {', '.join(SPLITS)} (any case), "
                                f"got {row['split']!r}")
    return name


class _Images:
    """Checks each image path of a layout: inside its roots, present, and within the pixel cap (header only)."""

    def __init__(self, roots: ImageRoots, check: bool, max_pixels: int | None) -> None:
        self.roots, self.check = roots, check
        self.max_pixels = max_image_pixels(max_pixels)

    def __call__(self, path: Path, n: int, value: str) -> Path:
        p = (path.parent / value).resolve()
        issue = self.roots.problem(path.parent / value, value)
        if issue:
            raise GleamDataError.at(str(path), n, "image", issue)
        if not self.check:
            return p
        if not p.is_file():
            raise GleamDataError.at(str(path), n, "image", f"file not found: {p}")
        try:
            with open_lazy(p, max_pixels=self.max_pixels):  # the header only: size, not pixels
                pass
        except ImageTooLargeError as e:
            raise GleamDataError.at(str(path), n, "image", f"{value} is {e.problem.message}") from None
        except Exception as e:  # PIL raises several types for files it cannot identify
            raise GleamDataError.at(str(path), n, "image", f"cannot read image {p} ({type(e).__name__}); "
                                    "expected a readable PNG/JPEG/WebP") from None
        return p


def dataset_dir(base: Path) -> Path:
    """The dataset directory a layout's images must lie in: the one holding ``retrieval/``."""
    return base.parent if base.name == "retrieval" else base


def load_retrieval(root: str | Path, split: str | None = None, *, views: Sequence[str] | None = None,
                   check_images: bool = True, allow_outside_paths: bool = False,
                   max_image_pixels: int | None = None) -> RetrievalSet:
    """Read ``root/retrieval`` (or ``root`` itself if it holds the two files) for one split (None: all).

    Queries whose location has no gallery tile are an error (a query without a positive cannot be
    scored), not silently dropped; ``views`` keeps only those query views. Split names are read
    case-insensitively. Image paths must resolve inside the dataset directory (the one holding
    ``retrieval/``) or a root named by ``retrieval/gleamx_manifest.json`` (what ``gleamx data cvgl``
    writes), unless ``allow_outside_paths``. With ``check_images``, every image of the split must exist
    and its header must be within ``max_image_pixels`` (default ``$GLEAMX_MAX_IMAGE_PIXELS`` or 100 M).
    """
    base = Path(root)
    if (base / "retrieval" / "gallery.jsonl").is_file() or not (base / "gallery.jsonl").is_file():
        base = base / "retrieval"
    if split is not None:
        if _split_name(split) is None:
            raise GleamDataError.at(str(base), None, "split", f"expected one of {', '.join(SPLITS)}, got {split!r}")
        split = _split_name(split)
    image = _Images(ImageRoots.for_dir(dataset_dir(base), base, allow_outside=allow_outside_paths),
                    check_images, max_image_pixels)
    if views is not None and (bad := [v for v in views if v not in VIEWS]):
        raise GleamDataError.at(str(base), None, "views", f"expected some of {', '.join(VIEWS)}, got {bad[0]!r}")
    gpath, qpath = base / "gallery.jsonl", base / "queries.jsonl"
    gallery: list[GalleryTile] = []
    seen: set[str] = set()
    for n, row in _read(gpath, ("location_id", "image", "split")):
        row_split = _check_split(gpath, n, row)
        if row["location_id"] in seen:
            raise GleamDataError.at(str(gpath), n, "location_id", f"duplicate {row['location_id']!r} "
                                    "(expected one tile per location)")
        seen.add(row["location_id"])
        if split is None or row_split == split:
            gallery.append(GalleryTile(row["location_id"], image(gpath, n, row["image"]), row_split))
    locations = {t.location_id for t in gallery}
    queries: list[Query] = []
    first_line: dict[str, int] = {}  # query_id -> its line: every split's, so an id is one query everywhere
    for n, row in _read(qpath, ("query_id", "image", "query_view", "location_id", "split")):
        row_split = _check_split(qpath, n, row)
        if str(row["query_id"]) in first_line:  # localize, pairs and eval key their records by it
            raise GleamDataError.at(str(qpath), n, "query_id", f"duplicate {row['query_id']!r} (first on line "
                                    f"{first_line[str(row['query_id'])]}; expected one line per query)")
        first_line[str(row["query_id"])] = n
        if split is not None and row_split != split:
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
        queries.append(Query(row["query_id"], image(qpath, n, row["image"]), row["query_view"],
                             row["location_id"], row_split, tuple(semis)))
    if not gallery or not queries:
        raise GleamDataError.at(str(base), None, "split", f"no {'gallery tiles' if not gallery else 'queries'}"
                                + (f" in split {split!r}" if split else ""))
    return RetrievalSet(gallery, queries, split)
