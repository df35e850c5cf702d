"""Command lines run in the test process: ``gleamx ARGS``, ``gleamx-eval ARGS`` or ``python recipes/X.py ARGS``,
with their exit code and output, read as a ``subprocess.CompletedProcess`` would be."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

Entry = Callable[[list[str]], int | None]


@dataclass
class CliResult:
    """What a command did: the fields a ``subprocess.CompletedProcess`` has, so tests read the same."""

    returncode: int
    stdout: str
    stderr: str


def run_captured(capsys: pytest.CaptureFixture[str], args: Sequence[object], entry: Entry | None = None) -> CliResult:
    """``entry([str(a) for a in args])`` (default: ``gleamx``'s main), its output taken from ``capsys``."""
    if entry is None:
        from gleamx.cli.main import main as entry
    capsys.readouterr()
    try:
        code = entry([str(a) for a in args])
    except SystemExit as e:  # argparse's --help and usage errors, a script's sys.exit
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return CliResult(int(code or 0), out.out, out.err)


def script_entry(path: Path) -> Entry:
    """``python PATH ARGS`` (a recipe script, its ``__main__`` block included) as an entry run in this process."""

    def entry(argv: list[str]) -> int:
        old = sys.argv
        sys.argv = [str(path), *argv]
        try:
            runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = old
        return 0

    return entry
