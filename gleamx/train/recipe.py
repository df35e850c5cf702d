"""Recipe parsing: TrlParser over (gleamx args, SFTConfig, ModelConfig), with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gleamx.errors import GleamConfigError, first_line


def _check_config_keys(parser: Any, argv: list[str]) -> None:
    """An unknown or misspelt YAML key is one line naming it, before anything runs."""
    if "--config" not in argv:
        return
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise GleamConfigError("--config: expected a recipe YAML path")
    path = Path(argv[i + 1])
    if not path.is_file():
        raise GleamConfigError(f"{path}: recipe not found (expected a YAML file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise GleamConfigError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise GleamConfigError(f"{path}: expected a mapping of option: value")
    known = {a.dest for a in parser._actions}
    known |= {"env"}  # TrlParser sets environment variables from an `env:` mapping
    unknown = sorted(set(data) - known)
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, known, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise GleamConfigError(f"{path}: unknown recipe key(s): {', '.join(hints)}")


def parse_recipe(parser: Any, argv: list[str]) -> tuple[Any, ...]:
    """``parser.parse_args_and_config`` with recipe keys checked and library errors turned into one line."""
    _check_config_keys(parser, argv)
    try:
        return tuple(parser.parse_args_and_config(args=argv))
    except GleamConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise GleamConfigError(f"recipe: {first_line(e)}") from None
