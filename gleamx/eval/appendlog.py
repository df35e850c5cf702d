"""Append-only JSONL caches (``predictions.jsonl``, ``judge.jsonl``) that survive a kill -9, with one writer each.

* Writers append whole lines (``json + "\\n"``) and flush them; a kill can only leave a partial
  *last* line. :func:`repair_tail` drops it (whatever byte it ends in, the middle of a UTF-8
  character included) before anything is read or appended, and :func:`read_records` reads bytes,
  so a damaged line never makes a rerun fail.
* :func:`single_writer` holds an exclusive lock on ``DIR/.lock`` (``filelock``) while a run writes into
  ``DIR``: a second run into the same directory fails at once with one line. It is an OS lock, which the
  kernel releases when the holder dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gleamx.errors import GleamConfigError
from gleamx.outputs import LOCK_NAME

_BLOCK = 1 << 16
_LOCKS: dict[str, Any] = {}  # lock file -> its one FileLock in this process (re-entrant: holds nest)
_LOCKS_GUARD = threading.Lock()


def repair_tail(path: str | Path) -> int:
    """Truncate ``path`` after its last newline: a half-written last line (a killed writer) is dropped.

    Every complete record ends with ``b"\\n"``, so nothing complete is lost, and the bytes cut may end
    anywhere (inside a multi-byte character too). Returns how many bytes were dropped.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        cut, pos = 0, size
        while pos > 0:
            start = max(0, pos - _BLOCK)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        if cut < size:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        return size - cut


def end_with_newline(path: str | Path) -> None:
    """Before appending: drop a killed run's half-written last line (see :func:`repair_tail`)."""
    repair_tail(path)


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it: once this returns, a kill loses nothing of it."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with Path(path).open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each complete line of a cache that is a UTF-8 JSON object.

    Anything else (a partial last line, bytes that are not UTF-8, not JSON, a line past
    :func:`gleamx.data.text.parse_json`'s limits) is skipped: in a cache it is a record lost to a kill, and it
    is simply made again.
    """
    from gleamx.data.text import parse_json, raw_lines

    path = Path(path)
    if not path.is_file():
        return
    with path.open("rb") as f:
        for lineno, raw in enumerate(raw_lines(f), start=1):
            if isinstance(raw, int) or not raw.endswith(b"\n"):
                continue  # over-long (never a record gleamx wrote), or half-written by a killed run
            try:
                row = parse_json(raw.decode("utf-8"))
            except ValueError:  # not UTF-8, not JSON, or past parse_json's limits
                continue
            if isinstance(row, dict):
                yield lineno, row


def _holder(path: str) -> str:
    """The pid the lock file's holder wrote into it, else "unknown"."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())


@contextmanager
def single_writer(directory: str | Path, what: str = "gleamx-eval", flag: str = "--output") -> Iterator[None]:
    """Hold ``DIRECTORY/.lock`` exclusively for the block; if another process holds it, fail at once with
    ``DIRECTORY: another gleamx-eval is writing here (pid N); wait for it or use another --output``.

    A ``filelock.FileLock`` (an OS lock: the kernel releases it when the holder dies, so a killed run never
    leaves a stale lock). The lock file stays, holding the last writer's pid. Within one process the lock nests
    (``gleamx-eval`` holds ``OUTPUT`` and its judge asks for it again): one lock object per path, re-entrant.
    """
    from filelock import FileLock, Timeout

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = str((directory / LOCK_NAME).resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = FileLock(path, timeout=0, thread_local=False, on_acquired=_write_pid)
    try:
        lock.acquire()
    except Timeout:
        raise GleamConfigError(f"{directory}: another {what} is writing here (pid {_holder(path)}); "
                               f"wait for it or use another {flag}") from None
    try:
        yield
    finally:
        lock.release()


__all__ = ["LOCK_NAME", "end_with_newline", "read_records", "repair_tail", "single_writer"]
