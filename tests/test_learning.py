"""Training learns: the tiny model overfits a few `toy` pairs, measured through gleamx-eval's own path."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sft_raises_run_eval_accuracy_on_the_pairs_it_trained_on(tmp_path):
    """100 full fine-tuning steps (recipes/tiny/sft_learns.yaml) on 16 toy pairs: run_eval's accuracy on those
    pairs goes from the untrained model's (no valid verdicts) to >= 80%. About 15-60 s on 2 CPU cores."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.synth import synthesize
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.models import build_tiny_model
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe
    from gleamx.train.sft import run_sft

    data = tmp_path / "data"
    synthesize(data, n=20, seed=0, image_size=64, difficulty="toy")
    model = build_tiny_model("qwen2_5_vl", tmp_path / "model")

    def accuracy(model_dir: Path, out: str) -> dict:
        return run_eval(EvalConfig(data=str(data), model=str(model_dir), split="train", task="label", lang="en",
                                   max_new_tokens=8, batch_size=16, bootstrap=0, output=str(tmp_path / out))).results

    before = accuracy(model, "eval-untrained")
    args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
        "--config", str(ROOT / "recipes" / "tiny" / "sft_learns.yaml"), "--model_name_or_path", str(model),
        "--dataset_name", str(data), "--output_dir", str(tmp_path / "run"), "--max_steps", "100",
        "--logging_steps", "50"])
    after = accuracy(run_sft(*args), "eval-trained")

    assert after["n"] == before["n"] >= 12
    assert after["invalid_rate"] == 0.0
    assert after["accuracy"] >= 0.8 and after["accuracy"] >= (before["accuracy"] or 0.0) + 0.5, (before, after)
    assert after["accuracy_positive"] > 0 and after["accuracy_negative"] > 0  # not one answer for everything
