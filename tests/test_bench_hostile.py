"""benchmark/bench_hostile.py runs: two cheap hostile cases in this process print the table, why each case got its
class, the count per class and the final ``hostile cases: N clean of M`` line. A smoke test of the script, not of
the classes: what each case measures changes as gleamx's guards do."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ("synth-into-user-folder", "pairs-duplicate-query-id")


def _bench(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202 - benchmark/ is no package: load the script as a module
    monkeypatch.syspath_prepend(str(ROOT / "benchmark"))  # its `from machine import ...`
    spec = importlib.util.spec_from_file_location("bench_hostile", ROOT / "benchmark" / "bench_hostile.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_hostile", module)  # its dataclasses look their module up while built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_only_prints_the_table_and_the_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench(monkeypatch)
    assert bench.main(["--quick", "--only", ",".join(CASES), "--keep", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("case ") and "what the user saw" in ln)
    assert "class" in lines[header] and "seconds" in lines[header] and "extra MB" in lines[header]
    rows = lines[header + 1: header + 1 + len(CASES)]
    for name, row in zip(CASES, rows, strict=True):
        cells = row.split()
        assert cells[0] == name, row
        assert any(c in bench.CLASSES for c in cells), row  # a class from the list
        assert re.search(r"\d+\.\d\d\s+\d+\.\d$", row), row  # seconds and peak extra RSS MB close the row
        assert re.search(rf"^  {re.escape(name)}: ({'|'.join(bench.CLASSES)}): ", out, re.M)  # why it got it
    assert re.search(r"^per class: ", out, re.M)
    assert lines[-1] == f"hostile cases: {sum(' clean ' in r for r in rows)} clean of {len(CASES)}"
    assert "machine: " in out  # the machine line (its end twin prints at exit)
