"""Value checks every config's ``__post_init__`` shares: one ``GleamConfigError`` line naming the setting,
what it expects and what it got. The CLI, the recipes and API callers all meet the same checks."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gleamx.errors import GleamConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Upper bounds several options share: roomy for any real run, tight enough that a typo (1e7 for 1e1) or a hostile
# config fails at parse time instead of allocating gigabytes or overflowing numpy/torch later.
SEED_MAX = 2**32 - 1        # numpy's legacy seeds and every worker's derived seed stay in range
COUNT_MAX = 10**9           # samples, queries, pairs, steps
BATCH_MAX = 65_536          # items per batch
TOKENS_MAX = 1 << 20        # tokens of one answer or reply
PIXELS_MAX = 1 << 28        # pixels of one image (16384 x 16384)
SIDE_MAX = 16_384           # pixels of one image side
WORKERS_MAX = 1_024         # processes, threads or requests in flight
CANDIDATES_MAX = 10_000     # candidates per query, each verified by the MLLM
RETRIES_MAX = 100           # retries of one request
SECONDS_MAX = 7 * 86_400    # a timeout: one week
PORT_MAX = 65_535
_INT64 = 2**63              # the ints numpy and torch take; a bigger one fails deep inside them


class FieldMetadata(dict):
    """A config field's metadata. (Hf/Trl)ArgumentParser passes ``field.metadata.copy()`` to ``add_argument`` as
    keywords (a dataclass field's metadata proxy copies through this ``copy``), so the copy leaves gleamx's own
    ``range`` out and says it in the help instead: any TrlParser over a gleamx config takes it."""

    def copy(self) -> dict[str, Any]:  # type: ignore[override]
        kwargs = {k: v for k, v in self.items() if k != "range"}
        if self.get("range") and kwargs.get("help"):
            kwargs["help"] = f"{kwargs['help']} ({range_text(*self['range'])})"
        return kwargs


def field_help(text: str, *, low: float | None = None, high: float | None = None, **more: Any) -> FieldMetadata:
    """A config field's ``metadata``: its ``--help`` text (and any other keys, e.g. ``positional=True``). A
    numeric field gives its range, ``low`` to ``high`` inclusive, which :func:`check_ranges` enforces (each
    number of a list field); the field's other checks live in its config's ``__post_init__``."""
    meta = FieldMetadata(help=text, **more)
    if low is not None or high is not None:
        meta["range"] = (low, high)
    return meta


def pixel_floor_option() -> Any:
    """The ``min_pixels`` field of every command that runs the MLLM on images (eval, localize, the app)."""
    return dataclasses.field(default=None, metadata=field_help(
        "override the per-image pixel floor (default: the processor saved with --adapter, else --model's)", low=1,
        high=PIXELS_MAX))


def pixel_budget_option() -> Any:
    """The ``max_pixels`` field of every command that runs the MLLM on images (eval, localize, the app)."""
    return dataclasses.field(default=None, metadata=field_help(
        "override the per-image pixel budget (default: the one the adapter's run trained with)", low=1,
        high=PIXELS_MAX))


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a one-line error: a huge integer as its size (its repr may not even be allowed), a
    list item by item, anything long cut to ``limit`` characters."""
    if _is_int(value) and abs(value) >= 10**30:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(shown(v, limit) for v in value[:20]) + (", ...]" if len(value) > 20 else "]")
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numbers(value: Any) -> list[Any]:
    """The numbers in an option's value: itself, or the items of a list or the values of a mapping."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
    return [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]


def range_text(low: float | None, high: float | None) -> str:
    """``from 0 to 100``, ``>= 1`` or ``<= 5``: a range as messages and ``--help`` say it."""
    def text(x: float) -> str:
        return str(x) if _is_int(x) else f"{x:g}"

    if low is not None and high is not None:
        return f"from {text(low)} to {text(high)}"
    return f">= {text(low)}" if low is not None else f"<= {text(high)}"


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                integer: bool = False) -> None:
    """Each number in ``value`` (a number, a list or mapping of them; other values are left to the option's own
    checks) is finite, fits in 64 bits and, where given, lies from ``low`` to ``high``."""
    numbers = _numbers(value)
    several = isinstance(value, (list, tuple, dict))
    for x in numbers:
        if isinstance(x, float) and not math.isfinite(x):
            raise GleamConfigError(f"{name}: expected {'finite numbers' if several else 'a finite number'}, "
                                   f"got {shown(value)}")
        if _is_int(x) and abs(x) >= _INT64:
            raise GleamConfigError(f"{name}: expected a number that fits in 64 bits, got {shown(value)}")
        if (low is not None and x < low) or (high is not None and x > high):
            what = "integers" if integer and several else "an integer" if integer else \
                "numbers" if several else "a number"
            raise GleamConfigError(f"{name}: expected {what} {range_text(low, high)}, got {shown(value)}")


def option_flag(name: str) -> str:
    """A command's option as its messages name it: ``neg_ratio`` -> ``--neg-ratio``."""
    return "--" + name.replace("_", "-")


def recipe_option(name: str) -> str:
    """A recipe's option as its messages name it: ``recipe: max_pixels``."""
    return f"recipe: {name}"


def check_ranges(config: Any, name: Callable[[str], str] = option_flag) -> None:
    """Every field of the dataclass ``config`` that has a range (``field_help(low=, high=)``) holds numbers within
    it; ``name`` turns a field's name into the option a message names. Configs call it last in ``__post_init__``
    (their own checks speak first), so flags, YAML and API callers all meet it."""
    for f in dataclasses.fields(config):
        check_field(f, name(f.name), getattr(config, f.name))


def check_field(f: dataclasses.Field, name: str, value: Any) -> None:
    """``value``, given for the dataclass field ``f`` (or for a setting that takes its place, such as a retrieval
    phase's), lies within the field's range, if it has one."""
    bounds = f.metadata.get("range")
    if bounds is not None:
        check_range(name, value, *bounds, integer=_int_typed(f))


def _int_typed(f: dataclasses.Field) -> bool:
    """Whether a numeric field holds integers (``int``, ``int | None``, ``list[int]``; not ``float``), so that its
    messages say "an integer". ``f.type`` is the annotation's text, or the type once a parser resolved it."""
    return "float" not in (f.type if isinstance(f.type, str) else repr(f.type))


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
