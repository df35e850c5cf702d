"""Byte-safe reading of data files: bytes are decoded one line at a time.

A byte that is not UTF-8 (or a file cut inside a multi-byte character) becomes one
:class:`~gleamx.errors.Problem` naming its line and byte offset, and the lines after it are
still read, so one bad line does not hide the rest. A JSON ``\\ud800``-style escape of a lone
surrogate is reported the same way: it is not text either, and writing it back would fail.

Limits, so a hostile file costs a line of output, not memory or a traceback: a line longer than
``MAX_LINE_BYTES`` is skipped in small reads and reported; JSON is parsed by :func:`parse_json`, which refuses
nesting deeper than ``MAX_JSON_DEPTH`` before parsing (Python's parser recurses per level) and an integer too long
for Python to convert.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gleamx.errors import GleamDataError, Problem

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')

MAX_LINE_BYTES = 64 << 20   # one record; a gleamx sample is a few KB (its images are paths)
MAX_JSON_DEPTH = 64         # a sample nests 3 levels; Python's parser recurses per level
_READ = 1 << 20             # how much of an over-long line is read at a time while it is skipped


def raw_lines(f: BinaryIO, limit: int | None = None) -> Iterator[bytes | int]:
    """Each line of the binary file ``f`` (with its newline), or, for a line longer than ``limit`` bytes
    (default ``MAX_LINE_BYTES``), its length: such a line is skipped in small reads, never held whole."""
    limit = limit or MAX_LINE_BYTES
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        size = len(raw)
        while raw and not raw.endswith(b"\n"):
            raw = f.readline(_READ)
            size += len(raw)
        yield size


def _too_long(file: str | os.PathLike, line: int, size: int) -> Problem:
    """``file:line: line: longer than N bytes (M); expected one record per line``."""
    return Problem(str(file), line, "line", f"longer than {MAX_LINE_BYTES} bytes ({size}); expected one record "
                                            "per line")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON ``text`` nests lists and objects deeper than ``limit``: brackets are counted outside
    strings, before any parsing, in one pass."""
    if text.count("[") + text.count("{") <= limit:  # fast path: too few brackets to nest that deep
        return False
    depth, in_string, skip = 0, False, -1
    for m in _JSON_SPECIAL.finditer(text):
        c, i = m.group(), m.start()
        if in_string:
            if i == skip:  # the character a backslash escapes
                continue
            if c == "\\":
                skip = i + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


def parse_json(text: str) -> Any:
    """``json.loads(text)`` within limits; a ``ValueError`` whose message is one line otherwise: not JSON
    (``msg at column N``), nested deeper than ``MAX_JSON_DEPTH``, or an integer too long to convert."""
    if json_too_deep(text):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{e.msg} at column {e.colno}") from None
    except ValueError:  # int("9" * 5000): more digits than sys.get_int_max_str_digits()
        raise ValueError("a number too long to convert (more digits than Python converts)") from None


def utf8_problem(file: str | os.PathLike, line: int | None, file_offset: int, line_offset: int | None = None,
                 field: str = "encoding") -> Problem:
    """``file:line: encoding: invalid UTF-8 at byte N of the file (byte M of the line)``; offsets count from 0."""
    where = f" (byte {line_offset} of the line)" if line_offset is not None else ""
    return Problem(str(file), line, field,
                   f"invalid UTF-8 at byte {file_offset} of the file{where}; expected UTF-8 text")


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | Problem]]:
    """``(line_number, text)`` for every line of a file, or ``(line_number, Problem)`` for a line that is
    not UTF-8 or longer than ``MAX_LINE_BYTES``. A UTF-8 byte-order mark at the start is dropped. Lines keep
    their ``\\n``."""
    path = Path(path)
    offset = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(raw_lines(f), start=1):
            if isinstance(raw, int):
                offset += raw
                yield lineno, _too_long(path, lineno, raw)
                continue
            start, offset = offset, offset + len(raw)
            skip = 3 if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                text = raw[skip:].decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, utf8_problem(path, lineno, start + skip + e.start, skip + e.start)
                continue
            yield lineno, text


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """:func:`iter_lines` for files that must be read whole: the first bad line raises its one-line error."""
    for lineno, text in iter_lines(path):
        if isinstance(text, Problem):
            raise GleamDataError(text)
        yield lineno, text


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 file as text; a bad byte raises ``file:line: encoding: invalid UTF-8 at byte N ...``."""
    return "".join(text for _, text in read_lines(path))


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in any string (keys too) of a parsed JSON value, as ``\\udXXX``."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                return f"\\u{ord(m.group()):04x}"
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def surrogate_problem(file: str, line: int | None, text: str, row: Any) -> Problem | None:
    """A problem if ``row`` (parsed from ``text``) holds a lone-surrogate escape, else ``None``."""
    if not _SURROGATE_ESCAPE.search(text):  # fast path: no escape that could decode to a surrogate
        return None
    found = _lone_surrogate(row)
    if found is None:  # only valid surrogate pairs (e.g. an emoji written with ensure_ascii)
        return None
    return Problem(file, line, "encoding",
                   f"lone surrogate escape {found} (not valid Unicode text); expected UTF-8 text")


_WS = re.compile(r"[ \t\n\r]*")


def _list_start(text: str, name: str, decoder: json.JSONDecoder, fail: Any) -> int:
    """The index of the first non-blank character after the opening ``[`` of a file's JSON list."""
    i = _WS.match(text, 0).end()
    if i >= len(text):
        raise GleamDataError.at(name, None, "json", "expected a JSON list of conversations, got an empty file")
    if text[i] != "[":
        try:
            top = decoder.raw_decode(text, i)[0]
        except json.JSONDecodeError as e:
            raise fail(e.pos, f"expected a JSON list of conversations ({e.msg})") from None
        raise fail(i, f"expected a JSON list of conversations, got {type(top).__name__}")
    return _WS.match(text, i + 1).end()


def iter_json_list(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(index, row)`` for each element of a file holding one JSON list (1-based index).

    A row that holds a byte that is not UTF-8 (inside a string) comes as a :class:`Problem` for that
    row, naming the byte's offset and line; the other rows are still read. A bad byte outside any
    string, or JSON that is not a list, raises one :class:`GleamDataError` for the file.
    """
    path = Path(path)
    name = str(path)
    data = path.read_bytes()
    skip = 3 if data.startswith(codecs.BOM_UTF8) else 0
    text = data[skip:].decode("utf-8", errors="surrogateescape")  # each bad byte -> one \udc80-\udcff char

    def byte_of(char_index: int) -> int:
        return skip + len(text[:char_index].encode("utf-8", errors="surrogateescape"))

    def line_of(char_index: int) -> int:
        return text.count("\n", 0, char_index) + 1

    def fail(char_index: int, message: str) -> GleamDataError:
        bad = _SURROGATE.search(text, 0, max(char_index, 0) + 1)
        if bad is not None:  # the decoder stumbled on (or after) a byte that is not UTF-8: say that
            return GleamDataError(utf8_problem(name, line_of(bad.start()), byte_of(bad.start())))
        return GleamDataError.at(name, line_of(char_index), "json", message)

    decoder = json.JSONDecoder()
    i = _list_start(text, name, decoder, fail)
    index = 0
    line, counted = 1, 0  # line numbers are counted incrementally: files can be large
    byte, measured = skip, 0
    if i < len(text) and text[i] == "]":
        return
    while True:
        try:
            row, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise fail(e.pos, f"expected a JSON list of conversations ({e.msg})") from None
        except RecursionError:  # a whole file is not scanned for depth first (too slow): its parser stops
            raise fail(i, f"row {index + 1} nests too deeply to parse") from None
        except ValueError:  # an integer with more digits than Python converts
            raise fail(i, f"row {index + 1} holds a number too long to convert") from None
        index += 1
        bad = _SURROGATE.search(text, i, end)
        if bad is not None:
            line += text.count("\n", counted, bad.start())
            byte += len(text[measured:bad.start()].encode("utf-8", errors="surrogateescape"))
            counted = measured = bad.start()
            yield index, Problem(name, index, "encoding",
                                 f"invalid UTF-8 at byte {byte} of the file (line {line}); expected UTF-8 text")
        else:
            problem = surrogate_problem(name, index, text[i:end], row)
            yield index, (problem if problem is not None else row)
        i = _WS.match(text, end).end()
        if i < len(text) and text[i] == ",":
            i = _WS.match(text, i + 1).end()
            continue
        if i < len(text) and text[i] == "]":
            rest = _WS.match(text, i + 1).end()
            if rest != len(text):
                raise fail(rest, "expected a JSON list of conversations (extra data after the list)")
            return
        raise fail(i, "expected a JSON list of conversations (expected ',' or ']' between rows)")
