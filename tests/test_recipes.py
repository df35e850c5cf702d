"""Every shipped recipe runs as shipped, on the tiny model built from the real files of its family.

Only what a CPU forces is overridden: the model path (a tiny random model from the checkpoint's own
config, processor, template and tokenizer), the dataset (generated), ``use_cpu``, the output dir, and
the amount of work (one optimizer step of one micro-batch: 16 long conversations through a 151,936-token
``lm_head`` in CPU bf16 take minutes). flash-attention and tensorboard are *not* overridden: the recipes must fall back by
themselves, with one line each, where they are not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gleamx import recipes as packaged_recipes

ROOT = Path(__file__).resolve().parents[1]
FAMILY = {"qwen2-vl-2b": "qwen2_vl", "qwen2.5-vl-3b": "qwen2_5_vl", "qwen3-vl-4b": "qwen3_vl"}
# GRPO recipes (grpo*.yaml) run through recipes/grpo.py: tests/test_grpo.py
# and ablations (ablation*.yaml) through gleamx ablation: tests/test_ablation.py. The kinds are gleamx.recipes' own.
SFT_RECIPES = [f"recipes/{n}.yaml" for n in packaged_recipes.names("sft") if n.split("/")[0] in FAMILY]
TINY_RECIPES = [f"recipes/{n}.yaml" for n in packaged_recipes.names("sft") if n.startswith("tiny/")]


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory):
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("recipe_data")
    synthesize(root, n=40, seed=5, image_size=96)
    return root


def _parse(recipe: str, *overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    return parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)),
                        ["--config", str(ROOT / recipe), *overrides])


def _run(recipe: str, model: Path, data: Path, out: Path, capsys) -> tuple[Path, str]:
    from gleamx.train.sft import run_sft

    args = _parse(recipe, "--model_name_or_path", str(model), "--dataset_name", str(data), "--output_dir", str(out),
                  "--max_steps", "1", "--gradient_accumulation_steps", "1", "--logging_steps", "1", "--use_cpu", "true")
    run_sft(*args)
    return out, capsys.readouterr().out


def test_every_family_has_lora_qlora_and_full():
    for family in FAMILY:
        assert {Path(r).stem for r in SFT_RECIPES if r.split("/")[1] == family} == {"sft_lora", "sft_qlora", "sft_full"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", SFT_RECIPES)
def test_gpu_recipe_runs_as_shipped(recipe, recipe_data, models_real_tiny_dir, tmp_path, capsys):
    arch = FAMILY[recipe.split("/")[1]]
    _, shipped, shipped_model = _parse(recipe, "--use_cpu", "true")
    out, said = _run(recipe, models_real_tiny_dir(arch), recipe_data, tmp_path / "out", capsys)
    hist = json.loads((out / "log_history.json").read_text())
    losses = [h["loss"] for h in hist if "loss" in h]
    assert len(losses) == 1 and all(torch.isfinite(torch.tensor(losses)))
    assert all(h.get("image_tokens_per_batch", 1) > 0 for h in hist if "loss" in h)
    # What a missing optional package does: one line, then training goes on.
    if shipped_model.attn_implementation == "flash_attention_2" and not torch.cuda.is_available():
        assert "flash_attention_2 needs a CUDA GPU" in said and "using sdpa" in said
    if "tensorboard" in shipped.report_to:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            assert "report_to: tensorboard is not installed" in said
    weights = "adapter_model.safetensors" if shipped_model.use_peft else "model.safetensors"
    assert (out / weights).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", TINY_RECIPES)
def test_tiny_recipe_runs_as_shipped(recipe, recipe_data, models_tiny_dir, tmp_path, capsys):
    _, _, model_args = _parse(recipe)
    out, _ = _run(recipe, models_tiny_dir("qwen2_5_vl"), recipe_data, tmp_path / "out", capsys)
    assert (out / ("adapter_model.safetensors" if model_args.use_peft else "model.safetensors")).is_file()


def test_missing_tracker_and_flash_attention_fall_back_with_one_line(monkeypatch):
    from types import SimpleNamespace

    import gleamx.train.preflight as pf

    said: list[str] = []
    monkeypatch.setattr(pf, "_installed", lambda module: False)
    args = SimpleNamespace(report_to=["tensorboard", "none"], deepspeed=None)
    pf.resolve_trackers(args, said.append)
    assert args.report_to == ["none"] and "pip install 'gleamx[tensorboard]'" in said[0]
    model_args = SimpleNamespace(attn_implementation="flash_attention_2")
    pf.resolve_attention(model_args, said.append, cuda=True)
    assert model_args.attn_implementation == "sdpa" and "flash-attn" in said[1] and len(said) == 2
    with pytest.raises(Exception, match=r"gleamx\[deepspeed\]"):
        pf.require_deepspeed(SimpleNamespace(deepspeed="ds.json"))


def test_dataloader_workers_never_exceed_this_processs_cores(monkeypatch):
    """A GPU node's recipe (dataloader_num_workers: 4) on 2 cores: 2 workers and one line; 2 processes on the
    node: 1 each; a count within the share is kept, silently."""
    from types import SimpleNamespace

    import gleamx.train.preflight as pf
    from gleamx.checks import cap_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    said: list[str] = []
    args = SimpleNamespace(dataloader_num_workers=4)
    pf.resolve_workers(args, said.append)
    assert args.dataloader_num_workers == 2
    assert said == ["dataloader_num_workers: 4 is more than the 2 core(s) this process has; using 2"]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cap_workers(4) == 1 and cap_workers(0) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    args.dataloader_num_workers = 1
    pf.resolve_workers(args, said.append)
    assert args.dataloader_num_workers == 1 and len(said) == 1


@pytest.fixture(scope="module")
def retrieval_data(tmp_path_factory):
    """Enough training locations (180) for the ConvNeXt-B recipe's global batch of 128, one pair per location."""
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("retrieval_recipe_data")
    synthesize(root, n=900, seed=1, image_size=64, difficulty="toy")
    return root


@pytest.mark.slow
# two_phase_*.yaml: --epochs does not shorten phases; tests/test_retrieval_phases.py runs them one epoch per phase
@pytest.mark.parametrize("recipe", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes" / "retrieval").glob("*.yaml")
                                          if not p.stem.startswith("two_phase")))
def test_retrieval_recipe_runs_as_shipped(recipe, retrieval_data, tmp_path):
    """One epoch of every retrieval recipe; the backbone becomes the tiny random ConvNeXt at 64 px (no ImageNet
    download here, and a ConvNeXt-B step at 384 px takes minutes on a CPU). Batch, optimiser, hard negatives,
    workers and mixed precision stay as shipped."""
    from trl import TrlParser

    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.train import train_retrieval
    from gleamx.parsing import parse_recipe

    # a streamed recipe (stream_*.yaml) reads the data's train pairs as gleamx JSONL, for a few steps not an epoch
    length = ["--max_steps", "3"] if Path(recipe).stem.startswith("stream") else ["--epochs", "1"]
    (cfg,) = parse_recipe(TrlParser((RetrievalConfig,)), [
        "--config", str(ROOT / recipe), "--data", str(retrieval_data), "--output_dir", str(tmp_path / "out"),
        "--encoder", "tiny", "--img_size", "64", *length])
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # one process, several runs with other precisions
    try:
        out = Path(train_retrieval(cfg))
    finally:  # the next test in this worker builds its own Accelerator, in full precision (a bf16 state would stay)
        AcceleratorState._reset_state(reset_partial_state=True)
    assert (out / "model.safetensors").is_file()
