"""Parse a config dataclass from ``--config FILE.yaml`` plus flags with TRL's ``TrlParser``, every failure one line.

Shared by the recipe scripts (SFT, GRPO, retrieval) and every ``gleamx`` command: TrlParser itself finds the YAML keys and
flags no field takes; gleamx adds only the one-line errors and a did-you-mean hint for a misspelt key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from gleamx.errors import GleamConfigError, first_line


def _unknown_keys(path: str, parser: Any, remaining: list[str], what: str) -> GleamConfigError:
    """TrlParser's leftover ``--key value`` pairs from the YAML as one line, with a did-you-mean hint per key."""
    known = {a.dest for a in parser._actions}
    hints = []
    for key in sorted({s[2:] for s in remaining[::2]}):
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return GleamConfigError(f"{path}: unknown {what} key(s): {', '.join(hints)}")


def parse_with_config(parser: Any, argv: list[str], *, what: str, label: str) -> tuple[Any, ...]:
    """``parser.parse_args_and_config(argv)`` with library errors turned into one line.

    ``what`` names the YAML in messages (``recipe``, ``config``); ``label`` starts the lines that name no file
    (``recipe``, ``gleamx eval``).
    """
    path = None
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise GleamConfigError(f"--config: expected a {what} YAML path")
        path = argv[i + 1]
        if not Path(path).is_file():
            raise GleamConfigError(f"{path}: {what} not found (expected a YAML file)")
    try:
        *parsed, from_file, from_cli = parser.parse_args_and_config(
            args=argv, return_remaining_strings=True, separate_remaining_strings=True)
    except yaml.YAMLError as e:
        raise GleamConfigError(f"{path}: not valid YAML ({first_line(e)})") from None
    except (ValueError, TypeError) as e:
        raise GleamConfigError(f"{label}: {first_line(e)}") from None
    if from_file:
        raise _unknown_keys(str(path), parser, from_file, what)
    if from_cli:
        raise GleamConfigError(f"{label}: unknown command-line argument(s): {' '.join(from_cli)}")
    return tuple(parsed)
