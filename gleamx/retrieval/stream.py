"""Retrieval training pairs from a GLEAM-X stream (``streaming: true``): the matching pairs of ``data``'s train split.

``data`` is read with :func:`gleamx.data.stream.stream_samples` (a Hub id, a folder of Parquet shards, a
``save_to_disk`` folder or gleamx JSONL; every record checked as it is read) and only the pairs with ``label: true``
are kept: each is a (query view, satellite tile) positive, and the batch's other pairs are its negatives. Under
accelerate each process reads its own shards (:func:`datasets.distributed.split_dataset_by_node`; when the shard
count does not divide by the processes, every process reads all and keeps every n-th pair), after the stream is
shuffled by shard and buffer with the run's seed and repeated without end (:func:`gleamx.data.stream.training_stream`).
Each process's loader is its own: accelerate neither dispatches its batches nor shards the stream a second time.

A process takes exactly ``per-process batch`` pairs per optimizer step, so its position in the stream is
``step x per-process batch`` rows (:func:`rows_taken`, saved with each checkpoint): a resumed run skips them
(:func:`gleamx.data.stream.skip_taken`) before they are decoded for the encoder, transformed or batched (the
stream's record checks, upstream of the skip, still read each one, as in SFT's resume).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader

from gleamx.data.schema import open_rgb
from gleamx.data.stream import skip_taken, stream_samples, training_stream
from gleamx.errors import GleamDataError
from gleamx.retrieval.config import RetrievalConfig

IMAGE_COLUMNS = ("query_image", "satellite_image")


def positive_pairs(cfg: RetrievalConfig) -> datasets.IterableDataset:
    """The matching pairs of ``cfg.data``'s train split (of ``cfg.views`` only, if set), as a checked stream whose
    images stay encoded until a batch is collated. Fails in one line if the source cannot be read or the stream
    holds no such pair (an endless repeat of nothing would never return)."""
    ds = stream_samples(cfg.data, split="train").dataset
    for column in IMAGE_COLUMNS:
        ds = ds.cast_column(column, datasets.Image(decode=False))  # pixels only for the pairs a batch takes
    views = set(cfg.views) if cfg.views else None
    ds = ds.filter(lambda label, view: label and (views is None or view in views),
                   input_columns=["label", "query_view"]).select_columns(["id", *IMAGE_COLUMNS])
    if next(iter(ds), None) is None:
        wanted = f" of views {', '.join(sorted(views))}" if views else ""
        raise GleamDataError.at(cfg.data, None, "label", f"the stream has no matching pair (label true){wanted} "
                                                         "to train on in split 'train'")
    return ds


def process_stream(pairs: datasets.IterableDataset, cfg: RetrievalConfig, *, rank: int, world: int,
                   step: int, batch: int) -> datasets.IterableDataset:
    """Process ``rank`` of ``world``'s endless part of ``pairs``, past the ``step x batch`` pairs it took before."""
    from datasets.distributed import split_dataset_by_node

    buffer = cfg.stream_shuffle_buffer
    endless = training_stream(pairs, seed=cfg.seed, shuffle=buffer > 0, buffer_size=max(buffer, 1))
    # Skip all processes' pairs before the split (which is then their own step x batch each): with shards that
    # divide by the processes, split_dataset_by_node shards the skip too; else every process reads the whole
    # stream and keeps every world-th pair, after the skip.
    taken = skip_taken(endless, step, batch * world)
    return split_dataset_by_node(taken, rank=rank, world_size=world) if world > 1 else taken


def rows_taken(step: int, batch: int) -> int:
    """One process's position in its stream after ``step`` optimizer steps of ``batch`` pairs each."""
    return step * batch


class PairCollator:
    """Rows of encoded (query, satellite) images -> the ``{"query", "satellite"}`` pixel batches training reads."""

    def __init__(self, transform: Callable[[Any], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([self.transform(open_rgb(r[column])) for r in rows])
                for key, column in (("query", "query_image"), ("satellite", "satellite_image"))}


def stream_loader(stream: datasets.IterableDataset, transform: Callable[[Any], torch.Tensor],
                  batch: int) -> DataLoader:
    """Batches of ``batch`` pairs, read in this process: no workers, so a process takes its rows in stream order
    and a resume's skip is exact."""
    return DataLoader(stream, batch_size=batch, collate_fn=PairCollator(transform), num_workers=0)


def shard_note(pairs: datasets.IterableDataset, world: int) -> str | None:
    """A line when the shards do not divide among the processes (``split_dataset_by_node`` then has every process
    read the whole stream)."""
    if world <= 1 or pairs.n_shards % world == 0:
        return None
    return (f"note: the stream has {pairs.n_shards} shard(s) for {world} processes: every process reads all of it "
            f"and keeps every {world}th pair (a multiple of {world} shards lets each read only its own)")


__all__ = ["PairCollator", "positive_pairs", "process_stream", "rows_taken", "shard_note", "stream_loader"]
