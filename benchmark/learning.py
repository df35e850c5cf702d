"""What the learning experiments (``sft_learns.py``, ``grpo_learns.py``) share: pinned kernels, the grid of data
seeds x training seeds, the data and model of one cell, scoring with gleamx-eval's own ``run_eval`` (per-sample
correctness kept for paired intervals), a CPU-time budget for matched-compute controls, and the summary lines.

Import this module before ``torch``: the kernel pins are environment variables that torch, oneDNN and MKL read
once, when they load. They make the same seed give the same numbers on any x86-64 machine with AVX2 (ATen's
AVX-512 kernels, picked on CPUs that have it, round differently), at the price of a few percent of speed.
"""

from __future__ import annotations

import os

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels: AVX2 on every machine, not AVX-512 where present
    "ONEDNN_MAX_CPU_ISA": "AVX2",   # oneDNN's JIT kernels (convolutions, some linears) likewise
    "MKL_CBWR": "AVX2",              # MKL's conditional numerical reproducibility: the AVX2 code path on any CPU
    "OMP_NUM_THREADS": "1",          # one thread: a reduction's order does not depend on the core count
    "MKL_NUM_THREADS": "1",
}
for _key, _value in PINS.items():
    os.environ.setdefault(_key, _value)

import time  # noqa: E402 - after the pins, which must precede torch
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from gleamx.eval.stats import mean_t_interval, paired_bootstrap_diff  # noqa: E402

FIELDS = ("accuracy", "accuracy_positive", "accuracy_negative", "invalid_rate")
EVAL_LANG = "en"


def pin_and_describe() -> str:
    """Deterministic algorithms on, one torch thread, and the line that says which kernels ran (printed by the
    scripts: a rerun elsewhere can compare it)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0] if Path("/proc/cpuinfo").is_file() else ""
    native = "AVX-512" if " avx512f" in flags else ("AVX2" if " avx2" in flags else "unknown")
    pins = ", ".join(f"{k}={os.environ.get(k)}" for k in PINS)
    return (f"kernels: ATen {torch.backends.cpu.get_cpu_capability()} (this CPU offers {native}), {pins}, "
            f"{torch.get_num_threads()} torch thread, deterministic algorithms on, torch {torch.__version__}")


def seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]."""
    return [int(s) for s in text.split(",") if s.strip()]


def make_data(root: Path, data_seed: int, n: int, difficulty: str, image_size: int, views: list[str] | None = None) -> Path:
    """The synthetic data of one data seed (made once per script run, shared by its training seeds)."""
    from gleamx.synth import synthesize

    out = root / f"data-{data_seed}"
    if not out.is_dir():
        synthesize(out, n, seed=data_seed, difficulty=difficulty, image_size=image_size,
                   **({"views": views} if views else {}))
    return out


def make_model(root: Path, train_seed: int) -> Path:
    """The tiny random Qwen2.5-VL of one training seed (its initialisation is part of what the seed varies)."""
    from gleamx.models import build_tiny_model

    out = root / f"model-{train_seed}"
    if not out.is_dir():
        build_tiny_model("qwen2_5_vl", out, seed=train_seed)
    return out


@dataclass
class Scored:
    """``run_eval``'s results on one split, and each sample's 1/0 correctness (an invalid answer is wrong)."""

    results: dict[str, Any]
    correct: dict[str, int]

    def __getitem__(self, key: str) -> Any:
        return self.results[key]


def score(data: Path, out: Path, split: str, max_pixels: int | None, *, model: Path, adapter: Path | None = None,
          task: str = "label") -> Scored:
    """What ``gleamx-eval --split SPLIT --task label --max-new-tokens 8`` reports (greedy), plus per-sample
    correctness read back from its ``predictions.jsonl``."""
    from gleamx.data.jsonl import read_json_objects
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.task import parse_verdict

    res = run_eval(EvalConfig(data=str(data), model=str(model), adapter=str(adapter) if adapter else None, split=split,
                              task=task, lang=EVAL_LANG, max_new_tokens=8, batch_size=16, bootstrap=0,
                              max_pixels=max_pixels, output=str(out), no_explanation_metrics=True)).results
    labels = {r["id"]: bool(r["label"]) for _, r in read_json_objects(data / f"{split}.jsonl")}
    correct = {}
    for _, row in read_json_objects(out / "predictions.jsonl"):
        verdict = parse_verdict(row["prediction"])
        correct[row["id"]] = int(verdict is not None and verdict == labels[row["id"]])
    return Scored(res, correct)


def paired(a: Scored, b: Scored, seed: int = 0) -> dict[str, float]:
    """``b`` minus ``a`` in accuracy on the samples both scored, with a paired bootstrap interval."""
    ids = sorted(a.correct.keys() & b.correct.keys())
    return paired_bootstrap_diff([a.correct[i] for i in ids], [b.correct[i] for i in ids], seed=seed)


class CpuClock(TrainerCallback):
    """The CPU time of the training loop (from its first to its last step, setup and saving left out), and with
    ``budget`` a stop once that much is used: a control arm gets the compute another arm used, whatever else the
    machine runs (wall time would charge it the other jobs too). One torch thread, so CPU time is compute."""

    def __init__(self, budget: float | None = None) -> None:
        self.budget = budget
        self.start = 0.0
        self.used = 0.0
        self.steps = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.start = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.steps, self.used = state.global_step, time.process_time() - self.start
        if self.budget is not None and self.used >= self.budget:
            control.should_training_stop = True
        return control


def run_cells(fn: Any, cells: list[tuple[Any, ...]], jobs: int) -> list[Any]:
    """``fn(*cell)`` for every cell, in order; ``jobs`` > 1 runs them in that many fresh processes (spawned: each
    imports this module first, so the kernel pins hold there too). One torch thread each: jobs <= cores."""
    if jobs <= 1:
        return [fn(*cell) for cell in cells]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, *zip(*cells)))


def pct(x: float | None) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}"


def interval_text(values: list[float], scale: float = 100.0, unit: str = "") -> str:
    """``mean +- sd [95% CI lo, hi] (min a, max b, n runs)`` of one figure over runs."""
    t = mean_t_interval(values)
    ci = "" if t["n"] < 2 else f" [95% CI {scale * t['ci_low']:.1f}, {scale * t['ci_high']:.1f}]"
    return (f"{scale * t['mean']:.1f}{unit} +- {scale * t['sd']:.1f}{ci} (min {scale * min(values):.1f}, "
            f"max {scale * max(values):.1f}, n={t['n']})")


def diff_text(d: dict[str, float]) -> str:
    """A paired difference in points with its interval."""
    return f"{100 * d['diff']:+.1f} points [95% CI {100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


