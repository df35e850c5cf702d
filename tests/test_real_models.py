"""Tiny models built from the real Qwen-VL checkpoint files keep everything but the sizes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from gleamx.models import load_model_and_processor
from gleamx.models.real_tiny import REAL_CHECKPOINTS, real_config_dir

ARCHS = tuple(REAL_CHECKPOINTS)


def _real(arch: str, name: str) -> dict:
    return json.loads((real_config_dir(arch) / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("arch", ARCHS)
def test_real_files_survive_as_shipped(models_real_tiny_dir, arch):
    d = models_real_tiny_dir(arch)
    model, processor = load_model_and_processor(d)
    real_cfg = _real(arch, "config.json")
    text = real_cfg.get("text_config", real_cfg)
    # Token ids, vocabulary, tying and dtype are the checkpoint's.
    assert model.config.image_token_id == real_cfg["image_token_id"] == 151655
    assert model.config.get_text_config().vocab_size == text["vocab_size"] == 151936
    assert model.config.tie_word_embeddings is True
    assert model.dtype == torch.bfloat16
    # Sizes shrunk.
    assert model.config.get_text_config().hidden_size == 128
    # Processor: the real pixel budget, patch size and normalisation.
    pre = _real(arch, "preprocessor_config.json")
    ip = processor.image_processor
    lo = pre.get("min_pixels", pre.get("size", {}).get("shortest_edge"))
    hi = pre.get("max_pixels", pre.get("size", {}).get("longest_edge"))
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (lo, hi)
    assert ip.patch_size == pre["patch_size"] and list(ip.image_mean) == pytest.approx(pre["image_mean"])
    # The chat template as shipped (no generation markers) and the checkpoint's generation defaults.
    assert processor.chat_template == _real(arch, "chat_template.json")["chat_template"]
    gen = _real(arch, "generation_config.json")
    assert model.generation_config.repetition_penalty == gen["repetition_penalty"]
    assert model.generation_config.do_sample == gen["do_sample"]
    # Every added token at the checkpoint's id; Instruct turns end at <|im_end|>.
    tok = processor.tokenizer
    for i, t in _real(arch, "tokenizer_config.json")["added_tokens_decoder"].items():
        assert tok.convert_tokens_to_ids(t["content"]) == int(i)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == _real(arch, "tokenizer_config.json").get("padding_side", "right")


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_2024_checkpoints_use_the_old_key_layout_and_load_completely(models_real_tiny_dir, arch):
    from transformers import AutoModelForImageTextToText

    d = models_real_tiny_dir(arch)
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    assert any(k.startswith("model.layers.") for k in saved) and any(k.startswith("visual.") for k in saved)
    assert not any(k.startswith(("model.language_model.", "model.visual.")) for k in saved)
    assert "lm_head.weight" not in saved  # tied, as on the Hub
    model, info = AutoModelForImageTextToText.from_pretrained(d, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = model.state_dict()
    for key, tensor in saved.items():
        new = "model.language_model." + key[len("model."):] if key.startswith("model.") else "model." + key
        assert torch.equal(state[new], tensor), key


def test_qwen3_vl_has_its_deepstack_mergers(models_real_tiny_dir):
    model, _ = load_model_and_processor(models_real_tiny_dir("qwen3_vl"))
    assert len(model.model.visual.deepstack_merger_list) == 3


def test_models_tiny_from_real_cli(tmp_path):
    from gleamx.cli.main import main

    assert main(["models", "tiny", "--arch", "qwen3_vl", "--from-real", "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["vision_config"]["patch_size"] == 16
