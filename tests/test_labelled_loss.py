"""gleamx's loss path (labelled positions only, metrics on logging steps) gives TRL's stock loss and gradients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"
TOL = 1e-5


@pytest.fixture(scope="module")
def loss_inputs(synth_dir, models_tiny_dir):
    return {"data": synth_dir(24, seed=5), "model": models_tiny_dir("qwen2_5_vl")}


def _parse(out: Path, *overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
    return parse_recipe(parser, ["--config", str(TINY_RECIPE), "--output_dir", str(out), *overrides])


def _trainers(loss_inputs, tmp_path, task: str):
    """A stock ``SFTTrainer`` and a ``GleamSFTTrainer`` on two copies of the same fp32 weights (full fine-tune:
    every parameter, the LM head included, gets a gradient to compare), and one collated batch."""
    from trl import SFTTrainer

    from gleamx.data import load_samples
    from gleamx.models import load_model_and_processor
    from gleamx.train.sft_data import build_sft_dataset
    from gleamx.train.sft import GleamSFTTrainer

    _, training, _ = _parse(tmp_path / "o", "--max_steps", "1")
    data = build_sft_dataset(load_samples(loss_inputs["data"], split="train").samples[:3], "both", task).dataset
    out = []
    for cls in (SFTTrainer, GleamSFTTrainer):
        model, processor = load_model_and_processor(loss_inputs["model"], dtype="float32")
        out.append(cls(model=model, args=training, train_dataset=data, processing_class=processor))
    batch = out[0].data_collator([data[i] for i in range(len(data))])
    return out[0], out[1], batch


def _loss_and_grads(trainer, batch: dict, **kw) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, dict(batch), **kw)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(stock, gleam, batch: dict, **kw) -> None:
    loss_s, grads_s = _loss_and_grads(stock, batch, **kw)
    loss_g, grads_g = _loss_and_grads(gleam, batch, **kw)
    assert abs(loss_s.item() - loss_g.item()) <= TOL * max(1.0, abs(loss_s.item())), (loss_s, loss_g)
    assert grads_s.keys() == grads_g.keys() and grads_s
    for name, g in grads_s.items():
        assert torch.allclose(g, grads_g[name], rtol=TOL, atol=TOL), (name, (g - grads_g[name]).abs().max())


@pytest.mark.parametrize("task", ["label", "explain"])
def test_loss_and_gradients_equal_trl_stock(loss_inputs, tmp_path, task):
    """Same batch, fp32: gleamx's compute_loss (fast path taken) equals TRL's to 1e-5, loss and every gradient,
    with and without ``num_items_in_batch``; and the metrics it logs equal TRL's on that batch."""
    from gleamx.train import labelled_loss as loss_path

    stock, gleam, batch = _trainers(loss_inputs, tmp_path, task)
    assert loss_path.fast_path_refusal(gleam, dict(batch), False) is None
    assert (batch["labels"] != -100).sum() > 0
    gleam.state.global_step, gleam.state.logging_steps, gleam.state.max_steps = 4, 5, 100  # step 5 logs
    _assert_same(stock, gleam, batch)
    n_items = torch.tensor(int((batch["labels"][:, 1:] != -100).sum()) + 3)
    _assert_same(stock, gleam, batch, num_items_in_batch=n_items)
    for key in ("entropy", "mean_token_accuracy"):
        assert gleam._metrics["train"][key] == pytest.approx(stock._metrics["train"][key], abs=1e-4), key
    assert gleam._metrics["train"]["num_tokens"] == stock._metrics["train"]["num_tokens"]


def test_padding_free_batch_without_attention_mask(loss_inputs, tmp_path):
    """A packed text-only row with 4-row mrope position_ids and no attention_mask: same loss and gradients as TRL;
    num_tokens counts the packed tokens."""
    stock, gleam, batch = _trainers(loss_inputs, tmp_path, "label")
    tok = gleam.processing_class.tokenizer
    rows = []
    for text, answer in (("Same place?", "Yes"), ("Do these match at all?", "No")):
        prompt = tok(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
        ans = tok(f"{answer}<|im_end|>\n")["input_ids"]
        rows.append((prompt + ans, [-100] * len(prompt) + ans))
    ids = torch.tensor([sum((r[0] for r in rows), [])])
    labels = torch.tensor([sum((r[1] for r in rows), [])])
    pos = torch.cat([torch.arange(len(r[0])) for r in rows])[None]
    packed = {"input_ids": ids, "labels": labels, "position_ids": pos.expand(4, 1, -1).clone()}
    gleam.state.global_step, gleam.state.logging_steps = 0, 1
    _assert_same(stock, gleam, packed)
    assert gleam._metrics["train"]["num_tokens"] == [ids.shape[1]]


def test_metrics_only_on_logging_steps(loss_inputs, tmp_path):
    from gleamx.train import labelled_loss as loss_path

    _, gleam, batch = _trainers(loss_inputs, tmp_path, "label")
    gleam.state.logging_steps, gleam.state.max_steps = 5, 100
    for step, logs in ((0, False), (3, False), (4, True), (99, True)):
        gleam.state.global_step = step
        assert loss_path.logs_this_step(gleam.args, gleam.state) is logs, step
    gleam.state.global_step = 1
    gleam.model.train()
    gleam.compute_loss(gleam.model, dict(batch))
    assert "entropy" not in gleam._metrics["train"] and gleam._metrics["train"]["num_tokens"][0] > 0
    gleam.token_metrics = "every_step"
    gleam.compute_loss(gleam.model, dict(batch))
    assert len(gleam._metrics["train"]["entropy"]) == 1


def test_falls_back_to_trl_when_logits_would_not_fit(loss_inputs, tmp_path, monkeypatch):
    from gleamx.train import labelled_loss as loss_path

    stock, gleam, batch = _trainers(loss_inputs, tmp_path, "label")
    monkeypatch.setattr(loss_path, "MAX_LOGITS", 1)
    assert loss_path.labelled_loss(gleam, gleam.model, dict(batch), None, metrics=False) is None
    _assert_same(stock, gleam, batch)  # through TRL's own compute_loss


def test_logged_history_keeps_trl_metrics(loss_inputs, tmp_path):
    """A real run: every log line (steps 2 and 4) carries entropy, mean_token_accuracy and num_tokens."""
    from gleamx.train.sft import run_sft

    out = tmp_path / "run"
    run_sft(*_parse(out, "--model_name_or_path", str(loss_inputs["model"]), "--dataset_name",
                    str(loss_inputs["data"]), "--logging_steps", "2", "--per_device_train_batch_size", "2",
                    "--max_steps", "4", "--save_strategy", "no"))
    logged = [h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    assert [h["step"] for h in logged] == [2, 4]
    for h in logged:
        assert 0 <= h["mean_token_accuracy"] <= 1 and h["entropy"] > 0 and h["num_tokens"] > 0, h
