"""Public cross-view geo-localization (CVGL) datasets -> gleamx's retrieval layout.

GLEAM-C trains and evaluates on ``DIR/retrieval/gallery.jsonl`` + ``queries.jsonl`` (see
:mod:`gleamx.retrieval.data`). These converters write that layout for datasets on local disk;
image paths point into the original tree (relative to ``DIR/retrieval``), so nothing is copied.

* **University-1652** (``ROOT/train/{drone,street,satellite}/<id>/*``, ``ROOT/test/{query_drone,
  query_street,gallery_satellite}/<id>/*``): drone images become ``uav`` queries and street photos
  ``ground`` queries; each location's satellite tile is its gallery entry. The test gallery holds
  951 tiles, of which 250 are distractors with no query. Sample4Geo evaluates on the 701 without
  them, so published numbers follow two protocols: ``distractors=True`` (the default, the
  dataset's own protocol) keeps them, and ``False`` drops them. Sample4Geo still takes its R@1%
  cutoff from all 951 tiles and counts rank <= k, so its R@1% matches neither exactly.
* **VIGOR** (``ROOT/<city>/{panorama,satellite}/``, ``ROOT/splits/<city>/satellite_list.txt`` and the
  label files ``same_area_balanced_{train,test}.txt`` or ``pano_label_balanced.txt``): panoramas become
  ``panorama`` queries. Each label line names four tiles (with pixel offsets): the first is the positive,
  the other three are semi-positives (they also cover the panorama), written as ``semi_positive_ids`` so
  that evaluation can report VIGOR's hit rate beside R@k. Same-area uses all four cities in both splits.
  Cross-area trains on NewYork and Seattle and tests on SanFrancisco and Chicago. The gallery is every
  satellite tile of the split's cities (90,618 for same-area test), hence chunked search.
* **CVUSA** (``ROOT/splits/train-19zl.csv``, ``val-19zl.csv``: ``satellite,panorama[,...]`` per
  line): each panorama is a ``panorama`` query of its own satellite tile. The CSV's val split is
  the test split used in papers, written here as ``test``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gleamx.data.paths import record_image_roots
from gleamx.data.text import read_lines, read_text
from gleamx.errors import GleamDataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
LAYOUTS = ("university1652", "vigor", "cvusa")
VIGOR_CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")


@dataclass
class LayoutSummary:
    out_dir: Path
    n_gallery: int
    n_queries: int
    by_view: dict[str, int]
    split: str


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _write(out: Path, gallery: Iterable[dict], queries: Iterable[dict], split: str,
           overwrite: bool = False, root: Path | None = None) -> LayoutSummary:
    base = out / "retrieval"
    if (base / "gallery.jsonl").exists() and not overwrite:
        # One split per directory: VIGOR's same-area splits share tiles, so they cannot share a gallery file.
        raise GleamDataError.at(str(base), None, "out", "already holds a retrieval layout (write each split to "
                                "its own --out, or pass --overwrite)")
    base.mkdir(parents=True, exist_ok=True)
    real = base.resolve()
    n_g = n_q = 0
    by_view: dict[str, int] = {}
    images: list[Path] = []
    with (base / "gallery.jsonl").open("w", encoding="utf-8") as f:
        for row in gallery:
            f.write(json.dumps({**row, "image": _rel(row["image"], real)}) + "\n")
            n_g += 1
            images.append(row["image"])
    with (base / "queries.jsonl").open("w", encoding="utf-8") as f:
        for row in queries:
            f.write(json.dumps({**row, "image": _rel(row["image"], real)}) + "\n")
            n_q += 1
            by_view[row["query_view"]] = by_view.get(row["query_view"], 0) + 1
            images.append(row["image"])
    # The images stay in the dataset's tree, outside --out: name that tree (and wherever its symlinks led)
    # as the layout's image roots in retrieval/gleamx_manifest.json; the reader keeps every path inside them.
    record_image_roots(base, images, roots=[root] if root is not None else [], replace=True)
    return LayoutSummary(out, n_g, n_q, by_view, split)


def _rel(image: Path, real_base: Path) -> str:
    # Both sides resolved: the reader resolves too, and ".." after a symlinked dir goes elsewhere otherwise.
    return Path(os.path.relpath(Path(image).resolve(), real_base)).as_posix()


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise GleamDataError.at(str(path), None, "layout", f"missing directory (expected {what})")
    return path


def convert_university1652(root: str | Path, out: str | Path, *, split: str = "test", distractors: bool = True,
                           views: tuple[str, ...] = ("uav", "ground"), overwrite: bool = False) -> LayoutSummary:
    """University-1652 -> retrieval layout for ``split`` ("train" or "test")."""
    root = Path(root)
    if split not in ("train", "test"):
        raise GleamDataError.at(str(root), None, "split", f"expected train or test, got {split!r}")
    folders = ({"uav": "drone", "ground": "street", "satellite": "satellite"} if split == "train" else
               {"uav": "query_drone", "ground": "query_street", "satellite": "gallery_satellite"})
    sat_dir = _need_dir(root / split / folders["satellite"], f"University-1652's {split}/{folders['satellite']}/<id>/")
    tiles: dict[str, Path] = {}
    for loc in sorted(p for p in sat_dir.iterdir() if p.is_dir()):
        imgs = _images(loc)
        if len(imgs) != 1:
            raise GleamDataError.at(str(loc), None, "satellite", f"expected one satellite image, found {len(imgs)}")
        tiles[loc.name] = imgs[0]
    queries = []
    for view in views:
        if view not in ("uav", "ground"):
            raise GleamDataError.at(str(root), None, "views", f"expected uav and/or ground, got {view!r}")
        qdir = _need_dir(root / split / folders[view], f"University-1652's {split}/{folders[view]}/<id>/")
        for loc in sorted(p for p in qdir.iterdir() if p.is_dir()):
            if loc.name not in tiles:
                raise GleamDataError.at(str(loc), None, "location_id", f"{loc.name!r} has no satellite tile in {sat_dir}")
            for img in _images(loc):
                queries.append({"query_id": f"{view}/{loc.name}/{img.stem}", "image": img, "query_view": view,
                                "location_id": loc.name, "split": split})
    queried = {q["location_id"] for q in queries}
    keep = tiles if distractors else {k: v for k, v in tiles.items() if k in queried}
    gallery = [{"location_id": k, "image": v, "split": split} for k, v in keep.items()]
    return _write(Path(out), gallery, queries, split, overwrite, root)


def convert_cvusa(root: str | Path, out: str | Path, *, split: str = "test", overwrite: bool = False) -> LayoutSummary:
    """CVUSA (the 19zl split files) -> retrieval layout; ``test`` reads ``val-19zl.csv``."""
    root = Path(root)
    name = {"train": "train-19zl.csv", "test": "val-19zl.csv"}.get(split)
    if name is None:
        raise GleamDataError.at(str(root), None, "split", f"expected train or test, got {split!r}")
    csv_path = root / "splits" / name
    if not csv_path.is_file():
        raise GleamDataError.at(str(csv_path), None, "layout", "missing (expected CVUSA's splits/*-19zl.csv)")
    gallery, queries = [], []
    for n, text in read_lines(csv_path):  # bytes decoded per line: a bad byte is file:line, not a traceback
        row = next(csv.reader([text]), [])
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise GleamDataError.at(str(csv_path), n, "line", "expected satellite_path,panorama_path[,...]")
        sat, pano = root / row[0].strip(), root / row[1].strip()
        for p, what in ((sat, "satellite"), (pano, "panorama")):
            if not p.is_file():
                raise GleamDataError.at(str(csv_path), n, what, f"file not found: {p}")
        loc = f"cvusa-{Path(row[0]).stem}"
        gallery.append({"location_id": loc, "image": sat, "split": split})
        queries.append({"query_id": f"panorama/{Path(row[1]).stem}", "image": pano, "query_view": "panorama",
                        "location_id": loc, "split": split})
    return _write(Path(out), gallery, queries, split, overwrite, root)


def convert_vigor(root: str | Path, out: str | Path, *, split: str = "test", same_area: bool = True,
                  overwrite: bool = False) -> LayoutSummary:
    """VIGOR -> retrieval layout, with each panorama's three semi-positive tiles."""
    root = Path(root)
    if split not in ("train", "test"):
        raise GleamDataError.at(str(root), None, "split", f"expected train or test, got {split!r}")
    if same_area:
        cities, label_name = VIGOR_CITIES, f"same_area_balanced_{split}.txt"
    else:
        cities, label_name = (VIGOR_CITIES[:2] if split == "train" else VIGOR_CITIES[2:]), "pano_label_balanced.txt"
    gallery, known = [], set()
    for city in cities:
        listing = root / "splits" / city / "satellite_list.txt"
        if not listing.is_file():
            raise GleamDataError.at(str(listing), None, "layout", "missing (expected VIGOR's splits/<city>/satellite_list.txt)")
        for name in read_text(listing).split():
            loc = f"{city}/{Path(name).stem}"
            known.add(loc)
            gallery.append({"location_id": loc, "image": root / city / "satellite" / name, "split": split})
    queries = []
    for city in cities:
        labels = root / "splits" / city / label_name
        if not labels.is_file():
            raise GleamDataError.at(str(labels), None, "layout", f"missing (expected VIGOR's splits/<city>/{label_name})")
        for n, line in read_lines(labels):  # bytes decoded per line: a bad byte is file:line, not a traceback
            cols = line.split()
            if not cols:
                continue
            if len(cols) < 13:
                raise GleamDataError.at(str(labels), n, "line", "expected a panorama and 4 x (satellite, dx, dy)")
            tiles = [f"{city}/{Path(cols[i]).stem}" for i in (1, 4, 7, 10)]
            for t in tiles:
                if t not in known:
                    raise GleamDataError.at(str(labels), n, "satellite", f"{t!r} is not in satellite_list.txt")
            queries.append({"query_id": f"{city}/{Path(cols[0]).stem}", "image": root / city / "panorama" / cols[0],
                            "query_view": "panorama", "location_id": tiles[0], "semi_positive_ids": tiles[1:],
                            "split": split})
    return _write(Path(out), gallery, queries, split, overwrite, root)
