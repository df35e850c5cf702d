"""What every gleamx CLI shares: one-line errors and a console."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from gleamx.errors import GleamError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """``error: message`` on stderr as one line (no markup is read from ``message``)."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def run_cli(fn: Callable[[], int | None]) -> int:
    """Run ``fn``; a :class:`GleamError` becomes one ``error: ...`` line and exit code 2."""
    try:
        return int(fn() or 0)
    except GleamError as e:
        print_error(str(e))
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
