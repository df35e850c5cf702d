"""Validation as ``datasets`` passes: a ``.map`` checks every record, a ``.filter`` keeps the good ones.

Records arrive as Arrow rows: :data:`RAW_FEATURES` rows for gleamx JSONL and
ShareGPT (the row as read, as JSON text, or the problem its reader found), or a
Hugging Face dataset's own rows. The ``.map`` turns each into a
:data:`~gleamx.data.schema.FEATURES` row through :func:`sample_from_record`,
so every problem is the same one-line ``file:line: field: expected ...`` as in
``gleamx data validate``; the first raises :class:`GleamDataError` unless the
caller goes on (``skip_bad``, ``collect``) and counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from gleamx.data.arrow import Rows, batch_rows, keep_where, map_batches
from gleamx.data.paths import ImageRoots
from gleamx.data.records import ImageChecker, sample_from_record
from gleamx.data.schema import FEATURES, GleamSample, canonical_split
from gleamx.errors import GleamDataError, Problem

RAW_FEATURES = datasets.Features({
    "file": datasets.Value("string"), "line": datasets.Value("int64"), "default_split": datasets.Value("string"),
    "split_dir": datasets.Value("string"),  # a directory whose <split>.jsonl is all that --split <split> reads
    "record": datasets.Value("string"),  # the row as JSON, or null when the reader found it bad ...
    "problem": datasets.Value("string"),  # ... and then its Problem as JSON [file, line, field, message]
})


def raw_row(file: Path, line: int | None, row: Any, default_split: str, split_dir: Path | None = None) -> dict[str, Any]:
    """A :data:`RAW_FEATURES` row for a record as a reader found it (or the :class:`Problem` it found)."""
    bad = isinstance(row, Problem)
    return {"file": str(file), "line": line, "default_split": default_split,
            "split_dir": str(split_dir) if split_dir else None,
            "record": None if bad else json.dumps(row, ensure_ascii=False),
            "problem": json.dumps([row.file, row.line, row.field, row.message]) if bad else None}


@dataclass
class Record:
    """One record to check, with where it came from and the roots its images must lie in."""

    file: str
    line: int | None
    base_dir: Path
    row: Any
    default_split: str
    roots: ImageRoots | None
    split_dir: Path | None = None


@dataclass
class ProblemRow:
    """A record that a format reader already found bad."""

    problem: Problem


class Checker:
    """Checks records one by one (the body of the validation ``.map``), keeping the problems, the ids seen
    and the number of records; raises the first problem unless asked to go on."""

    def __init__(self, *, split: str | None, go_on: bool, decode: bool, max_pixels: int | None,
                 allow_outside: bool, stream: bool = False) -> None:
        self.wanted = (canonical_split(split) or split.strip().lower()) if split else None
        self.go_on = go_on
        self.allow_outside = allow_outside
        self.stream = stream
        self.images = ImageChecker(decode=decode, max_pixels=max_pixels)
        self.problems: list[Problem] = []
        self.n_records = 0
        self._seen: dict[str, Any] = {}
        self._own_file: dict[str, bool] = {}
        self._roots: dict[Path, ImageRoots] = {}

    def roots_of(self, f: Path) -> ImageRoots:
        """A file's images stay in its directory (or its manifest's roots)."""
        if f.parent not in self._roots:
            self._roots[f.parent] = ImageRoots.for_dir(f.parent, allow_outside=self.allow_outside)
        return self._roots[f.parent]

    def check(self, rec: Record) -> dict[str, Any] | None:
        """The :data:`FEATURES` row of a good record in the wanted split, else ``None``."""
        self.n_records += 1
        if isinstance(rec.row, ProblemRow):
            sample, problems = None, [rec.row.problem]
        else:
            sample, problems = sample_from_record(
                rec.row, file=rec.file, line=rec.line, base_dir=rec.base_dir, images=self.images,
                default_split=rec.default_split, roots=rec.roots,
            )
        if sample is not None:
            problems = self._placement(rec, sample)
        if problems:
            if not self.go_on:
                raise GleamDataError(problems[0])
            self.problems.extend(problems)
            return None
        assert sample is not None
        if self.wanted and sample.split.lower() != self.wanted:
            self.n_records -= 1  # not part of the requested split: neither loaded nor bad
            return None
        return sample.to_features_dict()

    def _placement(self, rec: Record, sample: GleamSample) -> list[Problem]:
        """A row in the wrong split file, or a duplicate id."""
        if rec.split_dir is not None:
            own = rec.split_dir / f"{sample.split}.jsonl"
            if own.name != Path(rec.file).name and self._own_file.setdefault(own.name, own.is_file()):
                # --split <split> reads only <split>.jsonl: this row would be left out of it without a word
                return [Problem(rec.file, rec.line, "split",
                                f"{sample.split!r} row in {Path(rec.file).name}, but --split {sample.split} "
                                f"reads only {own.name} (move the row there or fix its split)")]
        here = f"{rec.file}:{rec.line}"
        if self.stream:
            # A stream is read again on each pass (and a row's index is per process): a second row under the same id
            # is a duplicate when what it says differs; the same row again is the next pass.
            what = hash((sample.label, sample.query_view, sample.split, tuple(sorted(sample.explanation.items()))))
            first = self._seen.setdefault(sample.id, (here, what))
            if first[1] != what:
                return [Problem(rec.file, rec.line, "id", f"duplicate id {sample.id!r} (first seen at {first[0]})")]
            return []
        if sample.id in self._seen:
            return [Problem(rec.file, rec.line, "id",
                            f"duplicate id {sample.id!r} (first seen at {self._seen[sample.id]})")]
        self._seen[sample.id] = here
        return []

    def raw_records(self, batch: dict[str, list], indices: list[int]) -> Iterator[Record]:
        """The records of a batch of :data:`RAW_FEATURES` rows."""
        for r in batch_rows(batch):
            f = Path(r["file"])
            row = ProblemRow(Problem(*json.loads(r["problem"]))) if r["problem"] is not None else json.loads(r["record"])
            yield Record(r["file"], r["line"], f.parent, row, r["default_split"],
                         None if isinstance(row, ProblemRow) else self.roots_of(f),
                         Path(r["split_dir"]) if r["split_dir"] else None)


_CHECKED_FEATURES = datasets.Features({**FEATURES, "_keep": datasets.Value("bool")})
_NO_ROW = dict.fromkeys(FEATURES)


def empty_dataset() -> datasets.Dataset:
    """A dataset with :data:`FEATURES` and no rows."""
    return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)


def checked(raw: Rows, records: Callable[[dict[str, list], list[int]], Iterator[Record]],
            checker: Checker) -> Rows:
    """Validation as a ``.map`` (every record checked, good ones as :data:`FEATURES` rows), then a ``.filter``.
    A stream is checked as it is read."""
    if isinstance(raw, datasets.Dataset) and len(raw) == 0:
        return empty_dataset()

    def check(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in _CHECKED_FEATURES}
        for rec in records(batch, indices):
            row = checker.check(rec)
            for name in FEATURES:
                out[name].append((row or _NO_ROW)[name])
            out["_keep"].append(row is not None)
        return out

    return keep_where(map_batches(raw, check, _CHECKED_FEATURES, with_indices=True), "_keep")
