"""The lower bounds the benchmarks measure against are what they claim to be.

``benchmark/bench_sft.py``: its lower-bound replay (the forward with ``logits_to_keep`` on the labelled positions,
one cross-entropy) computes gleamx's training loss, on a padded and on a packed batch.
``benchmark/bench_eval.py``: the imposed end of each answer gives every row its own length, and batched and
one-at-a-time generation then give the same answers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"


def _script(name: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202 - benchmark/ is no package
    monkeypatch.syspath_prepend(str(ROOT / "benchmark"))  # the scripts import machine.py and results.py
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmark" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inputs(synth_dir, models_tiny_dir):
    return {"data": synth_dir(24, seed=5), "model": models_tiny_dir("qwen2_5_vl")}


def test_sft_lower_bound_loss_is_gleamx_loss(inputs, tmp_path, monkeypatch):
    """Same weights, same batch: the lower-bound replay's loss equals ``GleamSFTTrainer.compute_loss`` (its fast
    path), padded (boolean ``logits_to_keep``) and packed into one row (a 1-D index of positions)."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.data import load_samples
    from gleamx.models import load_model_and_processor
    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.labelled_loss import fast_path_refusal
    from gleamx.train.packing import RopeIndex, pack_batch
    from gleamx.train.sft import GleamSFTTrainer
    from gleamx.train.sft_data import build_sft_dataset

    bench = _script("bench_sft", monkeypatch)
    _, training, _ = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)),
                                  ["--config", str(TINY_RECIPE), "--output_dir", str(tmp_path / "o"),
                                   "--max_steps", "1"])
    data = build_sft_dataset(load_samples(inputs["data"], split="train").samples[:3], "both", "explain").dataset
    model, processor = load_model_and_processor(inputs["model"], dtype="float32")
    trainer = GleamSFTTrainer(model=model, args=training, train_dataset=data, processing_class=processor)
    padded = trainer.data_collator([data[i] for i in range(len(data))])
    packed = pack_batch(dict(padded), RopeIndex(trainer.model))
    assert padded["labels"].shape[0] > 1 and packed["labels"].shape[0] == 1
    trainer.model.train()
    for batch in (padded, packed):
        assert fast_path_refusal(trainer, dict(batch), False) is None  # gleamx's own path, not TRL's fallback
        with torch.no_grad():
            low = bench.lower_bound_loss(trainer.model, batch)
            gleam = trainer.compute_loss(trainer.model, dict(batch))
        assert torch.isfinite(low) and abs(low.item() - gleam.item()) <= 1e-5 * max(1.0, abs(gleam.item())), \
            (low, gleam)


def test_eval_imposed_stops_batched_equals_sequential(inputs, monkeypatch):
    """Rows of different imposed lengths (one cut by max_new_tokens) in one batch: every answer stops where it
    was told (``imposed_stops`` checks each row), batched answers equal one-at-a-time ones, and the batched
    rows are decoded as long as their batch's longest answer."""
    from gleamx.data import load_samples
    from gleamx.eval.decoding import stop_token_ids
    from gleamx.eval.generate import generate_answers
    from gleamx.models import load_model_and_processor

    bench = _script("bench_eval", monkeypatch)
    model, processor = load_model_and_processor(inputs["model"])
    model.eval()
    samples = load_samples(inputs["data"], split="train").samples[:4]
    lengths, max_new = [3, 9, 1, 5], 6
    stops = stop_token_ids(model.generation_config.eos_token_id, processor.tokenizer)
    with bench.imposed_stops(model, processor, samples, lengths, stops, max_new) as steps:
        one = generate_answers(model, processor, samples, "en", "explain", batch_size=1, max_new_tokens=max_new)
        batched = generate_answers(model, processor, samples, "en", "explain", batch_size=4, max_new_tokens=max_new)
    assert "generate" not in vars(model)  # the class's generate again after the block
    assert one == batched
    # one at a time: each answer and its <|im_end|> (the 9-token one cut at 6); batched: 4 rows of the longest
    assert steps == [4, 6, 2, 6] + [6] * 4
