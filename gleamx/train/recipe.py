"""Recipe parsing: TrlParser over (gleamx args, SFTConfig, ModelConfig), with one-line errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from gleamx.errors import GleamConfigError, first_line


def _unknown_keys(path: str, parser: Any, remaining: list[str]) -> GleamConfigError:
    """TrlParser's leftover ``--key value`` pairs from the YAML as one line, with a did-you-mean hint per key."""
    known = {a.dest for a in parser._actions}
    hints = []
    for key in sorted({s[2:] for s in remaining[::2]}):
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return GleamConfigError(f"{path}: unknown recipe key(s): {', '.join(hints)}")


def parse_recipe(parser: Any, argv: list[str]) -> tuple[Any, ...]:
    """``parser.parse_args_and_config`` with library errors turned into one line.

    TrlParser finds the YAML keys no dataclass field takes; gleamx only adds the hint for a misspelt one.
    """
    path = None
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise GleamConfigError("--config: expected a recipe YAML path")
        path = argv[i + 1]
        if not Path(path).is_file():
            raise GleamConfigError(f"{path}: recipe not found (expected a YAML file)")
    try:
        *parsed, from_file, from_cli = parser.parse_args_and_config(
            args=argv, return_remaining_strings=True, separate_remaining_strings=True)
    except yaml.YAMLError as e:
        raise GleamConfigError(f"{path}: not valid YAML ({first_line(e)})") from None
    except (ValueError, TypeError) as e:
        raise GleamConfigError(f"recipe: {first_line(e)}") from None
    if from_file:
        raise _unknown_keys(str(path), parser, from_file)
    if from_cli:
        raise GleamConfigError(f"recipe: unknown command-line argument(s): {' '.join(from_cli)}")
    return tuple(parsed)
