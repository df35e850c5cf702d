"""One parser for every command: TRL's ``TrlParser`` over the command's config dataclass.

A flag exists exactly when a field does (``--max_new_tokens`` and ``--max-new-tokens``), its choices come
from the field's ``Literal`` type, its help from ``metadata["help"]``, and ``--config FILE.yaml`` sets any
field from YAML. Two additions over TrlParser: a field with ``metadata={"positional": True}`` is a positional
argument (``gleamx data validate PATH``), and list fields take comma-separated values too
(``--views uav,ground``); the config's ``__post_init__`` normalises and checks them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
from typing import Any, Union, get_args, get_origin

from trl import TrlParser

from gleamx.config_args import parse_with_config
from gleamx.console import print_error


def _list_field(tp: Any) -> bool:
    if get_origin(tp) in (Union, types.UnionType):
        tp = next((a for a in get_args(tp) if a is not type(None)), tp)
    return get_origin(tp) is list


class GleamParser(TrlParser):
    """``TrlParser`` with positional fields, comma-or-space list flags and one-line errors."""

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        meta = dict(field.metadata)
        default = None if field.default is dataclasses.MISSING else field.default
        if meta.pop("positional", False):
            parser.add_argument(field.name, nargs="?", default=default, help=meta.get("help"),
                                metavar=field.name.upper())
            return
        if _list_field(field.type):  # strings here; __post_init__ splits commas and converts
            names = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            parser.add_argument(*names, nargs="+", type=str, default=default, help=meta.get("help"))
            return
        TrlParser._parse_dataclass_field(parser, field)

    def error(self, message: str) -> None:  # type: ignore[override]
        """A bad command line is one ``error: ...`` line (exit 2), like every other gleamx error."""
        print_error(f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(2)

    def parse_config(self, argv: list[str]) -> Any:
        """The command's config from ``argv`` (flags, and ``--config FILE.yaml``); an unknown YAML key or flag is
        one line naming it, with the closest field for a misspelt key."""
        return parse_with_config(self, list(argv), what="config", label=self.prog)[0]


def command_parser(config: type, prog: str, description: str | None = None,
                   parent: argparse._SubParsersAction | None = None, name: str | None = None,
                   help: str | None = None) -> GleamParser:
    """The parser of one command over ``config``; under ``parent`` when given (``gleamx data validate``)."""
    if parent is not None:
        parser = parent.add_parser(name, help=help, description=description or help, dataclass_types=[config])
    else:
        parser = GleamParser(dataclass_types=[config], prog=prog, description=description)
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="read any of the options below from a YAML file (flags override it)")
    return parser
