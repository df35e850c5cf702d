"""The recipe's train split: one dataset or a weighted mixture (``dataset_mixture``), materialised or streamed.

Materialised (the default), every source is read and checked with :func:`gleamx.data.load_samples` first. Streamed
(``dataset_streaming: true``), each source is read with :func:`gleamx.data.stream.stream_samples` as training goes and
made endless (:func:`gleamx.data.stream.training_stream`): ``max_steps`` ends the run, and the rows it took are
exactly ``global_step x`` the total batch size, so a resumed run skips them before they are checked or collated
(:class:`StreamResume`) instead of replaying and discarding every batch. The Trainer's data loader must not
dispatch batches from the main process (accelerate's default for a stream): with ``dispatch_batches: false`` each
process reads its own shards. A mixture interleaves its sources with their weights either way
(:func:`gleamx.data.mixture.mix`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from gleamx.data.load import load_samples
from gleamx.data.mixture import MixtureSource, describe, mix, parse_mixture
from gleamx.data.stream import reading, skip_taken, stream_samples, training_stream
from gleamx.errors import GleamConfigError, GleamDataError


def train_sources(script_args: Any) -> list[MixtureSource]:
    """The recipe's ``dataset_mixture``, or its one ``dataset_name`` at weight 1."""
    if script_args.dataset_mixture:
        sources = parse_mixture(script_args.dataset_mixture)
        return [s if s.split else MixtureSource(s.path, s.weight, script_args.dataset_train_split, s.format, s.columns)
                for s in sources]
    return [MixtureSource(script_args.dataset_name, 1.0, script_args.dataset_train_split, script_args.dataset_format,
                          script_args.dataset_columns)]


def _seed(training_args: Any) -> int:
    return training_args.data_seed if training_args.data_seed is not None else training_args.seed


def train_samples(script_args: Any, training_args: Any, say: Any) -> datasets.Dataset:
    """The train split materialised (:data:`~gleamx.data.schema.FEATURES` rows), its sources mixed by weight."""
    sources = train_sources(script_args)
    parts = []
    for src in sources:
        loaded = load_samples(src.path, split=src.split, format=src.format, columns=src.columns,
                              skip_bad=script_args.skip_bad, allow_outside_paths=script_args.allow_outside_paths)
        if loaded.n_bad:
            say(f"{src.path}: skipped {loaded.n_bad} bad record(s) (skip_bad); first: {loaded.problems[0]}")
        parts.append(loaded.dataset)
    data = mix(parts, sources, seed=_seed(training_args), stopping=script_args.mixture_stopping_strategy)
    if len(sources) > 1:
        say(f"mixture of {len(sources)} datasets: {describe(sources)}; {len(data)} samples drawn")
    if script_args.max_train_samples:
        data = data.select(range(min(script_args.max_train_samples, len(data))))
    return data


def check_streaming(script_args: Any, training_args: Any) -> None:
    """What a streamed run needs, in one line before any work."""
    if not script_args.dataset_streaming:
        return
    if training_args.max_steps is None or training_args.max_steps <= 0:
        raise GleamConfigError("recipe: max_steps: a streamed dataset has no length, so max_steps (> 0) says how long "
                               "to train (dataset_streaming: true)")
    if training_args.accelerator_config.dispatch_batches:
        raise GleamConfigError("recipe: accelerator_config.dispatch_batches: true sends every batch from the main "
                               "process; a streamed run reads its own shards in each process (leave it unset)")


def train_stream(script_args: Any, training_args: Any, say: Any,
                 convert: Callable[[datasets.IterableDataset], Any]) -> Any:
    """The recipe's train split as a checked stream of samples (its sources mixed by weight), converted by
    ``convert`` (samples -> the trainer's rows, e.g. :func:`~gleamx.train.sft_data.build_sft_dataset`), then shuffled
    and made endless. Returns what ``convert`` returned, its ``dataset`` the endless stream."""
    sources = train_sources(script_args)
    parts = [stream_samples(src.path, format=src.format, split=src.split, columns=src.columns,
                            skip_bad=script_args.skip_bad, allow_outside_paths=script_args.allow_outside_paths).dataset
             for src in sources]
    ds = mix(parts, sources, seed=_seed(training_args), stopping=script_args.mixture_stopping_strategy)
    if len(sources) > 1:
        say(f"mixture of {len(sources)} streamed datasets: {describe(sources)}")
    if script_args.max_train_samples:
        ds = ds.take(script_args.max_train_samples)
    converted = convert(ds)
    first_row(converted.dataset, script_args)
    # Each process reads its own shards: the data loader shards the stream instead of sending batches from rank 0.
    training_args.accelerator_config.dispatch_batches = False
    world = max(1, training_args.world_size)
    if world > 1 and ds.n_shards % world:
        say(f"the stream has {ds.n_shards} shard(s) for {world} processes: "
            + ("every process reads all of it and keeps its part of each batch" if ds.n_shards < world
               else "some processes read one shard more than others"))
    buffer = script_args.stream_shuffle_buffer
    converted.dataset = training_stream(converted.dataset, seed=_seed(training_args), shuffle=buffer > 0,
                                        buffer_size=max(buffer, 1))
    return converted


def first_row(ds: datasets.IterableDataset, script_args: Any) -> None:
    """Read up to the first training row now (one pass at most): a stream with nothing to train on fails in one
    line, before the model loads, instead of training on an endless stream of nothing."""
    with reading(str(script_args.dataset_name or "dataset_mixture")):
        first = next(iter(ds), None)
    if first is None:
        raise GleamDataError.at(str(script_args.dataset_name), None, "samples",
                                f"the stream has no sample to train on (split {script_args.dataset_train_split!r}, "
                                f"lang {script_args.lang!r}, task {script_args.task!r})")


class StreamResume:
    """Trainer mixin: a streamed train set resumed from a checkpoint skips the rows the run took
    (:func:`gleamx.data.stream.skip_taken`, before they are decoded) rather than replaying every batch."""

    _gleam_stream_skipped = False

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.train_dataset, datasets.IterableDataset) and isinstance(resume_from_checkpoint, str):
            state = Path(resume_from_checkpoint) / "trainer_state.json"
            step = json.loads(state.read_text(encoding="utf-8")).get("global_step", 0) if state.is_file() else 0
            args_ = self.args
            total = args_.per_device_train_batch_size * args_.gradient_accumulation_steps * max(1, args_.world_size)
            self.train_dataset = skip_taken(self.train_dataset, step, total)
            self._gleam_stream_skipped = step > 0
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        if self._gleam_stream_skipped:
            return dataloader  # already past the rows those batches held
        return super().get_resumed_dataloader(dataloader, num_batches)
