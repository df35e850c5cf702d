"""A retrieval layout derived from GLEAM-X pairs, so ``localize`` and ``retrieval eval`` take ``--data`` as training
and eval do: a pairs directory, a JSONL/ShareGPT file, or a Hub dataset (``gleamx data push`` output).

The gallery is every distinct satellite image of the split; the queries are the query images of the positive
pairs, each located at its positive's satellite. Identities come from ``meta`` when ``gleamx data pairs`` wrote
it (``satellite_location_id``, ``query_id``), else from the image bytes, so the same tile shown in several
pairs is one gallery entry. Queries that appear only in negative pairs have no known location and cannot be
scored: they are counted (``n_unlocated``), never silently used. Images are written once under the layout's
directory (bytes from the Hub, copies of local files), and a rerun with the same data writes the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gleamx.errors import GleamDataError

LAYOUT_FILES = ("gallery.jsonl", "queries.jsonl")


def is_retrieval_layout(data: str | os.PathLike) -> bool:
    """Whether ``data`` is a directory holding ``retrieval/`` (or the two layout files itself)."""
    base = Path(data)
    return any(all((d / f).is_file() for f in LAYOUT_FILES) for d in (base / "retrieval", base))


@dataclass
class DerivedLayout:
    root: Path  # the directory holding retrieval/
    n_gallery: int
    n_queries: int
    n_unlocated: int  # query images seen only in negative pairs
    n_conflicting: int  # query images positive for two different tiles; the first pair's tile is kept

    def notes(self) -> list[str]:
        out = [f"retrieval layout from GLEAM-X pairs: {self.n_gallery} satellite tiles, {self.n_queries} queries "
               f"(the query views of positive pairs), in {self.root / 'retrieval'}"]
        if self.n_unlocated:
            out.append(f"{self.n_unlocated} query image(s) appear only in negative pairs: no known location, "
                       "not localized")
        if self.n_conflicting:
            out.append(f"{self.n_conflicting} query image(s) are positive for two different tiles: the first "
                       "pair's tile is their location")
        return out


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        m = json.loads(value) if value else {}
    except ValueError:
        return {}
    return m if isinstance(m, dict) else {}


def _content(image: dict[str, Any], field: str, sample_id: str) -> tuple[bytes | None, str | None]:
    """``(bytes, path)`` of a stored ``datasets.Image`` value (one of the two is set)."""
    data, path = image.get("bytes"), image.get("path")
    if data is None and not (path and Path(path).is_file()):
        raise GleamDataError.at(sample_id, None, field, f"image {path!r} not found")
    return data, path


def _digest(data: bytes | None, path: str | None) -> str:
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
    else:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _suffix(data: bytes | None, path: str | None) -> str:
    if path and Path(path).suffix:
        return Path(path).suffix.lower()
    from PIL import Image

    try:
        fmt = Image.open(io.BytesIO(data or b"")).format or ""
    except Exception:  # noqa: BLE001 - an unreadable image is refused later, by the layout's own reader
        fmt = ""
    return {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}.get(fmt, ".img")


def _write_image(data: bytes | None, path: str | None, dest: Path) -> None:
    if dest.is_file():  # same name = same content hash: written by an earlier run
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if data is not None:
        tmp.write_bytes(data)
    else:
        shutil.copyfile(path, tmp)  # type: ignore[arg-type]
    os.replace(tmp, dest)


def _safe_id(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "x"


def layout_from_pairs(source: str | os.PathLike, split: str, root: str | os.PathLike, *,
                      columns: str | None = None, allow_outside_paths: bool = False) -> DerivedLayout:
    """Write ``root/retrieval/{gallery,queries}.jsonl`` (and the images) for ``split`` of the GLEAM-X pairs in
    ``source``; see the module docstring."""
    import datasets

    from gleamx.data.load import load_samples

    ds = load_samples(source, split=split, columns=columns, allow_outside_paths=allow_outside_paths).dataset
    for name in ("query_image", "satellite_image"):
        ds = ds.cast_column(name, datasets.Image(decode=False))
    root = Path(root)
    layout = root / "retrieval"
    gallery: dict[str, dict[str, Any]] = {}  # satellite key -> row
    by_digest: dict[str, str] = {}  # satellite bytes -> key (pairs without meta)
    queries: dict[str, dict[str, Any]] = {}
    seen_queries: set[str] = set()
    conflicting = 0
    for row in ds:
        sid, meta = row["id"], _meta(row.get("meta"))
        sat_data, sat_path = _content(row["satellite_image"], "satellite_image", sid)
        sat_digest = _digest(sat_data, sat_path)
        sat_key = str(meta.get("satellite_location_id") or by_digest.get(sat_digest) or f"tile-{sat_digest}")
        by_digest.setdefault(sat_digest, sat_key)
        if sat_key not in gallery:
            image = Path("images") / "gallery" / f"{_safe_id(sat_key)}-{sat_digest}{_suffix(sat_data, sat_path)}"
            _write_image(sat_data, sat_path, layout / image)
            gallery[sat_key] = {"location_id": sat_key, "image": image.as_posix(), "split": split}
        q_data, q_path = _content(row["query_image"], "query_image", sid)
        q_digest = _digest(q_data, q_path)
        q_key = str(meta.get("query_id") or f"query-{q_digest}")
        seen_queries.add(q_key)
        if not row["label"]:
            continue
        if q_key in queries:
            conflicting += queries[q_key]["location_id"] != sat_key
            continue
        image = Path("images") / "queries" / f"{_safe_id(q_key)}-{q_digest}{_suffix(q_data, q_path)}"
        _write_image(q_data, q_path, layout / image)
        queries[q_key] = {"query_id": q_key, "image": image.as_posix(), "query_view": row["query_view"],
                          "location_id": sat_key, "split": split}
    if not queries:
        raise GleamDataError.at(str(source), None, "label",
                                f"no positive pair in split {split!r}: localize needs queries with a known tile")
    layout.mkdir(parents=True, exist_ok=True)
    for name, rows in (("gallery.jsonl", gallery.values()), ("queries.jsonl", queries.values())):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        tmp = layout / (name + ".part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, layout / name)
    return DerivedLayout(root, len(gallery), len(queries), len(seen_queries - set(queries)), conflicting)


def retrieval_root(data: str, split: str, workdir: str | os.PathLike, say: Any = print) -> str:
    """``data`` itself when it is a retrieval layout, else the layout derived from its GLEAM-X pairs in
    ``workdir`` (what it holds is said in a note)."""
    if is_retrieval_layout(data):
        return data
    derived = layout_from_pairs(data, split, workdir)
    for note in derived.notes():
        say(f"note: {note}")
    return str(derived.root)


__all__ = ["DerivedLayout", "is_retrieval_layout", "layout_from_pairs", "retrieval_root"]
