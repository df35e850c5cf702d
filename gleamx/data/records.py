"""Turn one raw record (a JSON object from any reader) into a checked :class:`GleamSample`.

Every problem is reported as a :class:`~gleamx.errors.Problem` naming the file,
line and field, so ``gleamx data validate`` and the training/eval loaders give
the same one-line messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from gleamx.data.schema import LANGS, REQUIRED_FIELDS, SPLITS, VIEWS, GleamSample, parse_label
from gleamx.errors import Problem
from gleamx.prompts.verdict import parse_verdict

KNOWN_FIELDS = frozenset(REQUIRED_FIELDS) | {"explanation", "source", "split", "meta"}
IMAGE_FIELDS = ("query_image", "satellite_image")


class ImageChecker:
    """Checks that image files exist and decode, remembering results per path.

    Synthetic and real CVGL data reuse one satellite tile across many pairs, so
    each file is opened at most once per job.
    """

    def __init__(self, decode: bool = True) -> None:
        self.decode = decode
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
            with PILImage.open(path) as im:
                im.load()  # full decode: catches truncated files that verify() lets through
        except Exception as e:  # PIL raises several types for bad files
            detail = f"{type(e).__name__}: {e}".replace("{", "{{").replace("}", "}}")
            return "cannot decode image {path} (" + detail + "); expected a readable PNG/JPEG/WebP"
        return None


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
) -> tuple[GleamSample | None, list[Problem]]:
    """Check ``row`` and build a sample. Returns ``(sample, [])`` or ``(None, problems)``."""
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem(file, line, field, message))

    if not isinstance(row, dict):
        bad("record", f"expected a JSON object, got {type(row).__name__}")
        return None, problems

    for key in sorted(set(row) - KNOWN_FIELDS):
        bad(key, f"unknown field (expected only: {', '.join(sorted(KNOWN_FIELDS))})")
    for key in REQUIRED_FIELDS:
        if key not in row or row[key] is None:
            bad(key, "missing (required)")

    sid = row.get("id")
    if "id" in row and (not isinstance(sid, (str, int)) or str(sid).strip() == ""):
        bad("id", f"expected a non-empty string, got {sid!r}")

    image_paths: dict[str, str] = {}
    for key in IMAGE_FIELDS:
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, PILImage.Image):  # in-memory image (HF datasets)
            try:
                value.load()
            except Exception as e:
                bad(key, f"cannot decode image ({type(e).__name__}: {e})")
            else:
                image_paths[key] = value  # type: ignore[assignment]
            continue
        if not isinstance(value, str) or not value.strip():
            bad(key, f"expected an image path (string), got {value!r}")
            continue
        path = _resolve(value, base_dir)
        issue = images.problem(path, value) if images is not None else None
        if issue:
            bad(key, issue)
        else:
            image_paths[key] = path

    view = row.get("query_view")
    if view is not None and view not in VIEWS:
        bad("query_view", f"unknown view {view!r} (expected one of: {', '.join(VIEWS)})")

    label = None
    if row.get("label") is not None:
        label = parse_label(row["label"])
        if label is None:
            bad("label", f"expected a boolean or yes/no, got {row['label']!r}")

    explanation: dict[str, str] = {}
    if "explanation" in row:
        expl = row["explanation"]
        if not isinstance(expl, dict):
            bad("explanation", f"expected an object with keys {'/'.join(LANGS)}, got {type(expl).__name__}")
        elif not any(isinstance(v, str) and v.strip() for v in expl.values()):
            bad("explanation", f"empty (expected non-empty text under {' and/or '.join(LANGS)})")
        else:
            for lang, text in expl.items():
                if lang not in LANGS:
                    bad(f"explanation.{lang}", f"unknown language (expected one of: {', '.join(LANGS)})")
                elif text is None:
                    continue
                elif not isinstance(text, str) or not text.strip():
                    bad(f"explanation.{lang}", "empty (expected non-empty text)")
                else:
                    said = parse_verdict(text)
                    if label is not None and said is not None and said != label:
                        bad(
                            f"explanation.{lang}",
                            f"its verdict line says {'yes' if said else 'no'} but label is {str(label).lower()}",
                        )
                    explanation[lang] = text

    split = row.get("split", default_split)
    if not isinstance(split, str) or not split.strip():
        bad("split", f"expected a non-empty string such as {', '.join(SPLITS)}, got {split!r}")
    source = row.get("source", "")
    if not isinstance(source, str):
        bad("source", f"expected a string, got {type(source).__name__}")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        bad("meta", f"expected an object, got {type(meta).__name__}")

    if problems:
        return None, problems
    return (
        GleamSample(
            id=str(sid),
            query_image=image_paths["query_image"],
            satellite_image=image_paths["satellite_image"],
            query_view=view,
            label=bool(label),
            explanation=explanation,
            source=source,
            split=split,
            meta=meta,
        ),
        [],
    )
