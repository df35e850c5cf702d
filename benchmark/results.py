"""Where a benchmark's figures go: ``benchmark/results/<name>.json``, one file per script, rewritten by each
full run (``--quick`` runs write ``benchmark/results/quick/<name>.json``, which is not committed).

A figure is a list of measured values (one per round, per seed or per process) kept with its median, min,
max and n, its unit and a label that says what it is. The file also holds the machine line at start and end,
the commit, the command line and the date, so a figure quoted anywhere can be traced to the run that made it.
The tables of ``benchmark/README.md`` and every figure the READMEs quote are rendered from these files.

    results = Results("bench_sft", quick=args.quick)
    results.add("step_over_lower_bound.qwen3b", per_round_ratios, unit="x", label="gleamx step / lower-bound step")
    results.write()
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# GLEAMX_BENCH_RESULTS: another folder (the tests run scripts without touching the recorded results)
RESULTS_DIR = Path(os.environ.get("GLEAMX_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
SCHEMA = 1


def machine_line() -> str:
    """``2 CPUs, load average X (5-min Y)``: what the machine was doing when this line was taken."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (5-min {five:.2f})"


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it (``unknown`` outside git)."""
    root = RESULTS_DIR.parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def summarise(values: Sequence[float]) -> dict[str, float | int]:
    """median, min, max and n of finite values (a benchmark that measured NaN has a bug: refuse it); with two or
    more, also the mean, the sample sd and the Student-t 95% interval of the mean (``ci_low``, ``ci_high``): the
    interval over seeds or runs that the learning experiments quote."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("a figure needs at least one measured value")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"a figure holds a non-finite value: {vals}")
    out: dict[str, float | int] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
    if len(vals) > 1:
        from gleamx.eval.stats import mean_t_interval

        t = mean_t_interval(vals)
        out.update(mean=t["mean"], sd=t["sd"], ci_low=t["ci_low"], ci_high=t["ci_high"])
    return out


def resummarise(path: Path) -> None:
    """Recompute every figure's summary from its recorded ``values`` (after the summary gained a field): the
    measurements are untouched, only what is derived from them is written again."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for fig in data["figures"].values():
        fig.update(summarise(fig["values"]))
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


class Results:
    """The figures of one benchmark run, written as ``benchmark/results/<name>.json``."""

    def __init__(self, name: str, quick: bool = False, settings: dict[str, Any] | None = None) -> None:
        self.name = name
        self.quick = quick
        self.settings = dict(settings or {})
        self.figures: dict[str, dict[str, Any]] = {}
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.machine_start = machine_line()
        self.threads = torch.get_num_threads()
        self._t0 = time.perf_counter()

    def add(self, key: str, values: float | Sequence[float], unit: str, label: str, **extra: Any) -> dict[str, Any]:
        """Record one figure: every measured value, and its median, min, max and n. ``extra`` is kept as is
        (e.g. ``per_seed=...``, ``ci=[lo, hi]``)."""
        vals = [values] if isinstance(values, (int, float)) else list(values)
        fig = {"label": label, "unit": unit, **summarise(vals), "values": [float(v) for v in vals], **extra}
        self.figures[key] = fig
        return fig

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "name": self.name, "quick": self.quick, "commit": commit(), "started": self.started,
                "seconds": round(time.perf_counter() - self._t0, 1), "argv": sys.argv[1:],
                "machine_start": self.machine_start, "machine_end": machine_line(), "torch": torch.__version__,
                "torch_threads": self.threads, "settings": self.settings, "figures": self.figures}

    def write(self, out_dir: Path | None = None) -> Path:
        """Write the JSON (full runs to ``benchmark/results/``, quick ones to ``benchmark/results/quick/``)."""
        folder = out_dir or (RESULTS_DIR / "quick" if self.quick else RESULTS_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"results: {path}", flush=True)
        return path


def load(name: str, quick: bool = False) -> dict[str, Any]:
    """The latest recorded results of one benchmark."""
    path = (RESULTS_DIR / "quick" if quick else RESULTS_DIR) / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="recompute the summaries of recorded results from their values")
    ap.add_argument("--resummarise", nargs="+", metavar="NAME", required=True, help="results names (benchmark/results/NAME.json)")
    for name in ap.parse_args().resummarise:
        resummarise(RESULTS_DIR / f"{name}.json")
        print(f"resummarised {RESULTS_DIR / name}.json")
