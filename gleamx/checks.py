"""Value checks every config's ``__post_init__`` shares: one ``GleamConfigError`` line naming the setting,
what it expects and what it got. The CLI, the recipes and API callers all meet the same checks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gleamx.errors import GleamConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def field_help(text: str, **more: Any) -> dict[str, Any]:
    """A config field's ``metadata``: its ``--help`` text (and any other keys, e.g. ``positional=True``); the
    field's checks live in its config's ``__post_init__``, with the ``check_*`` functions below."""
    return {"help": text, **more}


def check_int(name: str, value: Any, low: int, *, optional: bool = False) -> None:
    """``value`` is an integer >= ``low`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if not _is_int(value) or value < low:
        raise GleamConfigError(f"{name}: expected an integer >= {low}, got {value!r}")


def check_positive(name: str, value: Any, *, optional: bool = False, what: str = "a number > 0") -> None:
    """``value`` is a finite number > 0 (or None when ``optional``)."""
    if value is None and optional:
        return
    if not _is_number(value) or value <= 0:
        raise GleamConfigError(f"{name}: expected {what}, got {value!r}")


def check_at_least(name: str, value: Any, low: float, *, optional: bool = False, what: str | None = None) -> None:
    """``value`` is a finite number >= ``low`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if not _is_number(value) or value < low:
        raise GleamConfigError(f"{name}: expected {what or f'a number >= {low:g}'}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """``value`` is one of ``choices`` (API callers can pass any string; the CLI already restricts them)."""
    choices = tuple(choices)
    if value not in choices:
        raise GleamConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def check_given(name: str, value: Any, what: str) -> None:
    """A required setting is present (not None or empty)."""
    if value is None or value == "":
        raise GleamConfigError(f"{name}: missing ({what})")


def comma_list(value: Any, convert: type = str) -> list[Any] | None:
    """``"a,b"``, ``["a,b", "c"]`` or ``["a", "b"]`` as one flat list (None stays None); flags take either
    ``--views uav,ground`` or ``--views uav ground``, YAML a list."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, int)) else list(value)
    return [convert(part.strip()) if isinstance(part, str) else convert(part)
            for item in items for part in (item.split(",") if isinstance(item, str) else [item])
            if not isinstance(part, str) or part.strip()]


def gleamx_provenance() -> dict[str, str | None]:
    """The gleamx version and, in a git checkout, its commit: results files say what made them."""
    from gleamx import __version__

    commit = None
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=5, check=True).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"version": __version__, "commit": commit}


def usable_cores() -> int:
    """Cores one process of this launch may use: its CPU affinity, shared by the node's processes
    (``LOCAL_WORLD_SIZE``, set by accelerate/torchrun)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cores // local)


def cap_workers(asked: int) -> int:
    """DataLoader worker processes: ``asked``, at most :func:`usable_cores` (more only queue on the same cores,
    and torch warns about them)."""
    return min(asked, usable_cores())


def check_pixel_budget(min_name: str, min_pixels: Any, max_name: str, max_pixels: Any) -> None:
    """An image processor's pixel budget per image: each bound given is an integer >= 1, and min <= max
    (``--min-pixels: expected at most --max-pixels (N), got M``). Every command and recipe checks it here."""
    check_int(min_name, min_pixels, 1, optional=True)
    check_int(max_name, max_pixels, 1, optional=True)
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise GleamConfigError(f"{min_name}: expected at most {max_name} ({max_pixels}), got {min_pixels}")


# --- the docs' walk-through -------------------------------------------------------------------------------------

WALKTHROUGH_ENV = "GLEAMX_WALKTHROUGH"
# what a walk-through of the docs (tests/test_walkthrough.py) caps, whatever the command line says: synthetic pairs,
# optimizer steps (SFT, GRPO), epochs (the retrieval encoder, and each of its phases)
WALKTHROUGH_CAPS = {"n": 240, "max_steps": 2, "epochs": 1}


def walkthrough() -> bool:
    """``GLEAMX_WALKTHROUGH=1``: the docs' commands run as written, at tiny sizes."""
    return os.environ.get(WALKTHROUGH_ENV, "") == "1"


def cap_for_walkthrough(config: Any, label: str = "") -> Any:
    """Under ``GLEAMX_WALKTHROUGH=1``, lower ``config``'s sample count, optimizer steps and epochs to
    ``WALKTHROUGH_CAPS`` in place (a step budget of 0 or -1, i.e. "epochs decide", becomes the cap too), saying so in
    one line on stderr; otherwise leave it alone. Returns ``config``."""
    if not walkthrough():
        return config
    changed = []
    for name, cap in WALKTHROUGH_CAPS.items():
        value = getattr(config, name, None)
        if not _is_int(value) or (0 < value <= cap) or (value <= 0 and name != "max_steps"):
            continue
        setattr(config, name, cap)
        changed.append(f"{name} {value} -> {cap}")
    for n, phase in enumerate(getattr(config, "phases", None) or []):
        if isinstance(phase, dict) and _is_int(phase.get("epochs")) and phase["epochs"] > WALKTHROUGH_CAPS["epochs"]:
            changed.append(f"phases[{n}].epochs {phase['epochs']} -> {WALKTHROUGH_CAPS['epochs']}")
            phase["epochs"] = WALKTHROUGH_CAPS["epochs"]
    if changed:
        print(f"{WALKTHROUGH_ENV}=1: {label or type(config).__name__}: {', '.join(changed)} (a walk-through, "
              "not a real run)", file=sys.stderr)
    return config
