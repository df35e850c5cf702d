"""Append-only JSONL caches (predictions, judge verdicts) that survive a kill -9."""

from __future__ import annotations

import os
from pathlib import Path


def end_with_newline(path: Path) -> None:
    """A run killed mid-write leaves half a line; start the next record on a line of its own."""
    if path.is_file() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
