"""One exception type per layer; each renders as a single line a user can act on.

The CLI prints ``str(err)`` and exits non-zero, so a message must name the
file (and line), the field, and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass


class GleamError(Exception):
    """Base class for every error gleamx raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"


class GleamDataError(GleamError):
    """Bad input data. Carries the :class:`Problem` that caused it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem

    @classmethod
    def at(cls, file: str, line: int | None, field: str, message: str) -> "GleamDataError":
        return cls(Problem(str(file), line, field, message))


class GleamModelError(GleamError):
    """A model, tokenizer or processor could not be built or loaded."""


class GleamConfigError(GleamError):
    """A bad command-line argument or recipe value."""


class GleamFailedElsewhere(GleamError):
    """Another process of the same ``accelerate launch`` failed and printed why; this one stops, saying nothing
    (one error line per launch, not one per process)."""

    quiet = True


class GleamInterrupted(GleamError):
    """A run stopped by SIGINT/SIGTERM after saving what it needs to resume; exits 128 + signal."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def first_line(e: BaseException, *, with_type: bool = False, limit: int = 160) -> str:
    """The first non-empty line of an exception's message, cut to ``limit`` characters, for a
    one-line error; the exception's type name when the message is empty (or ``Type: line``)."""
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    if not text:
        return type(e).__name__
    return f"{type(e).__name__}: {text}" if with_type else text
