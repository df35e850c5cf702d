"""Recipe parsing: TrlParser over (gleamx args, SFTConfig, ModelConfig), with one-line errors."""

from __future__ import annotations

from typing import Any

from gleamx.config_args import parse_with_config


def parse_recipe(parser: Any, argv: list[str]) -> tuple[Any, ...]:
    """``parser.parse_args_and_config`` with library errors turned into one line (see
    :func:`gleamx.config_args.parse_with_config`)."""
    return parse_with_config(parser, argv, what="recipe", label="recipe")
