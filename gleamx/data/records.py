"""Turn one raw record (a JSON object from any reader) into a checked :class:`GleamSample`.

Every problem is reported as a :class:`~gleamx.errors.Problem` naming the file,
line and field, so ``gleamx data validate`` and the training/eval loaders give
the same one-line messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from gleamx.data.images import ImageTooLargeError, max_image_pixels, open_image, open_lazy
from gleamx.data.paths import ImageRoots
from gleamx.data.schema import LANGS, REQUIRED_FIELDS, SPLITS, VIEWS, GleamSample, canonical_split, parse_label
from gleamx.errors import GleamDataError, Problem
from gleamx.task.verdict import verdict_problem

KNOWN_FIELDS = frozenset(REQUIRED_FIELDS) | {"explanation", "source", "split", "meta"}
IMAGE_FIELDS = ("query_image", "satellite_image")


class ImageChecker:
    """Checks that image files exist, are within the pixel cap and decode, remembering results per path.

    Synthetic and real CVGL data reuse one satellite tile across many pairs, so
    each file is opened at most once per job. The pixel count is read from the
    header before anything is decoded (:mod:`gleamx.data.images`).
    """

    def __init__(self, decode: bool = True, max_pixels: int | None = None) -> None:
        self.decode = decode
        self.max_pixels = max_image_pixels(max_pixels)
        self._seen: dict[str, str | None] = {}

    def problem(self, path: str, shown: str | None = None) -> str | None:
        """``None`` if the image is usable, else what is wrong with it (naming it as ``shown``)."""
        if path not in self._seen:
            self._seen[path] = self._check(path)
        issue = self._seen[path]
        return issue.format(path=shown or path) if issue else None

    def _check(self, path: str) -> str | None:
        # Messages are templates: the caller names the file the way the user wrote it.
        if not os.path.isfile(path):
            return "image file not found: {path}"
        if not self.decode:
            return None
        try:
            with open_lazy(path, max_pixels=self.max_pixels) as im:
                im.load()  # full decode: catches truncated files that verify() lets through
        except GleamDataError as e:  # too large, or a shape the model's processor refuses
            return "image {path} is " + _escape(e.problem.message)
        except Exception as e:  # PIL raises several types for bad files
            detail = _escape(f"{type(e).__name__}: {e}")
            return "cannot decode image {path} (" + detail + "); expected a readable PNG/JPEG/WebP"
        return None

    def in_memory(self, value: Any) -> tuple[Any, str | None]:
        """Encoded bytes or a PIL image -> ``(value, None)`` once it decodes (bytes stay encoded, to be
        decoded lazily from Arrow), or ``(None, what is wrong)``."""
        try:
            open_image(value, max_pixels=self.max_pixels, mode=None, name="(in-memory image)")
            return (bytes(value) if isinstance(value, bytearray) else value), None
        except ImageTooLargeError as e:
            return None, "in-memory image is " + e.problem.message
        except GleamDataError as e:
            return None, e.problem.message


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _resolve(value: str, base_dir: Path) -> str:
    p = Path(value).expanduser()
    return os.path.abspath(p if p.is_absolute() else (base_dir / p))


def sample_from_record(
    row: Any,
    *,
    file: str,
    line: int | None,
    base_dir: Path,
    images: ImageChecker | None,
    default_split: str = "train",
    roots: ImageRoots | None = None,
) -> tuple[GleamSample | None, list[Problem]]:
    """Check ``row`` and build a sample. Returns ``(sample, [])`` or ``(None, problems)``.

    Image paths must resolve inside ``roots`` (see :mod:`gleamx.data.paths`; ``None``: no check).
    In-memory images (a ``datasets`` dataset's encoded bytes) are checked and kept encoded.
    """
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem(file, line, field, message))

    if not isinstance(row, dict):
        bad("record", f"expected a JSON object, got {type(row).__name__}")
        return None, problems
    _check_fields(row, bad)
    image_paths = _check_images(row, bad, base_dir, images, roots)
    view = row.get("query_view")
    if view is not None and view not in VIEWS:
        bad("query_view", f"unknown view {view!r} (expected one of: {', '.join(VIEWS)})")
    label = None
    if row.get("label") is not None:
        label = parse_label(row["label"])
        if label is None:
            bad("label", f"expected a boolean or yes/no, got {row['label']!r}")
    explanation = _check_explanation(row, bad, label)
    split, source, meta = _check_provenance(row, bad, default_split)
    if problems:
        return None, problems
    sample = GleamSample(
        id=str(row["id"]), query_image=image_paths["query_image"], satellite_image=image_paths["satellite_image"],
        query_view=view, label=bool(label), explanation=explanation, source=source, split=split, meta=meta,
    )
    return sample, []


Bad = Callable[[str, str], None]


def _check_fields(row: dict, bad: Bad) -> None:
    """Unknown and missing fields, and the id."""
    for key in sorted(set(row) - KNOWN_FIELDS):
        bad(key, f"unknown field (expected only: {', '.join(sorted(KNOWN_FIELDS))})")
    for key in REQUIRED_FIELDS:
        if key not in row or row[key] is None:
            bad(key, "missing (required)")
    sid = row.get("id")
    if "id" in row and (not isinstance(sid, (str, int)) or str(sid).strip() == ""):
        bad("id", f"expected a non-empty string, got {sid!r}")


def _check_images(row: dict, bad: Bad, base_dir: Path, images: ImageChecker | None,
                  roots: ImageRoots | None) -> dict[str, Any]:
    """``{field: absolute path, or checked in-memory image}`` for each usable image field."""
    found: dict[str, Any] = {}
    for key in IMAGE_FIELDS:
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, dict) and value.get("bytes"):  # HF datasets' raw Image value
            value = value["bytes"]
        elif isinstance(value, dict) and isinstance(value.get("path"), str):
            value = value["path"]  # a path-only Image value: checked like any path below
        if isinstance(value, (PILImage.Image, bytes, bytearray)):  # in-memory image (HF datasets)
            kept, issue = (images or ImageChecker()).in_memory(value)
        elif not isinstance(value, str) or not value.strip():
            kept, issue = None, f"expected an image path (string), got {value!r}"
        else:
            kept = _resolve(value, base_dir)
            issue = roots.problem(kept, value) if roots is not None else None
            if not issue and images is not None:
                issue = images.problem(kept, value)
        if issue:
            bad(key, issue)
        else:
            found[key] = kept
    return found


def _check_explanation(row: dict, bad: Bad, label: bool | None) -> dict[str, str]:
    """The explanation texts by language; each verdict line must agree with the label."""
    explanation: dict[str, str] = {}
    if "explanation" not in row:
        return explanation
    expl = row["explanation"]
    if not isinstance(expl, dict):
        bad("explanation", f"expected an object with keys {'/'.join(LANGS)}, got {type(expl).__name__}")
        return explanation
    if not any(isinstance(v, str) and v.strip() for v in expl.values()):
        bad("explanation", f"empty (expected non-empty text under {' and/or '.join(LANGS)})")
        return explanation
    for lang, text in expl.items():
        if lang not in LANGS:
            bad(f"explanation.{lang}", f"unknown language (expected one of: {', '.join(LANGS)})")
        elif text is None:
            continue
        elif not isinstance(text, str) or not text.strip():
            bad(f"explanation.{lang}", "empty (expected non-empty text)")
        else:
            problem = verdict_problem(text, label)
            if problem:
                bad(f"explanation.{lang}", problem)
            explanation[lang] = text
    return explanation


def _check_provenance(row: dict, bad: Bad, default_split: str) -> tuple[Any, Any, Any]:
    """``(split, source, meta)``; split names are read case-insensitively (a ``Test`` row is in ``test``)."""
    split = row.get("split", default_split)
    if not isinstance(split, str) or not split.strip():
        bad("split", f"expected a non-empty string such as {', '.join(SPLITS)}, got {split!r}")
    elif "split" in row:
        name = canonical_split(split)
        if name is None:
            bad("split", f"unknown split {split!r} (expected {', '.join(SPLITS)} or validation, any case, "
                         "optionally with a suffix such as test_human)")
        split = name or split
    source = row.get("source", "")
    if not isinstance(source, str):
        bad("source", f"expected a string, got {type(source).__name__}")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        bad("meta", f"expected an object, got {type(meta).__name__}")
    return split, source, meta
