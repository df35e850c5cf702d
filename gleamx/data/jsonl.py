"""gleamx JSONL: one sample per line, image paths relative to the JSONL file."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gleamx.data.images import open_image
from gleamx.data.paths import record_image_roots
from gleamx.data.schema import GleamSample, samples_of
from gleamx.data.text import iter_lines, parse_json, surrogate_problem
from gleamx.errors import GleamDataError, Problem


def iter_jsonl_rows(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_json)`` for each non-blank line.

    A line that is not valid JSON, or not UTF-8 (bytes are decoded line by line), yields a
    :class:`~gleamx.errors.Problem` in place of the object, so a validator can report it and go on.
    """
    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "file not found (expected a .jsonl file)")
    for lineno, line in iter_lines(path):
        if isinstance(line, Problem):
            yield lineno, line
            continue
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except ValueError as e:
            row = Problem(str(path), lineno, "json", f"expected one JSON object per line ({e})")
        else:
            row = surrogate_problem(str(path), lineno, line, row) or row
        yield lineno, row



def read_json_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line_number, object)`` for every non-blank line of a JSONL file that must be read whole (a retrieval
    layout, a predictions file): the first line that is not UTF-8, not JSON or not an object raises its one-line
    ``file:line: field: expected ...`` error. The lenient form, for validators, is :func:`iter_jsonl_rows`."""
    for lineno, row in iter_jsonl_rows(path):
        if isinstance(row, Problem):
            raise GleamDataError(row)
        if not isinstance(row, dict):
            raise GleamDataError.at(str(path), lineno, "json",
                                    f"expected one JSON object per line, got {type(row).__name__}")
        yield lineno, row

def _rel(image: Any, base: Path) -> str:
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError("sample_to_json needs image paths; write in-memory images with save_in_memory_images first")
    p = Path(image)
    if not p.is_absolute():
        return p.as_posix()
    return Path(os.path.relpath(p, base)).as_posix()


def images_dir(path: str | os.PathLike) -> Path:
    """Where a data file's in-memory images are written: ``<stem>_images/`` beside it."""
    path = Path(path)
    return path.parent / f"{path.stem}_images"


def save_in_memory_images(sample: GleamSample, folder: Path, index: int) -> GleamSample:
    """``sample`` with each in-memory image (a ``datasets`` dataset's, PIL or encoded bytes) written to
    ``folder`` as a PNG (``<index>-query.png``, ``<index>-satellite.png``) and its path put in its place."""
    changes: dict[str, str] = {}
    for name, tag in (("query_image", "query"), ("satellite_image", "satellite")):
        image = getattr(sample, name)
        if isinstance(image, (str, os.PathLike)):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{index:06d}-{tag}.png"
        open_image(image, mode=None, name=f"{sample.id}: {name}").save(target, format="PNG")
        changes[name] = str(target.resolve())
    return dataclasses.replace(sample, **changes) if changes else sample


def sample_to_json(sample: GleamSample, base_dir: str | os.PathLike) -> dict[str, Any]:
    """The JSON object for ``sample`` with image paths made relative to ``base_dir``."""
    base = Path(base_dir).resolve()
    row: dict[str, Any] = {
        "id": sample.id,
        "query_image": _rel(sample.query_image, base),
        "satellite_image": _rel(sample.satellite_image, base),
        "query_view": sample.query_view,
        "label": bool(sample.label),
        "source": sample.source,
        "split": sample.split,
    }
    explanation = {k: v for k, v in sample.explanation.items() if v}
    if explanation:  # label-only samples carry no explanation key (an empty one is invalid)
        row["explanation"] = explanation
    if sample.meta:
        row["meta"] = sample.meta
    return row


def write_samples(samples: Iterable[GleamSample] | Any, path: str | os.PathLike) -> int:
    """Write samples (or a :data:`~gleamx.data.schema.FEATURES` dataset) as gleamx JSONL (deterministic
    bytes: fixed key order, UTF-8, ``\\n``). In-memory images are written as PNG files under
    ``<stem>_images/`` beside it (:func:`save_in_memory_images`) and named by relative path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    images: list[Any] = []
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for s in samples_of(samples):
            s = save_in_memory_images(s, images_dir(path), n + 1)
            f.write(json.dumps(sample_to_json(s, path.parent), ensure_ascii=False, sort_keys=False) + "\n")
            images += (s.query_image, s.satellite_image)
            n += 1
    # images outside the output's directory (a converted copy, localize's candidates): name their root in
    # the directory's manifest, so that gleamx reads this file back without --allow-outside-paths
    record_image_roots(path.parent, images)
    return n
