"""One entry point for every data source: gleamx JSONL, ShareGPT, Hugging Face datasets.

``load_samples`` checks every record (same rules and messages as ``gleamx data
validate``) and raises the first problem as a one-line :class:`GleamDataError`,
or, with ``skip_bad=True``, skips bad records and reports how many.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.data.hf import iter_hf_records, parse_column_mapping
from gleamx.data.jsonl import iter_jsonl_rows
from gleamx.data.paths import MANIFEST_NAME, ImageRoots
from gleamx.data.records import ImageChecker, sample_from_record
from gleamx.data.schema import FEATURES, SPLITS, GleamSample, base_split, canonical_split
from gleamx.data.sharegpt import iter_sharegpt_rows, merge_language_rows, sharegpt_row_to_record
from gleamx.errors import GleamDataError, Problem

from gleamx.choices import FORMATS  # noqa: F401  (re-exported)


@dataclass
class LoadResult:
    """Samples that passed every check, and every problem found."""

    samples: list[GleamSample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_records: int = 0

    @property
    def n_bad(self) -> int:
        return self.n_records - len(self.samples)


@dataclass
class _Record:
    file: str
    line: int | None
    base_dir: Path
    row: Any
    default_split: str
    roots: ImageRoots | None
    split_dir: Path | None = None  # a directory whose <split>.jsonl is all that --split <split> reads


def _peek_is_sharegpt(path: Path) -> bool:
    if path.suffix == ".json":
        return True
    with path.open("rb") as f:  # bytes: a bad byte is the reader's to report, not a traceback here
        for raw in f:
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
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
    if str(source).count("/") == 1 and not str(source).startswith((".", "/", "~")):
        return "hf"  # looks like owner/name on the Hub
    raise GleamDataError.at(str(source), None, "path", "not found (expected a file, a directory or a Hub dataset id)")


def _split_order(p: Path) -> tuple[int, str]:
    base = base_split(p.stem)
    return (SPLITS.index(base) if base else len(SPLITS), p.name)


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The data files of a file or directory. A directory with split files (``train.jsonl``,
    ``test_human.jsonl``, ...) is read through those only, so side files (scene facts, notes) are not data."""
    if path.is_file():
        return [path]
    files = [p for p in path.iterdir() if p.suffix in suffixes and p.name not in ("dataset_info.json", MANIFEST_NAME)]
    split_files = [p for p in files if base_split(p.stem)]
    return sorted(split_files or files, key=_split_order)


def _default_split(p: Path) -> str:
    """The split of a file's rows that name none: ``test`` for ``test.jsonl`` or ``Test_human.jsonl``, else train."""
    return base_split(p.stem) or "train"


def _hf_roots(source: str, path: Path, allow_outside: bool) -> ImageRoots:
    """Image paths of a local Hugging Face dataset stay in its directory; a Hub dataset's in the caches
    that ``datasets`` and ``huggingface_hub`` download into."""
    if path.is_dir():
        return ImageRoots.for_dir(path, allow_outside=allow_outside)
    import datasets
    from huggingface_hub import constants

    caches = [datasets.config.HF_DATASETS_CACHE, constants.HF_HUB_CACHE]
    return ImageRoots(None, caches, allow_outside=allow_outside, where="the Hugging Face caches")


def iter_records(
    source: str | os.PathLike, *, format: str = "auto", split: str | None = None, columns: Any = None,
    allow_outside_paths: bool = False,
) -> Iterator[_Record]:
    """Raw records (not yet checked) from any supported source, each with the roots its images must lie in."""
    fmt = detect_format(source) if format == "auto" else format
    if fmt not in FORMATS:
        raise GleamDataError.at("--format", None, "format", f"expected one of {', '.join(FORMATS)}, got {format!r}")
    path = Path(source)
    roots: dict[Path, ImageRoots] = {}

    def roots_of(f: Path) -> ImageRoots:
        if f.parent not in roots:  # a file's images stay in its directory (or its manifest's roots)
            roots[f.parent] = ImageRoots.for_dir(f.parent, allow_outside=allow_outside_paths)
        return roots[f.parent]

    if fmt == "jsonl":
        files = _files(path, (".jsonl",))
        wanted = canonical_split(split) if split else None
        if wanted and path.is_dir() and (path / f"{wanted}.jsonl").is_file():
            files = [path / f"{wanted}.jsonl"]  # skip reading the other splits
        for f in files:
            for line, row in iter_jsonl_rows(f):
                yield _Record(str(f), line, f.parent, _ProblemRow(row) if isinstance(row, Problem) else row,
                              _default_split(f), roots_of(f), path if path.is_dir() else None)
    elif fmt == "sharegpt":
        for f in _files(path, (".json", ".jsonl")):
            converted: list[tuple[dict, str]] = []
            lines: dict[str, int | None] = {}
            for index, (line, row) in enumerate(iter_sharegpt_rows(f), start=1):
                rec, lang, problems = sharegpt_row_to_record(row, file=str(f), line=line, index=index)
                if problems:
                    for p in problems:  # a bad conversation: report it through the common checker
                        yield _Record(str(f), line, f.parent, _ProblemRow(p), _default_split(f), None)
                    continue
                lines.setdefault(str(rec["id"]), line)
                converted.append((rec, lang))
            for rec in merge_language_rows(converted):
                yield _Record(str(f), lines[str(rec["id"])], f.parent, rec, _default_split(f), roots_of(f))
    else:
        mapping = parse_column_mapping(columns)
        hf_roots = _hf_roots(str(source), path, allow_outside_paths)
        # HF split names are the dataset's own identifiers: rows without a split column take the requested one
        default = (canonical_split(split) or split.strip()) if split else "train"
        for index, rec in iter_hf_records(str(source), split=split, columns=mapping):
            base = Path(str(source)) if path.is_dir() else Path.cwd()
            yield _Record(str(source), index, base, rec, default, hf_roots)


@dataclass
class _ProblemRow:
    """A record that a format reader already found bad."""

    problem: Problem


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
    """Load and check every record.

    By default the first problem raises :class:`GleamDataError`. ``skip_bad``
    keeps going and leaves bad records out (``result.n_bad`` says how many);
    ``collect`` keeps going and keeps every problem (what ``validate`` uses).
    Duplicate ids are problems. With ``split``, only samples of that split are kept
    (split names are compared case-insensitively, ``validation`` is ``val``).

    Image paths must resolve inside the dataset directory (or the roots its
    ``gleamx_manifest.json`` names) unless ``allow_outside_paths``; images over
    ``max_image_pixels`` (default ``$GLEAMX_MAX_IMAGE_PIXELS`` or 100 M) are problems.
    """
    result = LoadResult()
    checker = ImageChecker(decode=decode_images, max_pixels=max_image_pixels)
    seen: dict[str, str] = {}
    own_file: dict[str, bool] = {}
    wanted = (canonical_split(split) or split.strip().lower()) if split else None
    for rec in iter_records(source, format=format, split=split, columns=columns,
                            allow_outside_paths=allow_outside_paths):
        result.n_records += 1
        if isinstance(rec.row, _ProblemRow):
            problems = [rec.row.problem]
            sample = None
        else:
            sample, problems = sample_from_record(
                rec.row, file=rec.file, line=rec.line, base_dir=rec.base_dir, images=checker,
                default_split=rec.default_split, roots=rec.roots,
            )
        if sample is not None and rec.split_dir is not None:
            own = rec.split_dir / f"{sample.split}.jsonl"
            if own.name != Path(rec.file).name and own_file.setdefault(own.name, own.is_file()):
                # --split <split> reads only <split>.jsonl: this row would be left out of it without a word
                problems = [Problem(rec.file, rec.line, "split",
                                    f"{sample.split!r} row in {Path(rec.file).name}, but --split {sample.split} "
                                    f"reads only {own.name} (move the row there or fix its split)")]
                sample = None
        if sample is not None:
            where = f"{rec.file}:{rec.line}"
            if sample.id in seen:
                problems = [Problem(rec.file, rec.line, "id", f"duplicate id {sample.id!r} (first seen at {seen[sample.id]})")]
                sample = None
            else:
                seen[sample.id] = where
        if problems:
            if not (skip_bad or collect):
                raise GleamDataError(problems[0])
            result.problems.extend(problems)
            continue
        assert sample is not None
        if wanted and sample.split.lower() != wanted:
            result.n_records -= 1  # not part of the requested split: neither loaded nor bad
            continue
        result.samples.append(sample)
    if result.n_records == 0 and not result.problems:
        where = f" with split {split!r}" if split else ""
        raise GleamDataError.at(str(source), None, "samples", f"no samples found{where}")
    return result


def to_dataset(samples: list[GleamSample]):
    """A ``datasets.Dataset`` with :data:`~gleamx.data.schema.FEATURES` (images decode lazily)."""
    import datasets

    rows = [s.to_features_dict() for s in samples]
    return datasets.Dataset.from_list(rows, features=FEATURES)
