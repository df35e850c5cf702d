"""The GLEAM-X sample: one query view + one satellite image, a match label, an explanation.

On disk (gleamx JSONL), one sample per line::

    {"id": "syn-000001-uav-pos", "query_image": "images/q/000001.png",
     "satellite_image": "images/sat/000001.png", "query_view": "uav", "label": true,
     "explanation": {"en": "...\\nAnswer: Yes", "zh": "...\\n结论：是"},
     "source": "synthetic", "split": "train", "meta": {"location_id": "L000001"}}

Image paths are relative to the JSONL file. In memory a sample is a
:class:`GleamSample` whose image fields hold absolute paths (opened lazily) or
PIL images. As a ``datasets.Dataset`` it has :data:`FEATURES`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets
from PIL import Image as PILImage

# Allowed query views (UAV/drone, street map, panorama, ground photo), explanation languages, canonical splits.
# Split names are read case-insensitively (``Test`` is ``test``, ``validation`` is ``val``); a canonical split
# with a suffix names a sub-split (``test_human``, ``val-hard``). Any other value is a validation problem, never
# a row silently left out of every split.
from gleamx.choices import LANGS, SPLITS, VIEWS  # noqa: F401  (defined once, re-exported)

_SPLIT_NAME = re.compile(r"(train|validation|val|test)([_.-][a-z0-9][a-z0-9_.-]*)?")

REQUIRED_FIELDS: tuple[str, ...] = ("id", "query_image", "satellite_image", "query_view", "label")

ImageLike = str | PILImage.Image

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "query_image": datasets.Image(),
        "satellite_image": datasets.Image(),
        "query_view": datasets.Value("string"),
        "label": datasets.Value("bool"),
        "explanation": {"en": datasets.Value("string"), "zh": datasets.Value("string")},
        "source": datasets.Value("string"),
        "split": datasets.Value("string"),
        # Free-form metadata (location id, difficulty, ...) as a JSON string so that
        # samples from different sources share one Arrow schema.
        "meta": datasets.Value("string"),
    }
)
"""``datasets.Features`` of a GLEAM-X dataset (images decode lazily on access)."""


@dataclass
class GleamSample:
    """One GLEAM-X sample. ``explanation`` maps a language code to its text."""

    id: str
    query_image: ImageLike
    satellite_image: ImageLike
    query_view: str
    label: bool
    explanation: dict[str, str] = field(default_factory=dict)
    source: str = ""
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_features_dict(self) -> dict[str, Any]:
        """A row for :data:`FEATURES` (missing languages become ``None``)."""
        return {
            "id": self.id,
            "query_image": self.query_image,
            "satellite_image": self.satellite_image,
            "query_view": self.query_view,
            "label": bool(self.label),
            "explanation": {lang: self.explanation.get(lang) for lang in LANGS},
            "source": self.source,
            "split": self.split,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
        }

    @classmethod
    def from_features_dict(cls, row: dict[str, Any]) -> "GleamSample":
        """Inverse of :meth:`to_features_dict` (works on a ``datasets`` row)."""
        expl = {k: v for k, v in (row.get("explanation") or {}).items() if v}
        meta = row.get("meta") or "{}"
        return cls(
            id=row["id"],
            query_image=row["query_image"],
            satellite_image=row["satellite_image"],
            query_view=row["query_view"],
            label=bool(row["label"]),
            explanation=expl,
            source=row.get("source") or "",
            split=row.get("split") or "",
            meta=json.loads(meta) if isinstance(meta, str) else dict(meta),
        )


def _sample_image(value: Any) -> Any:
    """A stored image as a sample holds it: the path, or the decoded in-memory image."""
    if isinstance(value, dict) and value.get("bytes"):
        from gleamx.data.images import open_image

        return open_image(value["bytes"], mode=None, name="(in-memory image)")
    return value.get("path") if isinstance(value, dict) else value


def samples_of(data: Any, batch_size: int = 256) -> Iterator[GleamSample]:
    """The samples of a :data:`FEATURES` ``datasets.Dataset`` or stream (``IterableDataset``; one batch in memory at
    a time), or of an iterable of :class:`GleamSample` (passed through)."""
    if not isinstance(data, (datasets.Dataset, datasets.IterableDataset)):
        yield from data
        return
    for name in ("query_image", "satellite_image"):
        data = data.cast_column(name, datasets.Image(decode=False))
    for batch in data.iter(batch_size=batch_size):
        for values in zip(*batch.values()):
            row = dict(zip(batch, values))
            row["query_image"], row["satellite_image"] = (_sample_image(row[f]) for f in ("query_image", "satellite_image"))
            yield GleamSample.from_features_dict(row)


IMAGE_COLUMNS: tuple[str, ...] = ("query_image", "satellite_image")
"""The image columns of :data:`FEATURES`."""


def _embed_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Both image columns with their bytes (read from the file when the row holds a path); the path is reduced
    to the file's name, as ``datasets`` does when it embeds files."""
    out = {}
    for col in IMAGE_COLUMNS:
        values = []
        for v in batch[col]:
            data, path = v.get("bytes"), v.get("path")
            if data is None:
                with open(path, "rb") as f:
                    data = f.read()
            values.append({"bytes": data, "path": os.path.basename(path) if path else None})
        out[col] = values
    return out


def with_image_bytes(data: datasets.Dataset, *, desc: str = "embedding images") -> datasets.Dataset:
    """``data`` (:data:`FEATURES`) with every image's file bytes in its row, never decoded here: a Parquet file
    written from it holds the images themselves (the Hub upload, the lmms-eval export)."""
    for col in IMAGE_COLUMNS:
        data = data.cast_column(col, datasets.Image(decode=False))
    features = datasets.Features({**data.features, **{col: datasets.Image() for col in IMAGE_COLUMNS}})
    return data.map(_embed_batch, batched=True, batch_size=64, features=features, desc=desc)


_TRUE = {"true", "yes", "y", "1", "match", "same", "是", "匹配", "相同"}
_FALSE = {"false", "no", "n", "0", "mismatch", "different", "否", "不匹配", "不同"}


def parse_label(value: Any) -> bool | None:
    """A match label from a bool, 0/1, or yes/no-like string; ``None`` if it is none of these."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


def canonical_split(value: Any) -> str | None:
    """The canonical spelling of a split name (stripped, lower-case, ``validation`` -> ``val``), or
    ``None`` if ``value`` is not ``train``/``val``/``validation``/``test``, optionally with a ``_``, ``-``
    or ``.`` suffix (``test_human``)."""
    if not isinstance(value, str):
        return None
    m = _SPLIT_NAME.fullmatch(value.strip().lower())
    if m is None:
        return None
    return ("val" if m.group(1) == "validation" else m.group(1)) + (m.group(2) or "")


def base_split(value: Any) -> str | None:
    """``train``, ``val`` or ``test`` for a split name or a file stem that starts with one
    (``test_human``, ``train-00000-of-00001``), else ``None``."""
    m = _SPLIT_NAME.match(value.strip().lower()) if isinstance(value, str) else None
    if m is None or (m.end(1) < len(value.strip()) and value.strip()[m.end(1)] not in "_.-"):
        return None
    return "val" if m.group(1) == "validation" else m.group(1)


def open_rgb(image: ImageLike, *, max_pixels: int | None = None) -> PILImage.Image:
    """Open a path (or take a PIL image, or ``datasets``' raw ``{"bytes", "path"}`` value) and return it
    as RGB, decoded once, after checking its pixel count (:func:`gleamx.data.images.open_image`)."""
    from gleamx.data.images import open_image

    return open_image(image, max_pixels=max_pixels, mode="RGB")
