"""The terminal every gleamx layer writes to: one console, one-line errors, one progress bar style.

It sits at the bottom of the package (it imports only ``rich`` and :mod:`gleamx.errors`), so library code
and every entry point (the CLI, the recipe scripts, the benchmarks) print through it without importing the
CLI above them.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.text import Text

from gleamx.errors import GleamError
from gleamx.outputs import abandon_claims, forget_claims

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


def percent_text(value: float | None, digits: int = 2, sign: str = "") -> str:
    """``value`` (a fraction) as a percentage with ``digits`` decimals (then ``sign``), or ``-`` when it is not
    reported (``None``: e.g. R@k on a gallery of at most k tiles)."""
    return "-" if value is None else f"{100 * value:.{digits}f}{sign}"


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


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_ERRORS_ONLY = _ErrorsOnly()


def verbose() -> bool:
    """``--verbose`` on a gleamx command (or ``GLEAMX_VERBOSE=1``): show every library's warnings."""
    return os.environ.get("GLEAMX_VERBOSE", "") == "1"


def quiet_third_party() -> None:
    """Hide library warnings that say nothing a gleamx user can act on (``--verbose`` shows them); errors pass.

    * bitsandbytes, at import on every command: its optional CPU 4-bit kernel is a Hub download that an offline
      or untrusted-code machine refuses; QLoRA runs without it. Offline, the ``kernels`` package that would fetch
      it says so too ("Skipping publisher trust check ...").
    * DeepSpeed, at import whenever it is installed ("Setting accelerator to CPU"): kept when the launch uses
      DeepSpeed (``ACCELERATE_USE_DEEPSPEED``), where its lines concern the run.
    * transformers' ``is_gradient_checkpointing`` deprecation, raised by TRL's and PEFT's own calls.

    A filter, not a level: DeepSpeed sets its logger's level when it is imported, after this runs.
    """
    if verbose():
        return
    names = ["bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub"]
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() != "true":
        names.append("DeepSpeed")
    for name in names:
        logger = logging.getLogger(name)
        if _ERRORS_ONLY not in logger.filters:
            logger.addFilter(_ERRORS_ONLY)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)


def run_cli(fn: Callable[[], int | None]) -> int:
    """Run ``fn``, quiet (:func:`quiet_third_party`); a :class:`GleamError` becomes one ``error: ...`` line and
    exit code 2. A command stopped by an error or an interrupt leaves no output folder it made and wrote nothing
    into (:func:`gleamx.outputs.abandon_claims`)."""
    quiet_third_party()
    forget_claims()
    try:
        code = int(fn() or 0)
    except GleamError as e:
        abandon_claims()
        if not getattr(e, "quiet", False):  # another process printed it (GleamFailedElsewhere)
            print_error(_one_line(str(e)))
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        abandon_claims()
        print_error("interrupted")
        return 130
    forget_claims()
    return code
