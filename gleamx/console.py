"""The terminal every gleamx layer writes to: one console, one-line errors, one progress bar style.

It sits at the bottom of the package (it imports only ``rich`` and :mod:`gleamx.errors`), so library code
and every entry point (the CLI, the recipe scripts, the benchmarks) print through it without importing the
CLI above them.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.text import Text

from gleamx.errors import GleamError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """``error: message`` on stderr as one line (no markup is read from ``message``)."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def progress() -> Progress:
    """A rich progress bar (description, bar, n/total, elapsed) on the shared console."""
    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _one_line(message: str) -> str:
    """The error itself: a GleamError re-raised from a DataLoader worker carries the worker's traceback
    ("Caught GleamDataError in DataLoader worker process 0. Original Traceback ..."); keep its last line."""
    if "Traceback (most recent call last)" not in message:
        return message
    last = next((ln.strip() for ln in reversed(message.splitlines()) if ln.strip()), message)
    head, sep, rest = last.partition(": ")
    return rest if sep and head.rsplit(".", 1)[-1].startswith("Gleam") else last


def run_cli(fn: Callable[[], int | None]) -> int:
    """Run ``fn``; a :class:`GleamError` becomes one ``error: ...`` line and exit code 2."""
    try:
        return int(fn() or 0)
    except GleamError as e:
        print_error(_one_line(str(e)))
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
