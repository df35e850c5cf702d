"""What every benchmark shares: the machine line (cores, load at start and at end, torch threads), the
alternating runs (A, B, A, B, ...) that let background load hit every path alike, and the median with
its min-max spread that each ratio is printed as."""

from __future__ import annotations

import atexit
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5-min {five:.2f})"


def set_threads_and_describe(threads: int) -> None:
    """Use ``threads`` torch CPU threads, print the machine line now and its load again at exit.

    Other processes share the cores, and the load average says how much, so readers can tell a quiet
    run from a noisy one. On a 2-core machine a load above 2 means the benchmark shared its cores.
    """
    torch.set_num_threads(threads)
    print(f"machine: {os.cpu_count()} CPUs, {_load()} at start, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    atexit.register(lambda: print(f"machine at end: {os.cpu_count()} CPUs, {_load()}, "
                                  f"{time.perf_counter() - start:.0f} s after the first machine line", flush=True))


def spread(values: Sequence[float], fmt: str = ".2f", unit: str = "") -> str:
    """``median (min a, max b)``: how every repeated figure is printed."""
    return (f"{statistics.median(values):{fmt}}{unit} (min {min(values):{fmt}}, max {max(values):{fmt}}, "
            f"n={len(values)})")


def ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Per-round ratios of two alternating series (each round's pair shared the same background load)."""
    return [a / b for a, b in zip(num, den, strict=True)]


def alternate(paths: dict[str, Callable[[int], Any]], repeats: int) -> dict[str, list[Any]]:
    """Run every path once per round, in the given order, for ``repeats`` rounds: A, B, A, B, A, B.

    Each callable gets the round number; the lists hold what each returned, round by round.
    """
    out: dict[str, list[Any]] = {name: [] for name in paths}
    for r in range(repeats):
        for name, fn in paths.items():
            out[name].append(fn(r))
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result
