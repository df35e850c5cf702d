"""SFT behaviour that only real checkpoint files show: Qwen3-VL's deep-stack mergers, bf16 weights, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamConfigError

from cli_run import script_entry
from training_checks import assert_moved, tensors

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("sft_real_data")
    synthesize(root, n=24, seed=7, image_size=64)
    return root


def _args(recipe: str, model: Path, data: Path, out: Path, *overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    return parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)),
                        ["--config", str(ROOT / recipe), "--model_name_or_path", str(model), "--dataset_name", str(data),
                         "--output_dir", str(out), "--use_cpu", "true", "--dataloader_num_workers", "0",
                         "--eval_strategy", "no", "--report_to", "none", "--attn_implementation", "sdpa", *overrides])


@pytest.mark.parametrize("recipe", ["recipes/qwen3-vl-4b/sft_lora.yaml", "recipes/qwen3-vl-4b/sft_qlora.yaml",
                                    "recipes/qwen3-vl-4b/sft_full.yaml"])
def test_qwen3_vl_merger_lr_reaches_every_merger(recipe, real_data, models_real_tiny_dir, tmp_path):
    """The merger and all three deep-stack mergers train, each in an optimizer group at merger_lr."""
    from gleamx.train.sft import build_trainer

    script, training, model_args = _args(recipe, models_real_tiny_dir("qwen3_vl"), real_data, tmp_path / "o")
    trainer = build_trainer(script, training, model_args, say=lambda *a: None).trainer
    optimizer = trainer.create_optimizer()
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    deep = {n for n in trainable if "deepstack_merger_list" in n}
    assert {n.split("deepstack_merger_list.")[1].split(".")[0] for n in deep} == {"0", "1", "2"}
    assert any(".merger." in n for n in trainable)
    for name, p in trainable.items():
        if "merger" in name:
            assert lr_of[id(p)] == script.merger_lr == 1e-5, name
        else:
            assert lr_of[id(p)] == training.learning_rate, name


def _merger_change(models_real_tiny_dir, real_data, out: Path, dtype: str) -> float:
    """Fraction of the trained merger copy's elements that one optimizer step at lr 1e-5 changed."""
    from gleamx.train.sft import build_trainer

    script, training, model_args = _args(
        "recipes/qwen2.5-vl-3b/sft_lora.yaml", models_real_tiny_dir("qwen2_5_vl"), real_data, out,
        "--dtype", dtype, "--bf16", "true", "--max_steps", "1", "--warmup_steps", "0",
        "--lr_scheduler_type", "constant", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--task", "label", "--save_strategy", "no")
    trainer = build_trainer(script, training, model_args, say=lambda *a: None).trainer
    merger = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad and ".merger." in n}
    assert merger, "the LoRA recipe trains the merger (modules_to_save)"
    before = {n: p.detach().float().clone() for n, p in merger.items()}
    trainer.train()
    changed = sum(int((p.detach().float() != before[n]).sum()) for n, p in merger.items())
    return changed / sum(p.numel() for p in merger.values())


@pytest.mark.slow
def test_bf16_merger_updates_as_in_float32(real_data, models_real_tiny_dir, tmp_path, monkeypatch):
    """A bf16 checkpoint (dtype bfloat16, no DeepSpeed) trains its merger like a float32 one: the fp32 copies
    keep lr-1e-5 updates that bf16 weights would round away."""
    import gleamx.train.run as run

    fp32 = _merger_change(models_real_tiny_dir, real_data, tmp_path / "fp32", "float32")
    bf16 = _merger_change(models_real_tiny_dir, real_data, tmp_path / "bf16", "bfloat16")
    monkeypatch.setattr(run, "upcast_trainable", lambda model: 0)  # what training did before the fix
    pure = _merger_change(models_real_tiny_dir, real_data, tmp_path / "pure", "bfloat16")
    print(f"merger elements changed by one step at lr 1e-5: float32 {fp32:.1%}, bf16 weights with fp32 copies "
          f"{bf16:.1%}, pure bf16 {pure:.1%}")
    assert fp32 > 0.9 and abs(bf16 - fp32) < 0.02, (fp32, bf16)
    assert pure < 0.5 * fp32, pure  # the test would catch the old behaviour


def test_pure_half_precision_training_is_refused(real_data, models_real_tiny_dir, tmp_path):
    from gleamx.train.sft import build_trainer

    script, training, model_args = _args("recipes/qwen2.5-vl-3b/sft_lora.yaml", models_real_tiny_dir("qwen2_5_vl"),
                                         real_data, tmp_path / "o", "--dtype", "bfloat16", "--bf16", "false")
    with pytest.raises(GleamConfigError, match="pure half precision.*set bf16: true"):
        build_trainer(script, training, model_args, say=lambda *a: None)


# --- resume_from_checkpoint as TRL documents it ---------------------------------------------------------------


def test_resume_values(tmp_path):
    from gleamx.train.run import resolve_resume

    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume("false", tmp_path) is None and resolve_resume(False, tmp_path) is None
    with pytest.raises(GleamConfigError, match="holds no checkpoint"):
        resolve_resume("true", tmp_path)
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    assert resolve_resume("true", tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-2"), tmp_path) == str(tmp_path / "checkpoint-2")
    with pytest.raises(GleamConfigError, match="not a directory"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)


@pytest.mark.slow
def test_resume_true_continues_from_the_last_checkpoint(real_data, models_tiny_dir, tmp_path, gleamx_cli):
    """A run killed after checkpoint-2, started again with --resume_from_checkpoint true, ends as a straight run."""
    args = ["--config", ROOT / "recipes/tiny/sft_lora.yaml", "--model_name_or_path", models_tiny_dir("qwen2_5_vl"),
            "--dataset_name", real_data, "--output_dir", tmp_path / "run", "--max_steps", "4", "--save_steps", "2",
            "--logging_steps", "1", "--per_device_train_batch_size", "2"]
    sft = script_entry(ROOT / "recipes" / "sft.py")
    r = gleamx_cli(*args, entry=sft)
    assert r.returncode == 0, r.stderr[-2000:]
    straight = {h["step"]: h["loss"] for h in json.loads((tmp_path / "run/log_history.json").read_text()) if "loss" in h}
    shutil.rmtree(tmp_path / "run" / "checkpoint-4")  # as if killed between steps 2 and 4
    r = gleamx_cli(*args, "--resume_from_checkpoint", "true", entry=sft)
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = {h["step"]: h["loss"] for h in json.loads((tmp_path / "run/log_history.json").read_text()) if "loss" in h}
    assert set(resumed) == {1, 2, 3, 4}  # steps 1-2 come from checkpoint-2's trainer state
    # steps 3-4 trained after the checkpoint: equal losses are not a run that stood still
    assert_moved(tensors(tmp_path / "run" / "checkpoint-2" / "adapter_model.safetensors"),
                 tensors(tmp_path / "run" / "adapter_model.safetensors"), "steps 3-4 of the resumed run")
    for step in (3, 4):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-5)
