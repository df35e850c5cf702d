"""Every figure the READMEs quote between markers is what the latest ``benchmark/results/*.json`` say
(``benchmark/render.py --check``, in this process); the renderer on a temp README and temp results (a tampered
figure, a missing key, a missing file, format specs, tables, output blocks); and every script in
``benchmark/run_all.py``'s table exists and takes the flags the table gives it (read from its argparse calls,
without importing it: the scripts import torch)."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmark"


def _load(name: str) -> ModuleType:
    """A script of benchmark/ (no package) as a module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while built
    spec.loader.exec_module(module)
    return module


render = _load("render")
run_all = _load("run_all")

STARTED = "2026-12-05T10:00:00+0000"


def _figure(values: list[float], unit: str = "x", label: str = "a ratio", **extra: Any) -> dict[str, Any]:
    return {"label": label, "unit": unit, "median": sorted(values)[len(values) // 2], "min": min(values),
            "max": max(values), "n": len(values), "values": values, **extra}


def _results(folder: Path, name: str, figures: dict[str, dict[str, Any]], started: str = STARTED) -> Path:
    """A results file in the layout ``benchmark/results.py`` writes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({
        "schema": 1, "name": name, "quick": False, "commit": "abc123", "started": started, "seconds": 61.2,
        "argv": [], "machine_start": "2 CPUs, load average 1.00 (5-min 1.00)",
        "machine_end": "2 CPUs, load average 1.10 (5-min 1.00)", "torch": "2.x", "torch_threads": 1,
        "settings": {}, "figures": figures}), encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    _results(results, "bench_x", {"ratio": _figure([0.92, 1.04, 1.5]),
                                  "share": _figure([0.16, 0.17, 0.3], unit="", label="a share"),
                                  "rate": _figure([53812.4], unit="samples/s", label="a rate", fmt=",.0f",
                                                  part=12.34)})
    return results


def _check(text: str, folder: Path) -> tuple[str, list[Any]]:
    return render.render_text(text, render.Results(folder))


# --- the real documents --------------------------------------------------------------------------------------------


def test_every_quoted_figure_is_in_the_latest_results() -> None:
    problems = render.render_files(render.pages(), render.Results(), write=False)
    assert not problems, "figures in the READMEs differ from benchmark/results/ (python benchmark/render.py):\n" + \
        "\n".join(map(str, problems))


def test_the_readmes_quote_figures_through_markers() -> None:
    found = [m for page in render.pages() for m in render.markers(page.read_text(encoding="utf-8"))]
    assert {kind for kind, _ in found} >= {"fig", "table"}, found


# --- the renderer on temp files ------------------------------------------------------------------------------------


def test_a_figure_that_matches_passes_and_a_tampered_one_fails(folder: Path) -> None:
    good = "ratio <!--fig bench_x.ratio .2f-->1.04<!--/fig-->x"
    assert _check(good, folder) == (good, [])
    new, problems = _check(good.replace("1.04", "1.05"), folder)
    assert new == good
    assert len(problems) == 1 and "'1.05'" in problems[0].message and "'1.04'" in problems[0].message


@pytest.mark.parametrize(("marker", "text"), [
    ("bench_x.ratio", "1.04"),  # no spec, none recorded: three significant digits of the median
    ("bench_x.ratio:min", "0.92"),  # ... and as many decimals for min and max
    ("bench_x.ratio .3f", "1.040"),
    ("bench_x.ratio:min .2f", "0.92"),
    ("bench_x.ratio:max .1f", "1.5"),
    ("bench_x.ratio:n", "3"),
    ("bench_x.ratio:spread .2f", "1.04 (min 0.92, max 1.50, n=3)"),
    ("bench_x.share .0%", "17%"),
    ("bench_x.rate", "53,812"),  # the figure's own fmt
    ("bench_x.rate .1f", "53812.4"),  # the marker's spec wins
    ("bench_x.rate:part .1f", "12.3"),  # a number the figure recorded beside its statistics
    ("bench_x.ratio:spread .2f x", "1.04x (min 0.92, max 1.50, n=3)"),  # as the scripts print a figure
    ("bench_x.share:spread .0%", "17% (min 16%, max 30%, n=3)"),
    ("bench_x.rate - samples/s", "53,812 samples/s"),  # a unit that is a word takes a space
])
def test_statistics_and_format_specs(folder: Path, marker: str, text: str) -> None:
    new, problems = _check(f"is <!--fig {marker}-->?<!--/fig-->", folder)
    assert new == f"is <!--fig {marker}-->{text}<!--/fig-->"
    assert len(problems) == 1  # "?" was not the figure


@pytest.mark.parametrize(("marker", "why"), [
    ("bench_x.nope", "no figure 'nope'"),
    ("bench_y.ratio", "no results file"),
    ("bench_x.ratio:mean", "statistic 'mean'"),
    ("bench_x.ratio .2q", "format spec"),
    ("bench_x.ratio:values", "statistic 'values'"),  # a list, not a number
])
def test_a_missing_key_or_file_or_a_bad_marker_fails_and_keeps_its_text(folder: Path, marker: str, why: str) -> None:
    text = f"is <!--fig {marker}-->1.04<!--/fig-->"
    new, problems = _check(text, folder)
    assert new == text
    assert len(problems) == 1 and why in problems[0].message, problems


def test_a_fig_marker_that_starts_a_line_fails(folder: Path) -> None:
    # markdown would read the line as an HTML block and cut the paragraph in two
    _, problems = _check("the ratio is\n  <!--fig bench_x.ratio .2f-->1.04<!--/fig-->x, per round", folder)
    assert len(problems) == 1 and "starts a line" in problems[0].message
    assert _check("the ratio is\n  a <!--fig bench_x.ratio .2f-->1.04<!--/fig-->x", folder)[1] == []


def test_the_syntax_written_with_placeholders_is_no_marker(folder: Path) -> None:
    text = "write `<!--fig NAME.KEY[:STAT] [SPEC]-->` and `<!--/fig-->` around the figure"
    assert _check(text, folder) == (text, [])


def test_a_table_renders_every_figure_with_the_run_it_came_from(folder: Path) -> None:
    new, problems = _check("<!--table bench_x-->\nold\n<!--/table-->", folder)
    assert len(problems) == 1
    assert "| a ratio | 1.04 | 0.92 | 1.50 | 3 | x | `ratio` |" in new
    assert "| a rate | 53,812 | 53,812 | 53,812 | 1 | samples/s | `rate` |" in new
    assert "benchmark/results/bench_x.json`: full run 2026-12-05 10:00, 61 s, commit abc123" in new
    assert _check(new, folder) == (new, [])  # rendering again changes nothing
    only, _ = _check("<!--table bench_x r*-->\n<!--/table-->", folder)
    assert "`ratio`" in only and "`rate`" in only and "`share`" not in only


def test_a_grid_puts_each_figure_in_its_row_and_column(folder: Path) -> None:
    cell = dict(unit="s", fmt=".2f")
    _results(folder, "bench_g", {
        "a.exact.query": _figure([0.5, 0.4, 0.6], row="10 tiles, exact", col="query (s)", **cell),
        "a.hnsw.build": _figure([2.0, 2.5, 3.0], row="10 tiles, HNSW", col="build (s)", **cell),
        "a.hnsw.query": _figure([0.1, 0.2, 0.3], row="10 tiles, HNSW", col="query (s)", **cell),
        "other": _figure([1.0], row="elsewhere", col="build (s)", **cell)})
    new, problems = _check("<!--grid bench_g a.*-->\n<!--/grid-->", folder)
    assert len(problems) == 1  # the old text was not the grid
    # columns in the order of the fullest row; a cell the row lacks is "-"; a figure the pattern misses is out
    assert ("| | build (s) | query (s) |\n|---|---:|---:|\n| 10 tiles, exact | - | 0.50 |\n"
            "| 10 tiles, HNSW | 2.50 | 0.20 |") in new
    assert "elsewhere" not in new and "median of 3 run(s)" in new and "benchmark/results/bench_g.json`: full run" in new
    assert _check(new, folder) == (new, [])
    unlabelled, problems = _check("<!--grid bench_x ratio-->\n<!--/grid-->", folder)
    assert len(problems) == 1 and "recorded no row and col labels" in problems[0].message
    # a results file recorded before the figures existed: one line that says so, which a later run then replaces
    before, _ = _check("<!--grid bench_x index.*--><!--/grid-->", folder)
    assert "No figure of `benchmark/results/bench_x.json` matches `index.*`: its run (2026-12-05 10:00, commit " \
           "abc123) predates them" in before
    _results(folder, "bench_x", {"index.n.build": _figure([1.0], row="n", col="build", unit="s")})
    assert len(_check(before, folder)[1]) == 1


def test_an_output_block_is_the_log_of_the_same_run(folder: Path) -> None:
    log = ["machine: 2 CPUs", "{'loss': '7.9', 'epoch': '1'}", "results: /abs/path/bench_x.json", "ratio 1.04x"]
    (folder / "bench_x.log").write_text(f"# run_all: python benchmark/bench_x.py; results started {STARTED}\n"
                                        + "\n".join(log) + "\n")
    new, _ = _check("<!--output bench_x-->\n<!--/output-->", folder)
    # the Trainer's log dict is left out and counted; the results line (an absolute path) is left out
    head = "$ python benchmark/bench_x.py     # 2026-12-05 10:00, 61 s, commit abc123; 1 lines of library and run "
    assert new.splitlines()[1:6] == ["```", head + "progress left out", "machine: 2 CPUs", "ratio 1.04x", "```"]
    _results(folder, "bench_x", {"ratio": _figure([1.0])}, started="2026-12-06T10:00:00+0000")
    _, problems = _check(new, folder)
    assert len(problems) == 1 and "is from the run started" in problems[0].message


def test_check_exits_1_and_render_rewrites_in_place(folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "README.md"
    page.write_text("**<!--fig bench_x.ratio .2f-->0.99<!--/fig-->x**, <!--fig bench_x.gone-->1<!--/fig-->\n")
    assert render.main(["--check", "--results", str(folder), str(page)]) == 1
    err = capsys.readouterr().err
    assert "README.md:1: <!--fig bench_x.ratio .2f-->" in err and "no figure 'gone'" in err
    assert render.main(["--results", str(folder), str(page)]) == 1  # the missing key cannot be rendered
    assert page.read_text().startswith("**<!--fig bench_x.ratio .2f-->1.04<!--/fig-->x**")
    page.write_text(page.read_text().replace("<!--fig bench_x.gone-->1<!--/fig-->", ""))
    assert render.main(["--check", "--results", str(folder), str(page)]) == 0


def test_a_file_written_by_results_py_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    results = _load("results")
    r = results.Results("bench_z", settings={"n": 3})
    r.add("speedup", [1.2, 1.4, 1.3], unit="x", label="speed-up, per round", fmt=".2f")
    r.write(out_dir=tmp_path)
    new, _ = _check("is <!--fig bench_z.speedup:spread-->?<!--/fig-->\n<!--table bench_z-->\n<!--/table-->", tmp_path)
    assert new.startswith("is <!--fig bench_z.speedup:spread-->1.30 (min 1.20, max 1.40, n=3)<!--/fig-->")
    assert "| speed-up, per round | 1.30 | 1.20 | 1.40 | 3 | x | `speedup` |" in new


# --- run_all's table -----------------------------------------------------------------------------------------------


def _options(script: Path) -> set[str]:
    """Every option string the script passes to ``add_argument``."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return {a.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "add_argument"
            for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")}


@pytest.mark.parametrize("bench", run_all.BENCHES, ids=lambda b: b.name)
def test_every_listed_script_exists_and_takes_its_flags(bench: Any) -> None:
    script = BENCH / bench.script
    assert script.is_file(), f"{bench.name}: {script} does not exist"
    assert "gpu" not in script.relative_to(BENCH).parts
    assert "--quick" in bench.quick
    options = _options(script)
    for flag in (w for w in (*bench.full, *bench.quick) if w.startswith("--")):
        assert flag in options, f"{bench.name}: {bench.script} takes no {flag} (it takes {sorted(options)})"


def test_run_all_names_are_unique_and_selectable() -> None:
    names = [b.name for b in run_all.BENCHES]
    assert len(names) == len(set(names))
    assert [b.name for b in run_all.select(["bench_data", "bench_hostile"], [])] == \
        [n for n in names if n in ("bench_data", "bench_hostile")]
    assert "bench_data" not in [b.name for b in run_all.select([], ["bench_data"])]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_all.select(["bench_nope"], [])
