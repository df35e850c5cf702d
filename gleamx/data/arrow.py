"""Arrow files behind the ``datasets`` objects gleamx builds: written batch by batch, memory-mapped.

Readers, validation and prompt building write their rows to Arrow files in one
scratch directory per process (removed at exit, or by a later process when this one was killed) instead of holding Python lists,
so memory stays flat in the number of samples. Every ``.map``/``.filter`` here
gets its own cache file and fingerprint: gleamx's passes read files that can
change between calls, so a cached result would be stale, and they never write
cache files into a user's dataset directory.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets.arrow_writer import ArrowWriter

_SCRATCH: list[Path] = []
Rows = datasets.Dataset | datasets.IterableDataset
"""Rows on disk (memory-mapped) or a stream read as it goes; gleamx's passes take either."""


_PREFIX = "gleamx-arrow-"
STALE_AFTER_S = 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_scratch(root: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the scratch directories of killed processes (atexit never ran for them): named for a pid that is
    gone and untouched for ``stale_after_s``. Returns what was removed."""
    removed = []
    now = time.time()
    for d in root.glob(f"{_PREFIX}*-*"):
        pid = d.name[len(_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or _alive(int(pid)) or now - d.stat().st_mtime < stale_after_s:
                continue
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def scratch_file(stem: str) -> str:
    """A fresh path for an Arrow file in this process's scratch directory (named for the pid, so that a later
    process can remove it if this one is killed)."""
    if not _SCRATCH:
        sweep_stale_scratch(Path(tempfile.gettempdir()))
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return str(_SCRATCH[0] / f"{stem}-{uuid.uuid4().hex}.arrow")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No ``datasets`` progress bars while gleamx builds a dataset (the CLI prints its own summary)."""
    enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def write_dataset(rows: Iterable[dict[str, Any]], features: datasets.Features, stem: str = "rows") -> datasets.Dataset:
    """A memory-mapped ``datasets.Dataset`` of ``rows`` (consumed one at a time, never listed)."""
    path = scratch_file(stem)
    with ArrowWriter(features=features, path=path, writer_batch_size=1000) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    return datasets.Dataset.from_file(path)


def map_batches(ds: Rows, fn: Callable[..., dict[str, list]], features: datasets.Features,
                *, batch_size: int = 256, with_indices: bool = False) -> Rows:
    """``ds.map(fn, batched=True)`` replacing every column, into a fresh scratch file (never a stale cache).
    ``fn`` may return fewer or more rows than it was given. A stream (``IterableDataset``) is mapped lazily,
    as it is read."""
    if isinstance(ds, datasets.IterableDataset):
        # cast after the map, not map(features=...): a stream typed by its map is never decoded (images stay bytes)
        return ds.map(fn, batched=True, batch_size=batch_size, with_indices=with_indices,
                      remove_columns=ds.column_names).cast(features)
    with quiet():
        return ds.map(fn, batched=True, batch_size=batch_size, with_indices=with_indices, features=features,
                      remove_columns=ds.column_names,
                      load_from_cache_file=False, cache_file_name=scratch_file("map"),
                      new_fingerprint=uuid.uuid4().hex)


def keep_where(ds: Rows, column: str) -> Rows:
    """The rows whose boolean ``column`` is true (a ``.filter`` pass), without that column."""
    if isinstance(ds, datasets.IterableDataset):
        return ds.filter(lambda keep: keep, input_columns=[column], batched=True).remove_columns(column)
    with quiet():
        kept = ds.filter(lambda keep: keep, input_columns=[column], batched=True, load_from_cache_file=False,
                         cache_file_name=scratch_file("filter"), new_fingerprint=uuid.uuid4().hex)
    return kept.remove_columns(column)


def batch_rows(batch: dict[str, list]) -> Iterator[dict[str, Any]]:
    """The rows of a batched ``.map`` call's column dict."""
    names = list(batch)
    for values in zip(*(batch[n] for n in names)):
        yield dict(zip(names, values))
