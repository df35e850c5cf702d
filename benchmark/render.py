"""Render the figures the READMEs quote from ``benchmark/results/<name>.json``, so that no figure is typed by hand.

Four markers, each an HTML comment pair (invisible on GitHub) around the text the renderer owns:

    <!--fig NAME.KEY[:STAT] [SPEC [UNIT]]-->1.04x<!--/fig-->
        one number of figure KEY of results NAME (KEY may hold dots: ``search.time_ratio``). STAT is ``median``
        (the default), ``min``, ``max``, ``n``, ``spread`` (``1.04x (min 0.92, max 1.50, n=3)``, as the scripts
        print a figure) or a number the figure recorded beside them (``Results.add(..., share=17.0)``:
        ``:share``). SPEC is a Python format spec (``.2f``, ``,.0f``, ``.1%``; ``-`` or none: the figure's own
        ``fmt`` if it recorded one, else three significant digits). UNIT follows the number (with a space unless
        it is ``x`` or ``%``); for one number it may as well stand outside the marker. A fig marker never starts
        a line: a line that starts with ``<!--`` would begin an HTML block and cut the paragraph in two.
    <!--table NAME [PATTERN ...]-->...<!--/table-->
        a markdown table of the figures of NAME (all, or those whose key matches a glob PATTERN): label, median,
        min, max, n, unit; and under it the results file, date, run time, commit and machine lines.
    <!--grid NAME PATTERN ...-->...<!--/grid-->
        the figures of NAME whose key matches a glob PATTERN, each of which recorded a ``row`` and a ``col`` label
        (``Results.add(..., row="100,000 tiles, HNSW", col="build (s)")``), as one table: a row per ``row``, a
        column per ``col`` (in the order of the row that has the most), each cell the median in the figure's
        format; and under it the run's lines, as a table's. When no figure of the file matches (a results file
        recorded before the figures existed), it renders one line saying so and how to record them.
    <!--output NAME-->...<!--/output-->
        the printed output of the run that wrote the results (``benchmark/results/<name>.log``, saved by
        ``run_all.py``), as a fenced block headed by its command line.

    python benchmark/render.py            # rewrite README.md, benchmark/README.md and docs/*.md in place
    python benchmark/render.py --check    # exit 1 listing every marker whose text is not what the results give
    python benchmark/render.py --results benchmark/results/quick --check   # against the --quick results
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmark" / "results"
STATS = ("median", "min", "max", "n", "spread")


def pages(root: Path = ROOT) -> list[Path]:
    """The documents that may quote a figure: the two READMEs and docs/*.md."""
    return [root / "README.md", root / "benchmark" / "README.md", *sorted((root / "docs").glob("*.md"))]


# One pattern for the three markers: the opening comment's words, then everything up to the matching close.
# NAME starts lower-case, so that the syntax written out with upper-case placeholders is no marker; the text holds
# no other comment, so that a marker left open cannot swallow the next one.
MARKER = re.compile(r"<!--(?P<kind>fig|table|grid|output) (?P<args>[a-z0-9_][^<>]*?)-->(?P<text>(?:(?!<!--).)*?)"
                    r"<!--/(?P=kind)-->", re.S)


class RenderError(Exception):
    """A marker the results cannot fill: no results file, no such key, a malformed marker."""


@dataclass(frozen=True)
class Problem:
    """One marker whose text differs from what the results give, or that cannot be rendered."""

    file: Path
    line: int
    marker: str
    message: str

    def __str__(self) -> str:
        where = self.file.relative_to(ROOT) if self.file.is_relative_to(ROOT) else self.file
        return f"{where}:{self.line}: <!--{self.marker}-->: {self.message}"


class Results:
    """Results files of one folder, each read once."""

    def __init__(self, folder: Path = RESULTS) -> None:
        self.folder = folder
        self._cache: dict[str, dict[str, Any]] = {}

    def get(self, name: str) -> dict[str, Any]:
        if name not in self._cache:
            path = self.folder / f"{name}.json"
            if not path.is_file():
                raise RenderError(f"no results file {_shown(path)} (run `python benchmark/run_all.py --only {name}`)")
            self._cache[name] = json.loads(path.read_text(encoding="utf-8"))
        return self._cache[name]

    def figure(self, name: str, key: str) -> dict[str, Any]:
        figures = self.get(name)["figures"]
        if key not in figures:
            raise RenderError(f"{name}.json has no figure {key!r} (it has: {', '.join(figures) or 'none'})")
        return figures[key]

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        if not path.is_file():
            raise RenderError(f"no output log {_shown(path)}: run the benchmark through benchmark/run_all.py")
        return path.read_text(encoding="utf-8")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def auto_spec(fig: dict[str, Any]) -> str:
    """The format of a figure that recorded none: whole numbers as such, else three significant digits of the
    median, the same decimals for min and max (thousands grouped)."""
    if all(float(v).is_integer() for v in fig.get("values", [fig["median"], fig["min"], fig["max"]])):
        return ",.0f"
    m = abs(fig["median"]) or max(abs(fig["min"]), abs(fig["max"]))
    return f",.{max(0, 2 - math.floor(math.log10(m))) if m else 2}f"


def number(value: float, spec: str) -> str:
    """``value`` in the format ``spec`` (a spec ending in ``d`` takes the value as an integer)."""
    try:
        return format(int(value) if spec.endswith("d") else value, spec)
    except ValueError as e:
        raise RenderError(f"format spec {spec!r}: {e}") from None


def stat(fig: dict[str, Any], which: str, spec: str | None, unit: str = "") -> str:
    """One statistic of a recorded figure, as prose quotes it (``spec``, else the figure's ``fmt``, else auto);
    ``unit`` follows the number (the median, for ``spread``: ``1.04x (min 0.92, max 1.50, n=3)``, as the scripts
    print it), with a space unless it is ``x`` or ``%``."""
    spec = spec or fig.get("fmt") or auto_spec(fig)
    unit = unit if unit in ("", "x", "%") else f" {unit}"
    if which == "n":
        return f"{int(fig['n'])}{unit}"
    if which == "spread":
        return (f"{number(fig['median'], spec)}{unit} (min {number(fig['min'], spec)}, max "
                f"{number(fig['max'], spec)}, n={int(fig['n'])})")
    value = fig.get(which)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RenderError(f"statistic {which!r}: expected one of {', '.join(STATS)} or a number the figure recorded "
                          f"(it has: {', '.join(k for k, v in fig.items() if isinstance(v, (int, float)))})")
    return number(value, spec) + unit


def render_fig(args: str, results: Results) -> str:
    """The text of ``<!--fig NAME.KEY[:STAT] [SPEC [UNIT]]-->`` (SPEC ``-``: the default format)."""
    words = args.split()
    if not 1 <= len(words) <= 3 or "." not in words[0]:
        raise RenderError("expected `fig NAME.KEY[:STAT] [SPEC [UNIT]]`")
    ref, spec, unit = (words + [None, ""])[:3]
    ref, _, which = ref.partition(":")
    name, key = ref.split(".", 1)
    return stat(results.figure(name, key), which or "median", None if spec in (None, "-") else spec, unit or "")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def render_table(args: str, results: Results) -> str:
    """The text of ``<!--table NAME [PATTERN ...]-->``: the table and the line that says which run made it."""
    words = args.split()
    if not words:
        raise RenderError("expected `table NAME [PATTERN ...]`")
    name, patterns = words[0], words[1:]
    data = results.get(name)
    keys = [k for k in data["figures"] if not patterns or any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    if not keys:
        raise RenderError(f"{name}.json has no figure matching {' '.join(patterns)}")
    rows = ["| figure | median | min | max | n | unit | key |", "|---|---:|---:|---:|---:|---|---|"]
    for key in keys:
        fig = data["figures"][key]
        rows.append(f"| {_cell(fig['label'])} | {stat(fig, 'median', None)} | {stat(fig, 'min', None)} | "
                    f"{stat(fig, 'max', None)} | {stat(fig, 'n', None)} | {_cell(fig['unit'])} | `{key}` |")
    return "\n\n" + "\n".join(rows) + "\n\n" + provenance(name, data) + "\n\n"


def render_grid(args: str, results: Results) -> str:
    """The text of ``<!--grid NAME PATTERN ...-->``: the matching figures as a row x column table of medians."""
    words = args.split()
    if len(words) < 2:
        raise RenderError("expected `grid NAME PATTERN ...`")
    name, patterns = words[0], words[1:]
    data = results.get(name)
    figs = {k: f for k, f in data["figures"].items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    if not figs:  # recorded before these figures existed: say so (a later run that drops them changes this text)
        return (f"\n\n*No figure of `benchmark/results/{name}.json` matches {' '.join(f'`{p}`' for p in patterns)}: "
                f"its run ({data['started'][:16].replace('T', ' ')}, commit {data['commit']}) predates them; "
                f"`python benchmark/run_all.py --only {name}` records them.*\n\n")
    unlabelled = [k for k, f in figs.items() if not isinstance(f.get("row"), str) or not isinstance(f.get("col"), str)]
    if unlabelled:
        raise RenderError(f"{name}.json: figure {unlabelled[0]!r} recorded no row and col labels for a grid")
    rows = list(dict.fromkeys(f["row"] for f in figs.values()))
    per_row = [[f["col"] for f in figs.values() if f["row"] == r] for r in rows]
    # the columns in the order of the fullest row (a row may lack a column: exact search has no build time)
    cols = list(dict.fromkeys(max(per_row, key=len) + [c for cs in per_row for c in cs]))
    cell = {(f["row"], f["col"]): stat(f, "median", None) for f in figs.values()}
    ns = sorted({int(f["n"]) for f in figs.values()})
    lines = ["| | " + " | ".join(_cell(c) for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {_cell(r)} | " + " | ".join(cell.get((r, c), "-") for c in cols) + " |" for r in rows]
    each = f"median of {ns[0]} run(s)" if len(ns) == 1 else f"median of {ns[0]}-{ns[-1]} runs"
    return "\n\n" + "\n".join(lines) + f"\n\nEach cell: the {each}.\n\n" + provenance(name, data) + "\n\n"


def provenance(name: str, data: dict[str, Any]) -> str:
    """Which run a table comes from: file, kind of run, date, wall time, commit, machine at start and end."""
    argv = " ".join(data.get("argv") or [])
    return (f"*`benchmark/results/{name}.json`: {'`--quick` run' if data.get('quick') else 'full run'} "
            f"{data['started'][:16].replace('T', ' ')}, {data['seconds']:.0f} s, commit {data['commit']}"
            f"{f', args `{argv}`' if argv else ''}; machine at start: {data['machine_start']}; at end: "
            f"{data['machine_end']}; torch {data['torch']}, {data['torch_threads']} thread(s).*")


# What the commands a benchmark drives print on their own, left out of an output block (the header counts them):
# library log lines, the Trainer's log dicts, and gleamx's progress, summaries, hints and warnings of each run
# (the tiny random models are expected to learn little; the benchmark prints what it measured).
PROGRESS = re.compile("|".join([
    r"\[\d{4}-\d\d-\d\d [\d:,.]+\] \[[A-Z]+\]",  # [2026-12-05 12:00:00,924] [WARNING] ...
    r"\{'",  # {'loss': ..., 'grad_norm': ...}
    r"Loading weights", r"next: ", r"warning: ", r"padding-free batches: ",
    r"[\w -]+ run saved to ", r"\d+ training conversations from ", r"\d+ prompts \(",
    r"Retrieval encoder: ", r"epoch \d+: test R@1",
]))
LOG_HEADER = re.compile(r"^# run_all: (?P<command>.*?); results started (?P<started>\S+)$")


def render_output(args: str, results: Results) -> str:
    """The text of ``<!--output NAME-->``: the run's printed output, headed by its command, in a fenced block."""
    name = args.strip()
    data = results.get(name)
    head, _, body = results.log(name).partition("\n")
    m = LOG_HEADER.match(head)
    if not m:
        raise RenderError(f"{name}.log: the first line is not run_all's header")
    if m["started"] != data["started"]:
        raise RenderError(f"{name}.log is from the run started {m['started']}, {name}.json from {data['started']}: "
                          "run the benchmark through benchmark/run_all.py")
    # the line Results.write prints names this machine's absolute path (the table already says where the file is)
    kept = [ln for ln in body.rstrip("\n").splitlines() if not ln.startswith("results: ")]
    lines = [ln for ln in kept if not PROGRESS.match(ln)]
    dropped = len(kept) - len(lines)
    left_out = f"; {dropped} lines of library and run progress left out" if dropped else ""
    # what was left out may leave blank lines in a row: one is enough
    lines = [ln for i, ln in enumerate(lines) if ln.strip() or not i or lines[i - 1].strip()]
    when = data["started"][:16].replace("T", " ")
    return (f"\n```\n$ {m['command']}     # {when}, {data['seconds']:.0f} s, commit {data['commit']}{left_out}\n"
            + "\n".join(lines) + "\n```\n")


RENDERERS = {"fig": render_fig, "table": render_table, "grid": render_grid, "output": render_output}


def render_text(text: str, results: Results, file: Path = Path("<text>")) -> tuple[str, list[Problem]]:
    """``text`` with every marker re-rendered, and the markers that differ from the results or cannot be rendered
    (a marker that cannot be rendered keeps its text)."""
    problems: list[Problem] = []

    def one(m: re.Match[str]) -> str:
        line = text.count("\n", 0, m.start()) + 1
        marker = f"{m['kind']} {m['args'].strip()}"
        try:
            new = RENDERERS[m["kind"]](m["args"], results)
        except (RenderError, KeyError, TypeError, ValueError) as e:
            why = str(e) if isinstance(e, RenderError) else f"{type(e).__name__}: {e}"
            problems.append(Problem(file, line, marker, why))
            return m.group(0)
        if m["kind"] == "fig" and not text[text.rfind("\n", 0, m.start()) + 1:m.start()].strip():
            problems.append(Problem(file, line, marker, "starts a line: markdown would read the line as an HTML "
                                                        "block (put a word before it)"))
        if new != m["text"]:
            shown = new if "\n" not in new else f"{len(new.splitlines())} lines"
            was = m["text"] if "\n" not in m["text"] else f"{len(m['text'].splitlines())} lines"
            problems.append(Problem(file, line, marker, f"text is {was!r}, the results give {shown!r}"))
        return f"<!--{m['kind']} {m['args']}-->{new}<!--/{m['kind']}-->"

    return MARKER.sub(one, text), problems


def markers(text: str) -> list[tuple[str, str]]:
    """``(kind, args)`` of every marker in ``text``."""
    return [(m["kind"], m["args"].strip()) for m in MARKER.finditer(text)]


def render_files(files: Iterable[Path], results: Results, write: bool) -> list[Problem]:
    """Render every marker of ``files``; with ``write``, save the files whose text changed. Returns every marker
    that differed (now fixed, if written) or could not be rendered (left as it was)."""
    problems: list[Problem] = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        new, found = render_text(text, results, path)
        problems += found
        if write and new != text:
            path.write_text(new, encoding="utf-8")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if any marker differs or is missing")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default benchmark/results)")
    ap.add_argument("files", nargs="*", type=Path, help="documents to render (default: the READMEs and docs/*.md)")
    args = ap.parse_args(argv)
    files = args.files or pages()
    problems = render_files(files, Results(args.results), write=not args.check)
    stale = [p for p in problems if p.message.startswith("text is ")]
    broken = [p for p in problems if p not in stale]
    for p in (problems if args.check else broken):
        print(p, file=sys.stderr)
    if args.check:
        print(f"{len(problems)} marker(s) differ from the results or cannot be rendered" if problems
              else "every marker matches the results", file=sys.stderr)
        return 1 if problems else 0
    print(f"rendered {len(stale)} marker(s) anew; {len(broken)} could not be rendered", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
