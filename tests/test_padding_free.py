"""Padding-free multimodal batches (gleamx/train/packing.py): exact per-sample losses, TRL's labels, the switch."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gleamx.errors import GleamConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"
TOL = 1e-4


@pytest.fixture(scope="module")
def pf_data(synth_dir):
    """Synthetic GLEAM-X data: explanations of different lengths in two languages."""
    return synth_dir(48, seed=3)


def _rows(data: Path, n: int = 4, task: str = "explain") -> list[dict]:
    from gleamx.data import load_samples
    from gleamx.train.sft_data import build_sft_dataset

    samples = load_samples(data, split="train").samples[: (n + 1) // 2]
    ds = build_sft_dataset(samples, "both", task).dataset
    return [ds[i] for i in range(n)]


def _model_and_collator(model_dir: Path, attn: str = "sdpa"):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from gleamx.models import load_model_and_processor, training_chat_template

    model, processor = load_model_and_processor(model_dir, dtype="float32", attn_implementation=attn)
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True,
                                                     chat_template=training_chat_template(processor))
    return model.eval(), collator


def _token_losses(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy of a one-row batch (position t predicts label t+1) and where it counts."""
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits[0, :-1]
    labels = batch["labels"][0, 1:]
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="none"), labels != -100


def _per_sample_losses_match(model, collator, rows: list[dict]) -> list[int]:
    """Mean loss of each sample inside one packed batch vs that sample run alone; returns the sample lengths."""
    from gleamx.train.packing import RopeIndex, pack_batch, sample_bounds

    padded = collator(rows)
    packed = pack_batch(padded, RopeIndex(model))
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    assert packed["input_ids"].shape[1] == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()
    losses, counted = _token_losses(model, packed)
    bounds = sample_bounds(packed)
    assert len(bounds) == len(rows)
    for (start, end), row in zip(bounds, rows, strict=True):
        # Positions start..end-2 predict the sample's own tokens; end-1 would predict the next sample's first.
        together = losses[start:end - 1].sum() / counted[start:end - 1].sum()
        alone_losses, alone_counted = _token_losses(model, collator([row]))
        alone = alone_losses.sum() / alone_counted.sum()
        assert abs(together.item() - alone.item()) <= TOL, (start, together.item(), alone.item())
    return [end - start for start, end in bounds]


def test_per_sample_losses_equal_separate_runs_tiny(models_tiny_dir, pf_data):
    """Fast check on the bpe tiny Qwen2.5-VL, sdpa: each sample's loss in the packed row = run alone."""
    model, collator = _model_and_collator(models_tiny_dir("qwen2_5_vl"))
    lengths = _per_sample_losses_match(model, collator, _rows(pf_data))
    assert len(set(lengths)) > 1  # the samples really have different lengths (there was padding to remove)


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_per_sample_losses_equal_separate_runs_real_files(models_real_tiny_dir, pf_data, arch, attn):
    """Tiny models built from the real checkpoint files (real vocabulary, chat template, rope sections;
    Qwen3-VL's deep-stack mergers), CPU float32."""
    model, collator = _model_and_collator(models_real_tiny_dir(arch), attn)
    lengths = _per_sample_losses_match(model, collator, _rows(pf_data))
    assert len(set(lengths)) > 1  # samples of different lengths: the packed row really had padding to remove


def test_labels_ids_and_rope_equal_the_padded_batch_per_sample(models_tiny_dir, pf_data):
    """Cut back into samples, the packed batch is TRL's padded batch without its padding: the same ids and
    assistant-only labels (the first label of each sample is -100 there already), the model's own 3-D rope
    ids of each sample alone, the same images; with flash kwargs, the varlen boundaries."""
    from gleamx.train.packing import RopeIndex, pack_batch, sample_bounds

    model, collator = _model_and_collator(models_tiny_dir("qwen2_5_vl"))
    rows = _rows(pf_data)
    padded = collator(rows)
    packed = pack_batch(padded, RopeIndex(model), flash_kwargs=True)
    lengths = padded["attention_mask"].sum(1).tolist()
    for i, (start, end) in enumerate(sample_bounds(packed)):
        n = lengths[i]
        assert end - start == n
        assert torch.equal(packed["input_ids"][0, start:end], padded["input_ids"][i, :n])
        assert torch.equal(packed["mm_token_type_ids"][0, start:end], padded["mm_token_type_ids"][i, :n])
        assert padded["labels"][i, 0] == -100  # assistant-only: the first token (system turn) is never learned
        assert torch.equal(packed["labels"][0, start:end], padded["labels"][i, :n])
        assert (packed["labels"][0, start:end] != -100).sum() > 0
        alone = collator([rows[i]])
        rope, _ = model.model.get_rope_index(alone["input_ids"], alone["mm_token_type_ids"],
                                             image_grid_thw=alone["image_grid_thw"])
        assert torch.equal(packed["position_ids"][1:, 0, start:end], rope[:, 0])
        assert torch.equal(packed["position_ids"][0, 0, start:end], torch.arange(n))
    assert torch.equal(packed["pixel_values"], padded["pixel_values"])
    assert torch.equal(packed["image_grid_thw"], padded["image_grid_thw"])
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    assert torch.equal(packed["cu_seq_lens_q"], cu) and torch.equal(packed["cu_seq_lens_k"], cu)
    assert packed["max_length_q"] == packed["max_length_k"] == max(lengths)


def test_labels_never_cross_a_sample_boundary_without_assistant_masks(models_tiny_dir, pf_data):
    """With full-sequence loss the padded labels start with a real token; packed, each sample's first is -100."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from gleamx.models import load_model_and_processor
    from gleamx.train.packing import RopeIndex, pack_batch, sample_bounds

    model, processor = load_model_and_processor(models_tiny_dir("qwen2_5_vl"), dtype="float32")
    padded = DataCollatorForVisionLanguageModeling(processor)(_rows(pf_data))
    packed = pack_batch(padded, RopeIndex(model))
    for i, (start, end) in enumerate(sample_bounds(packed)):
        assert padded["labels"][i, 0] != -100 and packed["labels"][0, start] == -100
        assert torch.equal(packed["labels"][0, start + 1:end], padded["labels"][i, 1:end - start])


def test_collator_pickles_without_the_model(models_tiny_dir, pf_data):
    """DataLoader workers started by spawn/forkserver get the collator pickled: it carries config, not weights."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from gleamx.models import load_model_and_processor
    from gleamx.train.packing import PaddingFreeCollator, RopeIndex

    model, processor = load_model_and_processor(models_tiny_dir("qwen2_5_vl"), dtype="float32")
    collator = PaddingFreeCollator(DataCollatorForVisionLanguageModeling(processor), RopeIndex(model),
                                   flash_kwargs=False)
    blob = pickle.dumps(collator)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert b"Parameter" not in blob and len(blob) < weights / 2
    rows = _rows(pf_data)
    a, b = collator(rows), pickle.loads(blob)(rows)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the switch: padding_free_vl ----------------------------------------------------------------------------


def _fake_model(model_type: str = "qwen2_5_vl", attn: str = "sdpa") -> SimpleNamespace:
    text = SimpleNamespace(_attn_implementation=attn)
    return SimpleNamespace(config=SimpleNamespace(model_type=model_type, get_text_config=lambda: text,
                                                  _attn_implementation=attn))


def _args(device: str = "cpu", padding_free: bool = False) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device(device), padding_free=padding_free)


def test_auto_default_and_refusals():
    """Auto: on with flash attention (one printed line), padded with sdpa/eager (exact packed, but slower: a
    dense mask over the packed row), off with one printed line for a model it cannot pack. ``true``: on
    where exact (sdpa/eager too, saying what it costs), a one-line refusal elsewhere."""
    from gleamx.train.packing import resolve_padding_free

    said: list[str] = []
    assert resolve_padding_free(None, _fake_model(attn="flash_attention_2"), _args("cuda"), said.append) is True
    assert resolve_padding_free(None, _fake_model("qwen3_vl", "flash_attention_3"), _args("cuda"), said.append)
    assert resolve_padding_free(None, _fake_model("qwen2_vl", "kernels-community/flash-attn2"), _args("cuda"),
                                said.append)
    assert len(said) == 3 and all(line.startswith("padding-free batches: on") for line in said)
    said.clear()
    for attn in ("sdpa", "eager", "flex_attention"):  # auto keeps these padded, quietly (as without the option)
        assert resolve_padding_free(None, _fake_model(attn=attn), _args(), said.append) is False
    assert said == []
    assert resolve_padding_free(None, _fake_model("llava", "flash_attention_2"), _args("cuda"), said.append) is False
    assert len(said) == 1 and said[0].startswith("padding-free batches: off (model type 'llava'")
    said.clear()
    # Forced on: sdpa/eager are exact, so allowed (the line says the mask is dense); elsewhere refused.
    for attn in ("sdpa", "eager"):
        assert resolve_padding_free(True, _fake_model(attn=attn), _args(), said.append) is True
    assert len(said) == 2 and all("dense" in line and "\n" not in line for line in said)
    for model in (_fake_model(attn="flex_attention"), _fake_model("llava")):
        with pytest.raises(GleamConfigError, match="padding_free_vl: true") as e:
            resolve_padding_free(True, model, _args(), said.append)
        assert "\n" not in str(e.value)
    assert resolve_padding_free(False, _fake_model(attn="flash_attention_2"), _args("cuda"), said.append) is False
    # TRL's own switch (which TRL refuses for image data) means gleamx's packing, and TRL gets false
    trl_args = _args(padding_free=True)
    assert resolve_padding_free(None, _fake_model(attn="sdpa"), trl_args, said.append) is True
    assert trl_args.padding_free is False
    with pytest.raises(GleamConfigError, match="padding_free: true and padding_free_vl: false contradict"):
        resolve_padding_free(False, _fake_model(), _args(padding_free=True), said.append)


def _parse(*overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    return parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)),
                        ["--config", str(TINY_RECIPE), *overrides])


def test_recipe_field_parses_and_checks(tmp_path):
    from gleamx.train.arguments import GleamScriptArguments

    assert _parse("--output_dir", str(tmp_path))[0].padding_free_vl is None
    script, training, _ = _parse("--output_dir", str(tmp_path), "--padding_free_vl", "false")
    assert script.padding_free_vl is False and training.padding_free is False
    assert _parse("--output_dir", str(tmp_path), "--padding_free_vl", "true")[0].padding_free_vl is True
    with pytest.raises(GleamConfigError, match="padding_free_vl"):
        GleamScriptArguments(padding_free_vl="yes")


# --- one training step through run_sft -------------------------------------------------------------------


def _train(model_dir: Path, data: Path, out: Path, *overrides: str) -> dict:
    from gleamx.train.sft import run_sft

    run_sft(*_parse("--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", str(out),
                    "--logging_steps", "1", "--per_device_train_batch_size", "4", "--max_steps", "1",
                    "--save_strategy", "no", "--task", "explain", *overrides))
    return next(h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h)


@pytest.mark.slow
def test_one_step_run_sft_equals_the_padded_run(models_tiny_dir, pf_data, tmp_path, capsys):
    """The tiny recipe, one step on the same batch: padding-free (forced on: auto keeps sdpa padded) gives the
    padded run's loss and counts the same number of tokens (TRL's count is corrected for 4-row position ids)."""
    model_dir = models_tiny_dir("qwen2_5_vl")
    padded = _train(model_dir, pf_data, tmp_path / "padded")
    assert "padding-free batches" not in capsys.readouterr().out
    packed = _train(model_dir, pf_data, tmp_path / "packed", "--padding_free_vl", "true")
    assert "padding-free batches: on (sdpa)" in capsys.readouterr().out
    assert packed["loss"] == pytest.approx(padded["loss"], abs=TOL, rel=TOL)
    assert packed["num_tokens"] == padded["num_tokens"] > 100
    assert packed["image_tokens_per_batch"] == padded["image_tokens_per_batch"]
    assert packed["mean_token_accuracy"] == pytest.approx(padded["mean_token_accuracy"], abs=TOL)


@pytest.mark.slow
def test_trl_loss_path_and_token_count_on_packed_batches(models_tiny_dir, pf_data, tmp_path):
    """Through TRL's own ``compute_loss`` (the path gleamx's trainer falls back to): the packed batch gives the
    padded batch's loss, and the logged ``num_tokens`` is the packed length (TRL alone would count 1)."""
    from trl import SFTTrainer

    from gleamx.data import load_samples
    from gleamx.models import load_model_and_processor
    from gleamx.train.sft_data import build_sft_dataset
    from gleamx.train.packing import PaddingFreeCollator, padding_free_trainer

    _, training, _ = _parse("--output_dir", str(tmp_path / "o"), "--max_steps", "1")
    data = build_sft_dataset(load_samples(pf_data, split="train").samples[:2], "both", "explain").dataset
    model, processor = load_model_and_processor(models_tiny_dir("qwen2_5_vl"), dtype="float32")
    trainer = padding_free_trainer(SFTTrainer)(model=model, args=training, train_dataset=data,
                                               processing_class=processor)
    assert isinstance(trainer.data_collator, PaddingFreeCollator) and not trainer.data_collator.flash_kwargs
    rows = [data[i] for i in range(len(data))]
    padded, packed = trainer.data_collator.inner(rows), trainer.data_collator(rows)
    model.train()
    with torch.no_grad():
        trainer._total_train_tokens = 0
        loss_padded = SFTTrainer.compute_loss(trainer, model, dict(padded))
        assert trainer._total_train_tokens == int(padded["attention_mask"].sum())
        trainer._total_train_tokens = 0
        loss_packed = trainer.compute_loss(model, dict(packed))
    assert loss_packed.item() == pytest.approx(loss_padded.item(), abs=TOL, rel=TOL)
    assert trainer._total_train_tokens == packed["input_ids"].shape[1] == int(padded["attention_mask"].sum())
    assert trainer._metrics["train"]["num_tokens"][-1] == trainer._total_train_tokens
