"""Every command line and recipe of gleamx, parsed one way: TRL's ``TrlParser`` over config dataclasses.

A flag exists exactly when a field does (``--max_new_tokens`` and ``--max-new-tokens``), its choices come from the
field's ``Literal`` type, its help from ``metadata["help"]``, and ``--config FILE.yaml`` sets any field from YAML.
The recipe scripts (SFT, GRPO, retrieval: :func:`parse_recipe`, :func:`grouped`) and every ``gleamx`` command
(:class:`GleamParser`, :func:`command_parser`) use this module; gleamx adds one-line errors, a did-you-mean for a
misspelt key, positional fields (``metadata={"positional": True}``), comma-or-space list flags, examples at the top
of ``--help``, ``(required)`` on options that must be given, and one heading per dataclass in a recipe's help.

Every YAML gleamx reads from a user (``--config``, a recipe, a JSON/YAML option value) goes through
:func:`load_yaml`: at most ``MAX_YAML_BYTES``, ``MAX_YAML_DEPTH`` levels and ``MAX_YAML_NODES`` nodes with aliases
expanded (a "billion laughs" file fails in milliseconds), numbers of at most ``MAX_NUMBER_CHARS`` characters, and each
mapping key once. Every number a flag or YAML gives is finite and fits 64 bits before any dataclass sees it (TRL's
included); a field's range (``field_help(low=, high=)``) is its config's to check (:func:`gleamx.checks.check_ranges`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from trl import TrlParser

from gleamx.console import print_error
from gleamx.checks import cap_for_walkthrough, check_range, option_flag, recipe_option
from gleamx.errors import GleamConfigError, first_line

MAX_YAML_BYTES = 1 << 20      # a config or recipe is a few KB
MAX_YAML_DEPTH = 32           # a recipe nests 3 levels; PyYAML's composer recurses per level
MAX_YAML_NODES = 100_000      # nodes with every alias expanded: what a reader of the result may walk
MAX_NUMBER_CHARS = 100        # a longer int is a ValueError in int(), a longer float is inf


class YamlLimitError(yaml.YAMLError):
    """A YAML input over one of this module's limits, or with a key given twice (``line N: ...``)."""


def _at(node_or_event: Any) -> str:
    return f"line {node_or_event.start_mark.line + 1}"


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.safe_load`` within limits. Sizes are counted while composing, before anything is built: an alias
    adds the size of the node it names, so exponential expansion is refused after a few hundred events."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it expands to (known once it is composed)

    def _grow(self, n: int, where: Any) -> None:
        self._nodes += n
        if self._nodes > MAX_YAML_NODES:
            raise YamlLimitError(f"{_at(where)}: more than {MAX_YAML_NODES} values with aliases expanded "
                                 "(aliases that repeat aliases: a 'billion laughs' file?)")

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # the alias sits inside the node it names
                raise YamlLimitError(f"{_at(event)}: alias *{event.anchor} refers to a value that contains it")
            self._grow(size, event)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"{_at(self.peek_event())}: nested deeper than {MAX_YAML_DEPTH} levels")
        before = self._nodes
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._grow(1, node)
        self._sizes[id(node)] = self._nodes - before
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in seen:
                    raise YamlLimitError(f"{_at(key)}: duplicate key {key.value!r} (give each key once; the last "
                                         "one would win silently)")
                seen.add((key.tag, key.value))
        return super().construct_mapping(node, deep=deep)

    def construct_number(self, node: Any) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise YamlLimitError(f"{_at(node)}: a number of {len(node.value)} characters (expected at most "
                                 f"{MAX_NUMBER_CHARS})")
        kind = "int" if node.tag.endswith(":int") else "float"
        return getattr(yaml.SafeLoader, f"construct_yaml_{kind}")(self, node)


for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
    _BoundedLoader.add_constructor(_tag, _BoundedLoader.construct_number)


def load_yaml(text: str, name: str, what: str = "YAML") -> Any:
    """YAML (or JSON) ``text`` as Python values, within this module's limits; any problem is one
    :class:`GleamConfigError` line starting with ``name`` (a file, or an option; ``what`` names the format)."""
    if len(text) > MAX_YAML_BYTES:
        raise GleamConfigError(f"{name}: larger than {MAX_YAML_BYTES} characters (expected a config of a few KB)")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader with limits)
    except YamlLimitError as e:
        raise GleamConfigError(f"{name}: {e}") from None
    except yaml.YAMLError as e:
        raise GleamConfigError(f"{name}: not valid {what} ({first_line(e)})") from None


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """A YAML file (``--config``, a recipe) through :func:`load_yaml`, read only if it is small enough."""
    path = Path(path)
    if not path.is_file():
        raise GleamConfigError(f"{path}: {what} not found (expected a YAML file)")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise GleamConfigError(f"{path}: larger than {MAX_YAML_BYTES} bytes (expected a {what} of a few KB)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GleamConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return load_yaml(text, str(path))


def _short(message: str) -> str:
    """An argparse message with any long quoted value cut (``invalid int value: '9999...'`` of 5000 digits)."""
    return re.sub(r"'([^']{60,})'", lambda m: f"'{m.group(1)[:20]}...' ({len(m.group(1))} characters)", message)


class _CheckedNumbers:
    """Parser mixin: every number a dataclass field gets, from a flag or the YAML, is finite and fits 64 bits
    before the dataclasses are built (TRL's ``__post_init__`` turns ``save_steps: .inf`` into an OverflowError);
    and argparse's own errors never echo a huge value."""

    option_name: Callable[[str], str] = staticmethod(option_flag)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, rest = super().parse_known_args(args, namespace)  # type: ignore[misc]
        for dtype in getattr(self, "dataclass_types", ()):
            for f in dataclasses.fields(dtype):
                if hasattr(namespace, f.name):
                    check_range(self.option_name(f.name), getattr(namespace, f.name))
        return namespace, rest

    def error(self, message: str) -> None:  # type: ignore[override]
        super().error(_short(message))  # type: ignore[misc]


def _unknown_keys(path: str, parser: Any, remaining: list[str], what: str) -> GleamConfigError:
    """TrlParser's leftover ``--key value`` pairs from the YAML as one line, with a did-you-mean hint per key."""
    known = {a.dest for a in parser._actions}
    hints = []
    for key in sorted({s[2:] for s in remaining[::2]}):
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return GleamConfigError(f"{path}: unknown {what} key(s): {', '.join(hints)}")


# What transformers' TrainingArguments says, and what a gleamx user does about it.
_REMEDIES = {
    "doesn't support bf16/gpu": "bf16: true needs a CUDA GPU with bf16, and this machine has none (a GPU recipe "
                                "run here): add --use_cpu true to train in bf16 on the CPU, or --bf16 false",
}


def _with_remedy(message: str) -> str:
    """``message``, or the gleamx line for a library message that names no setting a gleamx user can change."""
    return next((remedy for known, remedy in _REMEDIES.items() if known in message), message)


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
        read_yaml(path, what)  # within limits and each key once; TrlParser then reads the same small file
    try:
        *parsed, from_file, from_cli = parser.parse_args_and_config(
            args=argv, return_remaining_strings=True, separate_remaining_strings=True)
    except yaml.YAMLError as e:
        raise GleamConfigError(f"{path}: not valid YAML ({first_line(e)})") from None
    except (ValueError, TypeError) as e:
        raise GleamConfigError(f"{label}: {_with_remedy(first_line(e))}") from None
    if from_file:
        raise _unknown_keys(str(path), parser, from_file, what)
    if from_cli:
        raise GleamConfigError(f"{label}: unknown command-line argument(s): {' '.join(from_cli)}")
    return tuple(cap_for_walkthrough(p, label) for p in parsed)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` as gleamx writes it: the description's examples kept line by line, a default shown where there is
    one, and ``(required)`` instead of ``(default: None)`` on an option that must be given."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)".strip()
        if action.default is None or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def with_examples(examples: list[str] | tuple[str, ...], text: str | None) -> str:
    """A command's description: its examples first (``examples:`` and one per line), then ``text``."""
    shown = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else ""
    return "\n\n".join(part for part in (shown, text or "") if part)


def group_name(dtype: type) -> str:
    """The ``--help`` heading of one dataclass's options: gleamx's own first, then TRL's, by class."""
    owner = dtype.__module__.split(".")[0]
    return f"{'TRL' if owner == 'trl' else owner} options ({dtype.__name__})"


def grouped(parser_cls: type) -> type:
    """``parser_cls`` (a TrlParser) whose ``--help`` puts each dataclass's options under a heading of its own, in
    the order given (gleamx's before TRL's), instead of one 900-line list."""

    class Grouped(_CheckedNumbers, parser_cls):  # type: ignore[misc, valid-type]
        option_name = staticmethod(recipe_option)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", HelpFormatter)
            # A recipe takes hundreds of options: the usage line names the shape, the groups below list them.
            kwargs.setdefault("usage", "%(prog)s --config RECIPE [--OPTION VALUE ...]")
            super().__init__(*args, **kwargs)

        def _add_dataclass_arguments(self, dtype: Any) -> None:
            if hasattr(dtype, "_argument_group_name"):
                return super()._add_dataclass_arguments(dtype)
            group = self.add_argument_group(group_name(dtype))
            # The group takes the fields; TrlParser's field parser adds them to whatever it is handed.
            original = self.add_argument
            try:
                self.add_argument = group.add_argument  # type: ignore[method-assign]
                super()._add_dataclass_arguments(dtype)
            finally:
                self.add_argument = original  # type: ignore[method-assign]

    Grouped.__name__ = Grouped.__qualname__ = f"Grouped{parser_cls.__name__}"
    return Grouped


def parse_recipe(parser: Any, argv: list[str]) -> tuple[Any, ...]:
    """A recipe script's ``(script args, training args, model args)`` (or its one config) from ``argv``."""
    return parse_with_config(parser, argv, what="recipe", label="recipe")


def _list_field(tp: Any) -> bool:
    if get_origin(tp) in (Union, types.UnionType):
        tp = next((a for a in get_args(tp) if a is not type(None)), tp)
    return get_origin(tp) is list


class GleamParser(_CheckedNumbers, TrlParser):
    """``TrlParser`` with positional fields, comma-or-space list flags, numbers checked and one-line errors."""

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        meta = field.metadata.copy()  # as add_argument takes it (FieldMetadata: the range said in the help)
        default = None if field.default is dataclasses.MISSING else field.default
        if meta.pop("positional", False):  # a list field takes one or more (``gleamx compare RUN_A RUN_B``)
            parser.add_argument(field.name, nargs="+" if _list_field(field.type) else "?", default=default,
                                help=meta.get("help"), metavar=field.name.upper())
            return
        if _list_field(field.type):  # strings here; __post_init__ splits commas and converts
            names = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            parser.add_argument(*names, nargs="+", type=str, default=default, help=meta.get("help"))
            return
        TrlParser._parse_dataclass_field(parser, field)

    def error(self, message: str) -> None:  # type: ignore[override]
        """A bad command line is one ``error: ...`` line (exit 2), like every other gleamx error."""
        print_error(f"{self.prog}: {_short(message)} (see {self.prog} --help)")
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
        parser = parent.add_parser(name, help=help, description=description or help, dataclass_types=[config],
                                   formatter_class=HelpFormatter)
    else:
        parser = GleamParser(dataclass_types=[config], prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="read any of the options below from a YAML file (flags override it)")
    return parser
