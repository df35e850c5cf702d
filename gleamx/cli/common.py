"""What every gleamx CLI shares: one-line errors, a console, and checked number flags."""

from __future__ import annotations

import argparse
import math
import sys
import types
from collections.abc import Callable

from gleamx.console import console, err_console, print_error  # noqa: F401  (re-exported for the CLIs)
from gleamx.errors import GleamError


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


# --- number flags checked at parse time (argparse ``type=``) -------------------------------------------


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
"""``type=`` for counts that must be at least 1 (``--batch-size``, ``--limit``, ``--k``, pixels, ...)."""
nonnegative_int = _int_at_least(0)
"""``type=`` for counts that may be 0 (``--bootstrap``, retries, workers)."""


def positive_float(text: str) -> float:
    """``type=`` for a finite number > 0 (``--repetition-penalty``, ``--judge-timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """``type=`` for a comma-separated list of integers >= 1 (``--ks 1,5,10``)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad command line as one ``error: ...`` line (exit 2), like every other
    gleamx error, instead of argparse's usage block."""

    def error(self: argparse.ArgumentParser, message: str) -> None:
        print_error(f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(2)

    parser.error = types.MethodType(error, parser)  # type: ignore[method-assign]
    return parser

