"""Public cross-view geo-localization (CVGL) datasets -> gleamx's retrieval layout.

The retrieval encoder trains and evaluates on ``DIR/retrieval/gallery.jsonl`` + ``queries.jsonl`` (see
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
* **CVACT** as shipped (``ROOT/ANU_data_small/streetview/<panoId>_grdView.jpg``,
  ``ROOT/ANU_data_small/satview_polish/<panoId>_satView_polish.jpg`` and ``ROOT/ACT_data.mat``; ``ROOT`` may
  also be ``ANU_data_small`` itself, with the .mat inside it): ``panoIds`` names every location, and the
  1-based indices ``trainSet.trainInd`` and ``valSet.valInd`` pick the splits. ``valSet`` (CVACT_val, 8,884
  pairs, the split papers report) is written as ``test``. Reading the .mat needs scipy; a split list
  ``ROOT/splits/<split>.txt`` (one panoId per line, or a CSV whose first column is the panoId) is used instead
  when present, and needs no scipy. With ``cvact_set="test"`` the test split is CVACT_test instead: the
  ``ROOT/ANU_data_test/{streetview,satview_polish}`` folders, every panoId that has both images (one without
  its partner is counted in a note, not used).
* **paired** folders, one query image and one satellite tile per location, as in the paper's street-map and
  ground sets: ``ROOT/satellite/<location_id>.<ext>`` and ``ROOT/<view>/<location_id>.<ext>`` for each
  gleamx view folder present (``uav``, ``street_map``, ``panorama``, ``ground``); with ``view`` given, only
  ``ROOT/<view>/`` is read, or ``ROOT/query/`` when there is no such folder. An optional ``ROOT/splits.csv``
  (header ``location_id,split``; train, val or test) assigns every location a split, and only the asked
  split is written; without it every location is in the asked split. A tile no query names stays in the
  gallery (a distractor).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from gleamx.choices import VIEWS
from gleamx.data.paths import record_image_roots
from gleamx.data.text import read_lines, read_text
from gleamx.errors import GleamDataError
from gleamx.outputs import claim_folder

if TYPE_CHECKING:
    from gleamx.data.config import CvglConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
Layout = Literal["university1652", "vigor", "cvusa", "cvact", "paired"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
LAYOUT_FILE = "layout.json"
"""Beside the two JSONL files: which layout and split wrote them (``gleamx data pairs`` names its source by it)."""
VIGOR_CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")


@dataclass
class LayoutSummary:
    out_dir: Path
    n_gallery: int
    n_queries: int
    by_view: dict[str, int]
    split: str
    notes: list[str] = field(default_factory=list)
    layout: str | None = None  # which converter wrote it (``university1652`` ...)

    def summary_lines(self) -> list[str]:
        """What ``gleamx data cvgl`` prints: the counts and where the layout went, then the notes."""
        views = ", ".join(f"{k}={v}" for k, v in self.by_view.items())
        return [f"{self.layout} {self.split}: gallery {self.n_gallery} tiles, {self.n_queries} queries ({views}) -> "
                f"{self.out_dir / 'retrieval'}", *(f"note: {note}" for note in self.notes)]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _write(out: Path, gallery: Iterable[dict], queries: Iterable[dict], split: str,
           overwrite: bool = False, root: Path | None = None, layout: str | None = None) -> LayoutSummary:
    # One split per folder (VIGOR's same-area splits share tiles, so they cannot share a gallery file): another
    # split or source in --out is refused unless --overwrite, by the one output rule (gleamx.outputs).
    folder = claim_folder(out, "--out", command="data cvgl", overwrite=overwrite, marker=f"retrieval/{LAYOUT_FILE}",
                          identity={"layout": layout, "split": split,
                                    "root": None if root is None else str(Path(root).resolve())},
                          inputs={"root": root}, writes=["retrieval"])
    base = out / "retrieval"
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
    if layout is not None:
        (base / LAYOUT_FILE).write_text(json.dumps({"layout": layout, "split": split}) + "\n", encoding="utf-8")
    folder.done()
    return LayoutSummary(out, n_g, n_q, by_view, split, layout=layout)


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
    summary = _write(Path(out), gallery, queries, split, overwrite, root, "university1652")
    read = {folders["satellite"], *(folders[v] for v in views)}
    # Said, not silently passed over: train/google/ (noisy web street views), the test split's drone and street
    # galleries, a view left out by --views.
    unread = sorted(p.name for p in (root / split).iterdir() if p.is_dir() and p.name not in read)
    if unread:
        summary.notes.append(f"{split}/: not read: {', '.join(unread)} (this layout takes {', '.join(sorted(read))})")
    return summary


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
    return _write(Path(out), gallery, queries, split, overwrite, root, "cvusa")


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
    return _write(Path(out), gallery, queries, split, overwrite, root, "vigor")


def _split_list(path: Path) -> list[str]:
    """The ids of a split list: one per line, or a CSV's first column (blank lines and ``#`` comments skipped)."""
    ids = []
    for _, text in read_lines(path):
        first = next(csv.reader([text]), [""])[0].strip() if text.strip() else ""
        if first and not first.startswith("#"):
            ids.append(first)
    return ids


def _mat_strings(values: object) -> list[str]:
    """A MATLAB char matrix or cell array of strings, as scipy reads it, as a list of stripped strings."""
    import numpy as np

    out = []
    for x in np.asarray(values, dtype=object).ravel():
        while isinstance(x, np.ndarray):
            x = x.ravel()[0] if x.size else ""
        out.append(str(x).strip())
    return out


def _act_mat_ids(mat_path: Path, split: str) -> list[str]:
    """The panoIds of ``split`` in CVACT's ``ACT_data.mat`` (``trainSet.trainInd`` / ``valSet.valInd``, 1-based)."""
    import numpy as np

    name = str(mat_path)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise GleamDataError.at(name, None, "ACT_data.mat", "reading it needs scipy (pip install scipy), or list "
                                f"the split's panoIds in splits/{split}.txt beside it") from None
    try:
        mat = loadmat(mat_path)
    except Exception as e:  # noqa: BLE001 - scipy raises several types for files it cannot parse
        raise GleamDataError.at(name, None, "file", f"cannot read it as a MATLAB file ({type(e).__name__})") from None
    struct, field = ("trainSet", "trainInd") if split == "train" else ("valSet", "valInd")
    if "panoIds" not in mat:
        raise GleamDataError.at(name, None, "panoIds", "missing (expected CVACT's list of panorama ids)")
    ids = _mat_strings(mat["panoIds"])
    s = mat.get(struct)
    if not isinstance(s, np.ndarray) or s.dtype.names is None or field not in s.dtype.names or s.size == 0:
        raise GleamDataError.at(name, None, struct, f"missing (expected a struct with field {field})")
    try:
        index = [int(i) for i in np.asarray(s.ravel()[0][field]).ravel()]
    except (TypeError, ValueError):
        raise GleamDataError.at(name, None, f"{struct}.{field}", "expected integer indices into panoIds") from None
    bad = [i for i in index if not 1 <= i <= len(ids)]
    if bad:
        raise GleamDataError.at(name, None, f"{struct}.{field}", f"index {bad[0]} is outside panoIds "
                                f"(expected 1..{len(ids)}, MATLAB's 1-based indices)")
    return [ids[i - 1] for i in index]


CvactSet = Literal["val", "test"]
CVACT_SETS: tuple[str, ...] = get_args(CvactSet)
_GRD, _SAT = "_grdView.jpg", "_satView_polish.jpg"


def _cvact_test(root: Path, out: Path, overwrite: bool) -> LayoutSummary:
    """CVACT_test: every panoId of ``ANU_data_test`` with both a street view and a satellite tile."""
    images = root if root.name == "ANU_data_test" else root / "ANU_data_test"
    grd = _need_dir(images / "streetview", f"CVACT_test's ANU_data_test/streetview/<panoId>{_GRD}")
    sat = _need_dir(images / "satview_polish", f"CVACT_test's ANU_data_test/satview_polish/<panoId>{_SAT}")
    g_ids = {p.name[: -len(_GRD)] for p in grd.iterdir() if p.name.endswith(_GRD)}
    s_ids = {p.name[: -len(_SAT)] for p in sat.iterdir() if p.name.endswith(_SAT)}
    ids = sorted(g_ids & s_ids)
    if not ids:
        raise GleamDataError.at(str(images), None, "test", f"no panoId has both <panoId>{_GRD} and <panoId>{_SAT}")
    gallery = [{"location_id": f"cvact-{p}", "image": sat / f"{p}{_SAT}", "split": "test"} for p in ids]
    queries = [{"query_id": f"panorama/{p}", "image": grd / f"{p}{_GRD}", "query_view": "panorama",
                "location_id": f"cvact-{p}", "split": "test"} for p in ids]
    summary = _write(out, gallery, queries, "test", overwrite, root, "cvact")
    for n, what, where in ((len(g_ids - s_ids), "street views", "satellite tile"),
                           (len(s_ids - g_ids), "satellite tiles", "street view")):
        if n:
            summary.notes.append(f"{n} {what} of ANU_data_test have no {where} with their panoId: not used")
    return summary


def convert_cvact(root: str | Path, out: str | Path, *, split: str = "test", cvact_set: str = "val",
                  overwrite: bool = False) -> LayoutSummary:
    """CVACT as shipped -> retrieval layout; ``test`` is CVACT_val (``valSet``), the split papers report, or
    CVACT_test (``ANU_data_test``) with ``cvact_set="test"``."""
    root = Path(root)
    if split not in ("train", "test"):
        raise GleamDataError.at(str(root), None, "split", f"expected train or test, got {split!r}")
    if cvact_set not in CVACT_SETS:
        raise GleamDataError.at(str(root), None, "cvact_set", f"expected val or test, got {cvact_set!r}")
    if cvact_set == "test":
        if split != "test":
            raise GleamDataError.at(str(root), None, "cvact_set", "test (CVACT_test) is a test split: use --split test")
        return _cvact_test(root, Path(out), overwrite)
    images = root / "ANU_data_small" if (root / "ANU_data_small").is_dir() else root
    grd = _need_dir(images / "streetview", "CVACT's ANU_data_small/streetview/<panoId>_grdView.jpg")
    sat = _need_dir(images / "satview_polish", "CVACT's ANU_data_small/satview_polish/<panoId>_satView_polish.jpg")
    listing = next((d / "splits" / f"{split}.txt" for d in (root, images) if (d / "splits" / f"{split}.txt").is_file()),
                   None)
    if listing is not None:
        ids, source = _split_list(listing), listing
    else:
        mat = next((d / "ACT_data.mat" for d in (root, images) if (d / "ACT_data.mat").is_file()), None)
        if mat is None:
            raise GleamDataError.at(str(root / "ACT_data.mat"), None, "layout", "missing (expected CVACT's "
                                    f"ACT_data.mat, or a split list splits/{split}.txt)")
        ids, source = _act_mat_ids(mat, split), mat
    gallery, queries = [], []
    for pano in dict.fromkeys(ids):  # a repeated id would be a duplicate location
        g, s = grd / f"{pano}_grdView.jpg", sat / f"{pano}_satView_polish.jpg"
        for p, what in ((s, "satellite"), (g, "panorama")):
            if not p.is_file():
                raise GleamDataError.at(str(source), None, what, f"file not found for panoId {pano!r}: {p}")
        gallery.append({"location_id": f"cvact-{pano}", "image": s, "split": split})
        queries.append({"query_id": f"panorama/{pano}", "image": g, "query_view": "panorama",
                        "location_id": f"cvact-{pano}", "split": split})
    if not gallery:
        raise GleamDataError.at(str(source), None, split, "lists no panoIds")
    return _write(Path(out), gallery, queries, split, overwrite, root, "cvact")


def _by_location(folder: Path) -> dict[str, Path]:
    """``<location_id>.<ext>`` images of a paired folder by location id; two files of one id are an error."""
    found: dict[str, Path] = {}
    for img in _images(folder):
        if img.stem in found:
            raise GleamDataError.at(str(img), None, "location_id", f"{img.stem!r} has two images in {folder} "
                                    f"({found[img.stem].name}; expected one per location)")
        found[img.stem] = img
    return found


def _paired_splits(path: Path) -> dict[str, str] | None:
    """``ROOT/splits.csv`` (``location_id,split``) as location -> train/val/test; ``None`` without the file."""
    from gleamx.data.schema import canonical_split

    if not path.is_file():
        return None
    splits: dict[str, str] = {}
    for n, text in read_lines(path):
        row = [c.strip() for c in next(csv.reader([text]), [])]
        if not row or not "".join(row) or (n == 1 and row[:2] == ["location_id", "split"]):
            continue
        name = canonical_split(row[1]) if len(row) >= 2 else None
        if name not in ("train", "val", "test"):
            raise GleamDataError.at(str(path), n, "split", "expected location_id,split with split train, val or "
                                    f"test, got {text.strip()!r}")
        if row[0] in splits:
            raise GleamDataError.at(str(path), n, "location_id", f"{row[0]!r} is listed twice")
        splits[row[0]] = name
    return splits


def convert_paired(root: str | Path, out: str | Path, *, split: str = "test", view: str | None = None,
                   overwrite: bool = False) -> LayoutSummary:
    """Paired folders (``ROOT/satellite/<id>.<ext>`` + ``ROOT/<view>/<id>.<ext>``) -> retrieval layout."""
    root = Path(root)
    if split not in ("train", "val", "test"):
        raise GleamDataError.at(str(root), None, "split", f"expected train, val or test, got {split!r}")
    if view is not None and view not in VIEWS:
        raise GleamDataError.at(str(root), None, "view", f"expected one of {', '.join(VIEWS)}, got {view!r}")
    tiles = _by_location(_need_dir(root / "satellite", "ROOT/satellite/<location_id>.<ext>"))
    if view is not None:
        folders = [(view, _need_dir(root / view if (root / view).is_dir() else root / "query",
                                    f"ROOT/{view}/<location_id>.<ext> or ROOT/query/<location_id>.<ext>"))]
    else:
        folders = [(v, root / v) for v in VIEWS if (root / v).is_dir()]
        if not folders:
            raise GleamDataError.at(str(root), None, "layout", "no query folder (expected ROOT/<view>/ for a view "
                                    f"among {', '.join(VIEWS)}, or --view with ROOT/query/)")
    splits = _paired_splits(root / "splits.csv")
    if splits is not None and (unlisted := sorted(set(tiles) - set(splits))):
        raise GleamDataError.at(str(root / "splits.csv"), None, "location_id", f"{unlisted[0]!r} has a satellite "
                                f"tile but no split ({len(unlisted)} location(s) unlisted)")
    keep = {loc for loc in tiles if splits is None or splits[loc] == split}
    queries = []
    for v, folder in folders:
        for loc, img in _by_location(folder).items():
            if loc not in tiles:
                raise GleamDataError.at(str(img), None, "location_id", f"{loc!r} has no satellite tile in "
                                        f"{root / 'satellite'}")
            if loc in keep:
                queries.append({"query_id": f"{v}/{loc}", "image": img, "query_view": v, "location_id": loc,
                                "split": split})
    gallery = [{"location_id": loc, "image": tiles[loc], "split": split} for loc in sorted(keep)]
    if not queries:
        raise GleamDataError.at(str(root), None, "split", f"no query in split {split!r}")
    return _write(Path(out), gallery, queries, split, overwrite, root, "paired")


def convert_layout(cfg: CvglConfig) -> LayoutSummary:
    """``gleamx data cvgl``: the converter of ``cfg.layout`` with the settings it takes."""
    if cfg.layout == "university1652":
        return convert_university1652(cfg.root, cfg.out, split=cfg.split, distractors=cfg.distractors,
                                      overwrite=cfg.overwrite)
    if cfg.layout == "vigor":
        return convert_vigor(cfg.root, cfg.out, split=cfg.split, same_area=not cfg.cross_area,
                             overwrite=cfg.overwrite)
    if cfg.layout == "cvact":
        return convert_cvact(cfg.root, cfg.out, split=cfg.split, cvact_set=cfg.cvact_set, overwrite=cfg.overwrite)
    if cfg.layout == "paired":
        return convert_paired(cfg.root, cfg.out, split=cfg.split, view=cfg.view, overwrite=cfg.overwrite)
    return convert_cvusa(cfg.root, cfg.out, split=cfg.split, overwrite=cfg.overwrite)
