"""What the README and docs/*.md tell a reader to run, read out of the markdown once for every test that checks it.

``doc_files()`` lists the documents. ``commands()`` gives every command line they show: each line of a fenced shell
block (``bash``, ``sh``, ``shell``, ``console``; backslash continuations joined, ``# comments`` dropped, split at
``&&``, ``||``, ``;`` and ``|``) and every inline ``code`` span outside the fences that starts with a command word
(``gleamx``, ``gleamx-eval``, ``python``, ``accelerate``, ``sbatch``, ``pip`` ...). ``paths()`` gives every repo path
they name, ``api_names()`` every ``gleamx.x.y`` Python name, ``links()`` every markdown link and image. Tests in
test_docs.py, test_packaging.py and test_strict_skips.py check what these return against the code; nothing here
imports gleamx.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

SHELL_LANGS = {"bash", "sh", "shell", "console"}
COMMAND_WORDS = {"gleamx", "gleamx-eval", "python", "python3", "accelerate", "sbatch", "srun", "pip", "bash",
                 "hf", "huggingface-cli"}
SEPARATORS = {"&&", "||", ";", "|"}
# where a repo path starts: the folders a reader is told to open or run (a path under them must exist)
REPO_DIRS = ("recipes", "accelerate_configs", "benchmark", "docs", "tests", "gleamx", ".ci")
_PATH = re.compile(r"(?<![\w/.$-])(?:" + "|".join(re.escape(d) for d in REPO_DIRS) + r")/[\w./*-]*")
_API = re.compile(r"(?<![\w/.-])gleamx(?:\.[A-Za-z_]\w*)+")
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_INLINE = re.compile(r"(`+)(?!`)([^`](?:.|\n)*?)(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


@dataclass(frozen=True)
class DocCommand:
    """One command line of a document: its words (``shlex``), where it is, and whether it came from a fence."""

    file: Path
    line: int
    words: tuple[str, ...]
    fenced: bool

    @property
    def where(self) -> str:
        return f"{shown(self.file)}:{self.line}"

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def shown(path: Path) -> str:
    """``path`` as a message names it: relative to the repo root when it is inside."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def doc_files() -> list[Path]:
    """README.md and every docs/*.md, in that order."""
    return [README, *sorted(DOCS.glob("*.md"))]


@lru_cache(maxsize=None)
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def text(path: Path) -> str:
    return _read(path)


def _split_fences(path: Path) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """(fenced lines as ``(line number, language, text)``, prose lines as ``(line number, text)``)."""
    fenced: list[tuple[int, str, str]] = []
    prose: list[tuple[int, str]] = []
    fence: str | None = None
    lang = ""
    for n, line in enumerate(_read(path).splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence, lang = m.group(2), m.group(3).lower()
            continue
        if fence is not None and m and m.group(2).startswith(fence[0]) and len(m.group(2)) >= len(fence) \
                and not m.group(3):
            fence = None
            continue
        if fence is None:
            prose.append((n, line))
        else:
            fenced.append((n, lang, line))
    assert fence is None, f"{shown(path)}: a code fence is never closed"
    return fenced, prose


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """Every logical line of the fenced shell blocks: ``(line number of its first line, text)``, with the
    backslash continuations joined."""
    fenced, _ = _split_fences(path)
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    last = -1
    for n, lang, line in fenced:
        if lang not in SHELL_LANGS:
            continue
        if pending is not None and n != last + 1:  # a new block: a dangling continuation ends
            out.append(pending)
            pending = None
        last = n
        start, before = pending if pending is not None else (n, "")
        if line.rstrip().endswith("\\"):
            pending = (start, before + line.rstrip()[:-1] + " ")
            continue
        pending = None
        out.append((start, before + line))
    if pending is not None:
        out.append(pending)
    return out


def _paragraphs(path: Path) -> list[tuple[int, str]]:
    """The prose outside the fences as paragraphs (runs of non-blank lines; a heading or a table row is its own):
    ``(line number of the first line, text with its newlines)``. An inline span or a link may cross a line end."""
    _, prose = _split_fences(path)
    out: list[tuple[int, list[str]]] = []
    last = -1
    for n, line in prose:
        alone = line.lstrip().startswith(("#", "|"))
        if not line.strip():
            last = -1
            continue
        if n == last + 1 and not alone and not out[-1][1][-1].lstrip().startswith(("#", "|")):
            out[-1][1].append(line)
        else:
            out.append((n, [line]))
        last = n
    return [(n, "\n".join(lines)) for n, lines in out]


def _spans(path: Path) -> list[tuple[int, re.Match]]:
    """Every inline ``code`` span of the prose with the line it starts on."""
    return [(n + para[:m.start()].count("\n"), m) for n, para in _paragraphs(path) for m in _INLINE.finditer(para)]


def inline_code(path: Path) -> list[tuple[int, str]]:
    """Every inline ``code`` span outside the fences: ``(line number, text)``; a span across a line end is one."""
    return [(n, " ".join(m.group(2).split())) for n, m in _spans(path)]


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like code: split on spaces
        return line.split("#", 1)[0].split()


def _pieces(words: list[str]) -> list[list[str]]:
    pieces: list[list[str]] = [[]]
    for w in words:
        if w in SEPARATORS:
            pieces.append([])
        else:
            pieces[-1].append(w)
    return [p for p in pieces if p]


def _strip_env(words: list[str]) -> list[str]:
    """Drop leading ``NAME=value`` assignments (``CI=true bash .ci/run``)."""
    i = 0
    while i < len(words) and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[i]):
        i += 1
    return words[i:]


def commands(path: Path) -> list[DocCommand]:
    """Every command line ``path`` shows, fenced and inline, split at ``&&``, ``||``, ``;`` and ``|``."""
    found: list[DocCommand] = []
    for n, line in shell_lines(path):
        for piece in _pieces(_words(line)):
            piece = _strip_env(piece)
            if piece:
                found.append(DocCommand(path, n, tuple(piece), True))
    for n, code in inline_code(path):
        first = code.split(None, 1)[0] if code.split() else ""
        if first not in COMMAND_WORDS:
            continue
        for piece in _pieces(_words(code)):
            piece = _strip_env(piece)
            if piece:
                found.append(DocCommand(path, n, tuple(piece), False))
    return found


def walk_order() -> list[Path]:
    """The documents in the order a reader follows them: README.md, then the pages in the order of README's
    documentation table (its ``| [docs/X.md](...) |`` rows); a page the table leaves out comes last, by name."""
    listed = [ROOT / m.group(1) for m in re.finditer(r"^\|\s*\[(docs/[\w.-]+\.md)\]", _read(README), re.M)]
    pages = [p for p in listed if p.is_file()]
    return [README, *pages, *(p for p in sorted(DOCS.glob("*.md")) if p not in pages)]


def section_of(path: Path, line: int) -> str:
    """``FILE#heading`` of the section ``line`` lies in (the nearest heading above it, any level); ``FILE`` before
    the first heading."""
    _, prose = _split_fences(path)
    title = ""
    for n, text in prose:
        if n > line:
            break
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", text)
        if m:
            title = m.group(1)
    return f"{shown(path)}#{title}" if title else shown(path)


def all_commands() -> list[DocCommand]:
    """``commands`` of every document."""
    return [c for p in doc_files() for c in commands(p)]


def paths(path: Path) -> list[tuple[int, str]]:
    """Every repo path ``path`` names (``recipes/...``, ``accelerate_configs/...``, ``benchmark/...``, ``docs/...``,
    ``tests/...``, ``gleamx/...``, ``.ci/...``), in prose, code and links alike: ``(line number, path)``."""
    found = []
    for n, line in enumerate(_read(path).splitlines(), start=1):
        for m in _PATH.finditer(line):
            p = m.group(0).rstrip(".,:;")
            if p.rstrip("/") in REPO_DIRS:
                continue  # the folder itself (``gleamx/``)
            found.append((n, p))
    return found


def api_names(path: Path) -> list[tuple[int, str]]:
    """Every dotted Python name of gleamx ``path`` names (``gleamx.data.FEATURES``, ``gleamx.recipes.sft``):
    ``(line number, name)``."""
    return [(n, m.group(0)) for n, line in enumerate(_read(path).splitlines(), start=1)
            for m in _API.finditer(line)]


def links(path: Path) -> list[tuple[int, str]]:
    """Every markdown link and image target in ``path``'s prose: ``(line number, target)``."""
    found = []
    for n, para in _paragraphs(path):
        plain = _INLINE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), para)  # code is no link; lines kept
        found += [(n + plain[:m.start()].count("\n"), m.group(1)) for m in _LINK.finditer(plain)]
    return found


def headings(path: Path) -> set[str]:
    """The GitHub anchors of ``path``'s headings (``## Two commands`` -> ``two-commands``)."""
    _, prose = _split_fences(path)
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"`", "", m.group(1)).lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        k = counts.get(slug, 0)
        counts[slug] = k + 1
        anchors.add(slug if k == 0 else f"{slug}-{k}")
    return anchors


def is_placeholder(word: str) -> bool:
    """A word the reader replaces (``DIR``, ``RUN_DIR``, ``FILE.yaml``, ``USER/SPACE``, ``...``, ``<host>``)."""
    stem = word.split("=", 1)[-1]
    return ("..." in stem or "<" in stem or "$" in stem
            or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(?:[./][A-Z][A-Z0-9_]*)*(?:\.[a-z]+)?", stem)))
