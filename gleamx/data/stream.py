"""GLEAM-X samples as a stream: a ``datasets.IterableDataset`` read shard by shard, checked as it is read.

``stream_samples`` is :func:`gleamx.data.load_samples` for data that should not be materialised first: a Hub
dataset (``datasets.load_dataset(..., streaming=True)`` reads its Parquet shards over HTTP), a local folder of
Parquet shards (what ``gleamx data push`` writes), a ``save_to_disk`` folder, or gleamx JSONL / ShareGPT files
(one shard per file). Every record gets the same checks and one-line problems as ``load_samples``; with
``skip_bad`` a bad record is left out and counted as the stream passes it.

What a training stream adds (:func:`training_stream`): shards in a shuffled order and a shuffle buffer (``seed``),
then the stream repeated without end, so the Trainer sees one endless epoch and ``max_steps`` alone ends the run.
The rows a run has taken are then ``global_step x total batch size`` exactly (no partial batch at an epoch's end),
which is how a resumed run skips them (:func:`skip_taken`). Each pass over the data reads it in the same shuffled
order. Under accelerate each process reads its own shards: the Trainer's data loader gives process ``i`` of ``n``
the shards ``i, i + n, ...`` (``IterableDataset.shard``, as ``datasets.distributed.split_dataset_by_node`` does
when the shard count divides), and a stream with fewer shards than processes is read by every process, each
keeping its part of every batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from gleamx.data.check import RAW_FEATURES, Checker, Record, checked
from gleamx.data.hf import check_columns_apply, hf_record, hf_splits, parse_column_mapping, prepare_hf, split_of
from gleamx.data.load import format_of, hf_roots, data_files, default_split, iter_raw_rows
from gleamx.data.schema import canonical_split
from gleamx.errors import GleamDataError, first_line

SHUFFLE_BUFFER = 1000
"""Rows held for the shuffle buffer: with embedded images, about that many pairs' bytes in memory."""


@dataclass
class SampleStream:
    """A checked stream of :data:`~gleamx.data.schema.FEATURES` rows and the checker counting as it goes."""

    dataset: datasets.IterableDataset
    checker: Checker

    @property
    def n_shards(self) -> int:
        return self.dataset.n_shards


def _hf_stream(source: str, split: str | None) -> tuple[str | None, datasets.IterableDataset]:
    """``(split name, stream)`` of a Hub id, a folder of Parquet shards or a ``save_to_disk`` folder: the split
    asked for, else the only one, else ``train``."""
    parts = hf_splits(source, split, streaming=True)
    name, ds = parts[0] if len(parts) == 1 else split_of(dict(parts), "train")
    if isinstance(ds, datasets.Dataset):  # save_to_disk: already on disk, read in shards like the others
        ds = ds.to_iterable_dataset(num_shards=max(1, min(len(ds), 64)))
    return name, ds


def _raw_stream(source: str, fmt: str, split: str | None) -> datasets.IterableDataset:
    """gleamx JSONL / ShareGPT as a stream of :data:`RAW_FEATURES` rows, one shard per file."""
    path = Path(source)
    files = data_files(path, (".jsonl",) if fmt == "jsonl" else (".json", ".jsonl"))
    wanted = canonical_split(split) if split else None
    if fmt == "jsonl" and wanted and path.is_dir() and (path / f"{wanted}.jsonl").is_file():
        files = [path / f"{wanted}.jsonl"]  # skip reading the other splits

    def rows(files: list[str]) -> Iterator[dict[str, Any]]:
        for f in files:
            for row in iter_raw_rows(f, fmt):
                if path.is_dir():  # the file's rows, read as part of the directory (its split file rule)
                    row["default_split"] = default_split(Path(f))
                    row["split_dir"] = str(path) if fmt == "jsonl" else None
                yield row

    return datasets.IterableDataset.from_generator(rows, features=RAW_FEATURES, gen_kwargs={"files": [str(f) for f in files]})


def stream_samples(source: str | os.PathLike, *, format: str = "auto", split: str | None = None, columns: Any = None,
                   skip_bad: bool = False, allow_outside_paths: bool = False,
                   max_image_pixels: int | None = None, limit: int | None = None) -> SampleStream:
    """The samples of ``source`` as a checked stream (nothing read until it is iterated).

    Problems are those of :func:`gleamx.data.load_samples`, raised as the stream reaches them (or, with
    ``skip_bad``, counted in ``checker.problems``). ``limit``: only the first ``limit`` records are read (taken
    before the batched check, which would otherwise read a batch ahead). A duplicate id is one that comes again with another label, view,
    split or explanation, among the rows one process reads (a stream is read again on each pass)."""
    source = str(source)
    fmt = format_of(source, format)
    checker = Checker(split=split, go_on=skip_bad, decode=True, max_pixels=max_image_pixels,
                      allow_outside=allow_outside_paths, stream=True)
    if fmt == "hf":
        mapping = parse_column_mapping(columns)
        to_field = {col: fld for fld, col in mapping.items()}
        name, ds = _hf_stream(source, split)
        ds = prepare_hf(ds, source, mapping)
        if limit is not None:
            ds = ds.take(limit)
        given = split or name
        default = (canonical_split(given) or given.strip()) if given else "train"
        roots = hf_roots(source, Path(source), allow_outside_paths)
        base = Path(source) if Path(source).is_dir() else Path.cwd()

        def records(batch: dict[str, list], indices: list[int]) -> Iterator[Record]:
            from gleamx.data.arrow import batch_rows

            for i, row in zip(indices, batch_rows(batch)):
                yield Record(source, i + 1, base, hf_record(row, to_field), default, roots)

        return SampleStream(checked(ds, records, checker), checker)
    check_columns_apply(source, fmt, columns)
    raw = _raw_stream(source, fmt, split)
    return SampleStream(checked(raw.take(limit) if limit is not None else raw, checker.raw_records, checker), checker)


@contextlib.contextmanager
def reading(source: str) -> Iterator[None]:
    """Around reading a stream: a file that cannot be read (a shard that is no Parquet, a connection that drops) is
    one line naming ``source`` instead of a traceback from deep in ``datasets``/``pyarrow``."""
    try:
        yield
    except GleamDataError:
        raise
    except Exception as e:  # pyarrow, fsspec and datasets raise many types
        raise GleamDataError.at(source, None, "stream", f"cannot read ({type(e).__name__}: {first_line(e)})") from None


def training_stream(ds: datasets.IterableDataset, *, seed: int, shuffle: bool = True,
                    buffer_size: int = SHUFFLE_BUFFER) -> datasets.IterableDataset:
    """``ds`` as training reads it: shards shuffled and a shuffle buffer (``shuffle``), repeated without end.
    ``ds`` must yield a row (:func:`gleamx.train.train_split.train_stream` checks): an endless repeat of a stream
    that yields nothing never returns."""
    if shuffle:
        ds = ds.shuffle(seed=seed, buffer_size=buffer_size)
    return ds.repeat(None)


def skip_taken(ds: datasets.IterableDataset, global_step: int, total_batch_size: int) -> datasets.IterableDataset:
    """``ds`` without the rows a run took in its first ``global_step`` optimizer steps.

    The count is split over the processes when the Trainer's data loader shards the stream (each process skips its
    own ``global_step x per-device batch x accumulation`` rows), so a resumed run reads on where it stopped."""
    n = global_step * total_batch_size
    return ds.skip(n) if n else ds
