"""Run every CPU benchmark, each as its own process, and check that each wrote its results file.

Each script of ``BENCHES`` runs with its own flags for a full or a ``--quick`` run, one after another (two at
once would share the cores and spoil both), its output streamed here with the name in front. What a script
prints on stdout is also saved next to its results, as ``benchmark/results/<name>.log`` (``results/quick/`` for
``--quick``), headed by the command and the results' start time, so that ``render.py`` can quote the output of
exactly the run that made the figures. The summary table gives each script's exit status, wall time and results
file; the exit status is 1 when any script failed, ran past ``--timeout`` or did not write a fresh results file.

    python benchmark/run_all.py --quick                    # every script's quick mode (30-45 min on 2 loaded cores)
    python benchmark/run_all.py                            # full runs: over an hour
    python benchmark/run_all.py --only bench_data,bench_annotate --timeout 360
    python benchmark/run_all.py --skip sft_learns,grpo_learns
    python benchmark/run_all.py --list

GPU benchmarks (``benchmark/gpu/``) are not here: they need a GPU and have their own README.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmark"
RESULTS = BENCH_DIR / "results"


@dataclass(frozen=True)
class Bench:
    """One run of a benchmark script: the results name it writes, the script, its flags for a full and a quick
    run, and roughly how long a full run took on the 2-core machine (minutes, at load 3-15: see benchmark/README.md)."""

    name: str
    script: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ("--quick",)
    minutes: float = 0.0


# Cheapest first, so that a broken setup shows early. A script may appear twice (another mode, another name).
BENCHES: tuple[Bench, ...] = (
    Bench("bench_hostile", "bench_hostile.py", minutes=1),
    Bench("bench_annotate", "bench_annotate.py", minutes=1),
    Bench("bench_data_memory", "bench_data_memory.py", minutes=2),
    Bench("bench_stream_memory", "bench_data_memory.py", ("--streamed",), ("--quick", "--streamed"), minutes=2),
    Bench("bench_data", "bench_data.py", minutes=2),
    Bench("bench_padding_free", "bench_padding_free.py", minutes=2),
    Bench("bench_retrieval", "bench_retrieval.py", minutes=5),
    Bench("bench_grpo", "bench_grpo.py", minutes=1),
    Bench("ablation_tiny", "ablation_tiny.py", minutes=3),
    # 5 min before the index search; its 10^6 galleries (3 HNSW builds on one thread) are not yet timed: a guess
    Bench("bench_retrieval_scale", "bench_retrieval_scale.py", minutes=4.5),
    Bench("bench_retrieval_index", "bench_retrieval_scale.py", ("--index",), ("--index", "--quick"), minutes=40),
    Bench("bench_retrieval_two_phase", "bench_retrieval.py", full=("--two-phase",),
          quick=("--two-phase", "--quick", "--seeds", "1"), minutes=6),
    Bench("bench_sft", "bench_sft.py", minutes=5),
    Bench("bench_sft_qwen3b", "bench_sft.py", full=("--shape", "qwen3b"), quick=("--shape", "qwen3b", "--quick"),
          minutes=10),
    Bench("bench_resume_sft", "bench_resume_sft.py", minutes=30),
    Bench("bench_resume", "bench_resume.py", minutes=20),
    Bench("bench_eval_generation", "bench_eval.py", full=("--generation-only",),
          quick=("--generation-only", "--quick"), minutes=10),
    Bench("bench_eval_scoring", "bench_eval.py", full=("--scoring-only",), quick=("--scoring-only", "--quick"),
          minutes=15),
    # The learning experiments: a grid of data seeds x training seeds, two cells at a time (one core each).
    Bench("sft_learns", "sft_learns.py", full=("--jobs", "2"), minutes=40),
    Bench("grpo_learns", "grpo_learns.py", full=("--jobs", "2"), minutes=60),
)


@dataclass
class Outcome:
    """What one run did: its exit status, wall time, whether it wrote a fresh results file, and why it failed."""

    bench: Bench
    rc: int | None = None
    seconds: float = 0.0
    results: Path | None = None
    problem: str = ""
    log: Path | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problem


def command(bench: Bench, quick: bool) -> list[str]:
    """The script's command line, as the README shows it (relative to the repo root)."""
    return ["python", f"benchmark/{bench.script}", *(bench.quick if quick else bench.full)]


def _stream(proc: subprocess.Popen[str], prefix: str, sink: list[str]) -> None:
    """Echo the child's stdout line by line (prefixed) and keep every line for the log."""
    assert proc.stdout is not None
    for line in proc.stdout:
        sink.append(line)
        sys.stdout.write(f"{prefix}{line}")
        sys.stdout.flush()


def run_one(bench: Bench, quick: bool, timeout: float | None) -> Outcome:
    """Run one benchmark to its end (or its timeout) and check its results file."""
    out = Outcome(bench)
    folder = RESULTS / "quick" if quick else RESULTS
    results = folder / f"{bench.name}.json"
    cmd = command(bench, quick)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",  # progress lines arrive as printed, not at exit
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"=== {bench.name}: {shlex.join(cmd)}", flush=True)
    t0, wall0 = time.perf_counter(), time.time()
    # its own session: a timeout kills the script's children too (accelerate workers, probes, stub servers)
    proc = subprocess.Popen([sys.executable, *cmd[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    reader = threading.Thread(target=_stream, args=(proc, f"[{bench.name}] ", out.lines), daemon=True)
    reader.start()
    try:
        out.rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.problem = f"killed after {timeout:.0f} s (--timeout)"
    reader.join()
    out.seconds = time.perf_counter() - t0
    if not out.problem and out.rc != 0:
        out.problem = f"exit {out.rc}"
    if not out.problem:
        out.problem = _results_problem(results, wall0, quick)
    out.results = results if results.is_file() else None
    out.log = _save_log(out, folder, quick)
    return out


def _results_problem(results: Path, since: float, quick: bool) -> str:
    """Why ``results`` is not this run's results file ("" when it is)."""
    if not results.is_file():
        return f"wrote no {results.relative_to(ROOT)}"
    if results.stat().st_mtime < since:
        return f"{results.relative_to(ROOT)} is older than this run"
    data = json.loads(results.read_text(encoding="utf-8"))
    if bool(data.get("quick")) != quick:
        return f"{results.relative_to(ROOT)} says quick={data.get('quick')}"
    return ""


def _save_log(out: Outcome, folder: Path, quick: bool) -> Path:
    """The run's stdout next to its results (headed by the command and the results' start time, which render.py
    matches), or, for a failed run, in the temp folder, so that a failure never replaces a good log."""
    cmd = shlex.join(command(out.bench, quick))
    if out.ok:
        started = json.loads((folder / f"{out.bench.name}.json").read_text(encoding="utf-8"))["started"]
        path = folder / f"{out.bench.name}.log"
    else:
        started = "none (the run failed)"
        path = Path(tempfile.gettempdir()) / f"gleamx-run_all-{out.bench.name}.log"
    path.write_text(f"# run_all: {cmd}; results started {started}\n" + "".join(out.lines), encoding="utf-8")
    return path


def select(only: list[str], skip: list[str]) -> list[Bench]:
    """The benchmarks to run, in table order; an unknown name is an error."""
    names = {b.name for b in BENCHES}
    unknown = sorted(set(only + skip) - names)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    return [b for b in BENCHES if (not only or b.name in only) and b.name not in skip]


def summary(outcomes: list[Outcome]) -> str:
    """The table printed at the end: one row per script."""
    w = max(len("benchmark"), *(len(o.bench.name) for o in outcomes))
    rows = [f"{'benchmark':<{w}}  {'status':<40}  {'wall':>8}  results / log"]
    for o in outcomes:
        status = "ok" if o.ok else f"FAILED: {o.problem}"
        where = o.results.relative_to(ROOT) if o.ok and o.results else o.log
        rows.append(f"{o.bench.name:<{w}}  {status:<40}  {o.seconds:7.0f}s  {where}")
    failed = sum(not o.ok for o in outcomes)
    minutes = sum(o.seconds for o in outcomes) / 60
    rows.append(f"{len(outcomes) - failed} of {len(outcomes)} ok, {minutes:.1f} min in all")
    return "\n".join(rows)


def _names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="each script's quick mode (results to benchmark/results/quick/)")
    ap.add_argument("--only", action="append", default=[], help="run only these (comma-separated results names)")
    ap.add_argument("--skip", action="append", default=[], help="run all but these (comma-separated)")
    ap.add_argument("--timeout", type=float, default=None, help="kill a script after this many seconds (a failure)")
    ap.add_argument("--list", action="store_true", help="print the table of benchmarks and exit")
    args = ap.parse_args(argv)
    chosen = select(_names(args.only), _names(args.skip))
    if args.list:
        for b in chosen:
            print(f"{b.name:<26} {shlex.join(command(b, args.quick)):<60} full run ~{b.minutes:g} min")
        return 0
    outcomes = [run_one(b, args.quick, args.timeout) for b in chosen]
    print("\n" + summary(outcomes), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
