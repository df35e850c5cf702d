"""The terminal every gleamx layer writes to: one console, one-line errors, one progress bar style.

It sits at the bottom of the package (it imports only ``rich``), so library code prints through it
without importing the CLI above it.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """``error: message`` on stderr as one line (no markup is read from ``message``)."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def progress() -> Progress:
    """A rich progress bar (description, bar, n/total, elapsed) on the shared console."""
    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)
