"""One entry point for every data source: gleamx JSONL, ShareGPT, Hugging Face datasets.

``load_samples`` reads a source into a ``datasets.Dataset`` with
:data:`~gleamx.data.schema.FEATURES`: the reader writes the rows as read to
Arrow, one at a time (or, for a Hugging Face dataset, uses its own
memory-mapped rows), and validation is a ``.map``/``.filter`` pass over them
(:mod:`gleamx.data.check`), so memory stays flat in the number of samples.
Every record is checked with the same rules and messages as ``gleamx data
validate``; the first problem raises a one-line :class:`GleamDataError`, or,
with ``skip_bad=True``, bad records are left out and counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets

from gleamx.data.arrow import batch_rows, write_dataset
from gleamx.data.check import RAW_FEATURES, Checker, Record, checked, empty_dataset, raw_row
from gleamx.data.hf import check_columns_apply, hf_record, hf_splits, parse_column_mapping, prepare_hf
from gleamx.data.jsonl import iter_jsonl_rows
from gleamx.data.text import parse_json
from gleamx.data.paths import MANIFEST_NAME, ImageRoots
from gleamx.sources import looks_like_path, missing_path
from gleamx.data.schema import FEATURES, SPLITS, GleamSample, base_split, canonical_split, samples_of
from gleamx.data.sharegpt import iter_sharegpt_rows, merge_language_rows, sharegpt_row_to_record
from gleamx.errors import GleamDataError, Problem

from gleamx.choices import FORMATS  # noqa: F401  (re-exported)


@dataclass
class LoadResult:
    """The samples that passed every check, as a ``datasets.Dataset`` with :data:`FEATURES`, and every
    problem found. ``samples`` lists them as :class:`GleamSample` objects (built on first use)."""

    dataset: datasets.Dataset = field(default_factory=empty_dataset)
    problems: list[Problem] = field(default_factory=list)
    n_records: int = 0

    @property
    def n_bad(self) -> int:
        return self.n_records - len(self.dataset)

    @cached_property
    def samples(self) -> list[GleamSample]:
        return list(samples_of(self.dataset))


def _peek_is_sharegpt(path: Path) -> bool:
    if path.suffix == ".json":
        return True
    with path.open("rb") as f:  # bytes: a bad byte is the reader's to report, not a traceback here
        for raw in f:
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
            if line.strip():
                try:
                    row = parse_json(line)
                except ValueError:  # the reader reports it, with its line
                    return False
                return isinstance(row, dict) and ("messages" in row or "conversations" in row)
    return False


def detect_format(source: str | os.PathLike) -> str:
    """``jsonl``, ``sharegpt`` or ``hf`` for a file, a directory or a Hub id."""
    path = Path(source)
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise GleamDataError.at(str(path), None, "path", "expected a .jsonl or .json file, or a dataset directory")
        return "sharegpt" if _peek_is_sharegpt(path) else "jsonl"
    if path.is_dir():
        if list(path.glob("*.jsonl")) and not (path / "dataset_dict.json").is_file():
            return "sharegpt" if _peek_is_sharegpt(sorted(path.glob("*.jsonl"))[0]) else "jsonl"
        if (path / "dataset_info.json").is_file() and list(path.glob("*.json")) and not (path / "state.json").is_file():
            return "sharegpt"
        return "hf"
    if not looks_like_path(str(source)) and str(source).count("/") == 1:
        return "hf"  # owner/name on the Hub
    missing = missing_path(source)
    raise GleamDataError.at(str(source), None, "path", "not found (" + (missing.split("(", 1)[1] if missing else
                            "expected a file, a directory or a Hub dataset id)"))


def _split_order(p: Path) -> tuple[int, str]:
    base = base_split(p.stem)
    return (SPLITS.index(base) if base else len(SPLITS), p.name)


def data_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The data files of a file or directory. A directory with split files (``train.jsonl``,
    ``test_human.jsonl``, ...) is read through those only, so side files (scene facts, notes) are not data."""
    if path.is_file():
        return [path]
    files = [p for p in path.iterdir() if p.suffix in suffixes and p.name not in ("dataset_info.json", MANIFEST_NAME)]
    split_files = [p for p in files if base_split(p.stem)]
    return sorted(split_files or files, key=_split_order)


def default_split(p: Path) -> str:
    """The split of a file's rows that name none: ``test`` for ``test.jsonl`` or ``Test_human.jsonl``, else train."""
    return base_split(p.stem) or "train"


def hf_roots(source: str, path: Path, allow_outside: bool) -> ImageRoots:
    """Image paths of a local Hugging Face dataset stay in its directory; a Hub dataset's in the caches
    that ``datasets`` and ``huggingface_hub`` download into."""
    if path.is_dir():
        return ImageRoots.for_dir(path, allow_outside=allow_outside)
    import datasets
    from huggingface_hub import constants

    caches = [datasets.config.HF_DATASETS_CACHE, constants.HF_HUB_CACHE]
    return ImageRoots(None, caches, allow_outside=allow_outside, where="the Hugging Face caches")


def format_of(source: str | os.PathLike, format: str) -> str:
    fmt = detect_format(source) if format == "auto" else format
    if fmt not in FORMATS:
        raise GleamDataError.at("--format", None, "format", f"expected one of {', '.join(FORMATS)}, got {format!r}")
    return fmt


def iter_raw_rows(source: str | os.PathLike, fmt: str, split: str | None = None) -> Iterator[dict[str, Any]]:
    """:data:`~gleamx.data.check.RAW_FEATURES` rows of a gleamx JSONL or ShareGPT source, one at a time."""
    path = Path(source)
    if fmt == "jsonl":
        files = data_files(path, (".jsonl",))
        wanted = canonical_split(split) if split else None
        if wanted and path.is_dir() and (path / f"{wanted}.jsonl").is_file():
            files = [path / f"{wanted}.jsonl"]  # skip reading the other splits
        for f in files:
            for line, row in iter_jsonl_rows(f):
                yield raw_row(f, line, row, default_split(f), path if path.is_dir() else None)
        return
    for f in data_files(path, (".json", ".jsonl")):
        converted: list[tuple[dict, str]] = []  # a sample's language rows may lie anywhere in its file
        lines: dict[str, int | None] = {}
        for index, (line, row) in enumerate(iter_sharegpt_rows(f), start=1):
            rec, lang, problems = sharegpt_row_to_record(row, file=str(f), line=line, index=index)
            for p in problems:  # a bad conversation: reported through the common checker
                yield raw_row(f, line, p, default_split(f))
            if not problems:
                lines.setdefault(str(rec["id"]), line)
                converted.append((rec, lang))
        for rec in merge_language_rows(converted):
            yield raw_row(f, lines[str(rec["id"])], rec, default_split(f))


def _hf_checked(source: str | os.PathLike, split: str | None, columns: Any, checker: Checker) -> list[datasets.Dataset]:
    """Each split of a Hugging Face dataset checked by a ``.map`` over its own memory-mapped rows. Rows
    without a split column are in the split they come from (``--split``'s, else the dataset's split name)."""
    mapping = parse_column_mapping(columns)
    to_field = {col: fld for fld, col in mapping.items()}
    path = Path(source)
    roots = hf_roots(str(source), path, checker.allow_outside)
    base = path if path.is_dir() else Path.cwd()
    parts, offset = [], 0
    for name, ds in hf_splits(str(source), split):
        ds = prepare_hf(ds, str(source), mapping)
        given = split or name
        default = (canonical_split(given) or given.strip()) if given else "train"

        def records(batch: dict[str, list], indices: list[int], default: str = default,
                    start: int = offset) -> Iterator[Record]:
            for i, row in zip(indices, batch_rows(batch)):
                yield Record(str(source), start + i + 1, base, hf_record(row, to_field), default, roots)

        parts.append(checked(ds, records, checker))
        offset += len(ds)
    return parts


def no_samples(source: str | os.PathLike, split: str | None) -> GleamDataError:
    """The one line for a source (or its ``split``) that holds no sample, read whole or as a stream."""
    where = f" with split {split!r}" if split else ""
    return GleamDataError.at(str(source), None, "samples", f"no samples found{where}")


def load_samples(
    source: str | os.PathLike,
    *,
    format: str = "auto",
    split: str | None = None,
    columns: Any = None,
    skip_bad: bool = False,
    decode_images: bool = True,
    collect: bool = False,
    allow_outside_paths: bool = False,
    max_image_pixels: int | None = None,
) -> LoadResult:
    """Load and check every record: ``result.dataset`` is a ``datasets.Dataset`` with :data:`FEATURES`
    (image paths absolute, in-memory images as encoded bytes; both decode lazily).

    By default the first problem raises :class:`GleamDataError`. ``skip_bad``
    keeps going and leaves bad records out (``result.n_bad`` says how many);
    ``collect`` keeps going and keeps every problem (what ``validate`` uses).
    Duplicate ids are problems. With ``split``, only samples of that split are kept
    (split names are compared case-insensitively, ``validation`` is ``val``).

    Image paths must resolve inside the dataset directory (or the roots its
    ``gleamx_manifest.json`` names) unless ``allow_outside_paths``; images over
    ``max_image_pixels`` (default ``$GLEAMX_MAX_IMAGE_PIXELS`` or 100 M) are problems.
    """
    fmt = format_of(source, format)
    checker = Checker(split=split, go_on=skip_bad or collect, decode=decode_images, max_pixels=max_image_pixels,
                      allow_outside=allow_outside_paths)
    if fmt == "hf":
        parts = _hf_checked(source, split, columns, checker)
    else:
        check_columns_apply(source, fmt, columns)
        raw = write_dataset(iter_raw_rows(source, fmt, split), RAW_FEATURES, "raw")
        parts = [checked(raw, checker.raw_records, checker)]
    if checker.n_records == 0 and not checker.problems:
        raise no_samples(source, split)
    ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return LoadResult(ds, checker.problems, checker.n_records)


def to_dataset(samples: Iterable[GleamSample]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with :data:`~gleamx.data.schema.FEATURES` (images decode lazily)."""
    return write_dataset((s.to_features_dict() for s in samples), FEATURES, "samples")
