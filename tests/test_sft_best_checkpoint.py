"""SFT keeps the checkpoint that scores best on match accuracy (``eval_match_samples`` +
``metric_for_best_model: match_accuracy``), scored at each evaluation exactly as ``gleamx eval`` scores it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gleamx.errors import GleamConfigError, GleamDataError

ROOT = Path(__file__).resolve().parents[1]
BEST_RECIPE = ROOT / "recipes" / "tiny" / "sft_best.yaml"
LORA_RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"
N_VAL = 8  # val pairs scored at each evaluation
MATCH_KEYS = ("accuracy", "accuracy_positive", "accuracy_negative", "f1", "invalid_rate")


def _args(recipe: Path, model: Path, data: Path, out: Path, *overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments

    return parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
        "--config", str(recipe), "--model_name_or_path", str(model), "--dataset_name", str(data),
        "--output_dir", str(out), *overrides])


@pytest.fixture(scope="module")
def inputs(synth_dir, models_tiny_dir) -> dict[str, Path]:
    # toy level, 80 pairs (8 in val), tiny model seed 0: within 60 steps the verdicts go from "always yes" to
    # mostly wrong while the eval loss keeps falling, so the most accurate checkpoint is not the last one
    return {"data": synth_dir(80, seed=0, image_size=64, difficulty="toy"), "model": models_tiny_dir("qwen2_5_vl")}


@pytest.fixture(scope="module")
def best_run(inputs, tmp_path_factory) -> Path:
    """recipes/tiny/sft_best.yaml, shortened: 60 full fine-tuning steps, an evaluation (and checkpoint) every 20,
    every checkpoint kept, at lr 1e-3 (the recipe's 5e-4 is for 3000 steps: in 60 its verdicts do not move yet, and
    the test needs checkpoints that differ). About 15 s on one core."""
    from gleamx.train.sft import run_sft

    out = tmp_path_factory.mktemp("best") / "run"
    return run_sft(*_args(BEST_RECIPE, inputs["model"], inputs["data"], out, "--max_steps", "60",
                          "--learning_rate", "1e-3", "--eval_steps",
                          "20", "--save_steps", "20", "--save_total_limit", "10", "--logging_steps", "10",
                          "--eval_match_samples", str(N_VAL), "--per_device_eval_batch_size", "8"))


def _evals(out: Path) -> dict[int, dict]:
    return {h["step"]: h for h in json.loads((out / "log_history.json").read_text()) if "eval_loss" in h}


def _run_eval(inputs, out: Path, model: Path, adapter: Path | None = None, lang: str = "en") -> dict:
    from gleamx.eval.run import EvalConfig, run_eval

    return run_eval(EvalConfig(data=str(inputs["data"]), model=str(model), adapter=str(adapter) if adapter else None,
                               split="val", limit=N_VAL, task="label", lang=lang, max_new_tokens=8, batch_size=8,
                               bootstrap=0, no_explanation_metrics=True, output=str(out))).results


@pytest.mark.slow
def test_match_accuracy_is_logged_at_every_evaluation(best_run):
    evals = _evals(best_run)
    assert sorted(evals) == [20, 40, 60]
    for h in evals.values():  # in the same log line as eval_loss, so transformers' best-model logic reads it
        assert {f"eval_match_{k}" for k in MATCH_KEYS} <= set(h), sorted(h)
        assert 0.0 <= h["eval_match_accuracy"] <= 1.0


@pytest.mark.slow
def test_kept_checkpoint_is_the_most_accurate_and_its_weights_are_saved(best_run):
    import torch
    from safetensors.torch import load_file

    evals = _evals(best_run)
    best_step = max(evals, key=lambda s: (evals[s]["eval_match_accuracy"], -s))  # ties: the first, as transformers
    state = json.loads((best_run / "checkpoint-60" / "trainer_state.json").read_text())
    assert state["best_metric"] == evals[best_step]["eval_match_accuracy"] == max(
        h["eval_match_accuracy"] for h in evals.values())
    assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{best_step}"
    assert best_step != 60, "data and seed were chosen so that the best is not the last checkpoint"
    assert min(evals, key=lambda s: evals[s]["eval_loss"]) != best_step  # chosen by accuracy, not by loss
    kept = json.loads((best_run / "gleamx_run.json").read_text())["kept_checkpoint"]
    assert kept == {"checkpoint": f"checkpoint-{best_step}", "step": best_step, "metric": "eval_match_accuracy",
                    "value": state["best_metric"]}
    assert f"Weights: checkpoint-{best_step}, the best evaluation by eval_match_accuracy" in (
        best_run / "README.md").read_text()
    # The saved weights are the best checkpoint's (transformers' own reload would match none of Qwen-VL's saved
    # keys and keep the last step's).
    saved, best, last = (load_file(p / "model.safetensors") for p in (
        best_run, best_run / f"checkpoint-{best_step}", best_run / "checkpoint-60"))
    assert saved.keys() == best.keys()
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    assert not all(torch.equal(saved[k], last[k]) for k in saved)


@pytest.mark.slow
def test_match_accuracy_equals_what_run_eval_reports_for_each_checkpoint(best_run, inputs, tmp_path):
    evals = _evals(best_run)
    for step, logged in evals.items():
        results = _run_eval(inputs, tmp_path / f"eval-{step}", best_run / f"checkpoint-{step}")
        assert results["n"] == N_VAL
        assert {k: logged[f"eval_match_{k}"] for k in MATCH_KEYS} == {k: results[k] for k in MATCH_KEYS}, step
    assert len({h["eval_match_accuracy"] for h in evals.values()}) > 1  # the checkpoints differ: not a constant


@pytest.mark.slow
def test_lora_run_scores_through_the_adapter_and_reloads_the_best_one(inputs, tmp_path):
    """LoRA (PEFT-wrapped model), a bilingual run scored in English as gleamx eval scores it: the logged numbers
    equal run_eval's on the base model plus that checkpoint's adapter."""
    from gleamx.train.sft import run_sft

    out = run_sft(*_args(LORA_RECIPE, inputs["model"], inputs["data"], tmp_path / "run", "--max_steps", "2",
                         "--eval_strategy", "steps", "--eval_steps", "1", "--save_steps", "1",
                         "--eval_match_samples", str(N_VAL), "--eval_match_max_new_tokens", "8",
                         "--per_device_eval_batch_size", "8", "--metric_for_best_model", "match_accuracy",
                         "--load_best_model_at_end", "true", "--logging_steps", "1"))
    evals = _evals(out)
    assert sorted(evals) == [1, 2]
    for step, logged in evals.items():
        results = _run_eval(inputs, tmp_path / f"eval-{step}", inputs["model"], adapter=out / f"checkpoint-{step}")
        assert {k: logged[f"eval_match_{k}"] for k in MATCH_KEYS} == {k: results[k] for k in MATCH_KEYS}, step
    kept = json.loads((out / "gleamx_run.json").read_text())["kept_checkpoint"]
    assert kept["metric"] == "eval_match_accuracy" and kept["value"] == max(
        h["eval_match_accuracy"] for h in evals.values())
    assert (out / "adapter_model.safetensors").read_bytes() == (
        out / kept["checkpoint"] / "adapter_model.safetensors").read_bytes()


def test_match_metric_without_its_generation_is_refused_in_one_line(inputs, tmp_path, gleamx_cli):
    r = gleamx_cli("sft", "--config", "tiny/sft_lora", "--model_name_or_path", inputs["model"], "--dataset_name",
                   inputs["data"], "--output_dir", tmp_path / "run", "--eval_strategy", "steps",
                   "--metric_for_best_model", "match_accuracy")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "error: recipe: metric_for_best_model: match_accuracy is scored by generating verdicts at each evaluation, "
        "and eval_match_samples is 0; set eval_match_samples: N (held-out samples to score, e.g. 64)"]
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize(("overrides", "message"), [
    (["--eval_match_samples", "8"], r"eval_match_samples: scores verdicts at each evaluation, and eval_strategy is no"),
    (["--eval_match_samples", "8", "--eval_strategy", "steps", "--dataset_test_split", ""],
     r"eval_match_samples: needs dataset_test_split"),
    (["--eval_match_samples", "8", "--eval_strategy", "steps", "--metric_for_best_model", "eval_match_acc"],
     r"metric_for_best_model: expected one of match_accuracy, .* got 'eval_match_acc'"),
    (["--eval_match_samples", "8", "--eval_strategy", "steps", "--metric_for_best_model", "match_invalid_rate"],
     r"match_invalid_rate is better when lower; set greater_is_better: false"),
    (["--eval_match_samples", "-1"], r"eval_match_samples: expected an integer >= 0"),
])
def test_match_eval_settings_that_cannot_be_scored_are_refused(inputs, tmp_path, overrides, message):
    from gleamx.train.sft import run_sft

    with pytest.raises(GleamConfigError, match=message):
        run_sft(*_args(LORA_RECIPE, inputs["model"], inputs["data"], tmp_path / "run", *overrides))
    assert not (tmp_path / "run").exists()


def test_a_missing_eval_split_is_one_line_before_the_model_loads(inputs, tmp_path, monkeypatch):
    import gleamx.models
    from gleamx.train.sft import build_trainer

    def no_model(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("the model was loaded before the data were checked")

    monkeypatch.setattr(gleamx.models, "load_model_and_processor", no_model)
    args = _args(LORA_RECIPE, inputs["model"], inputs["data"], tmp_path / "run", "--eval_match_samples", "8",
                 "--eval_strategy", "steps", "--dataset_test_split", "valid")
    with pytest.raises(GleamDataError, match=r"samples: no samples found with split 'valid'"):
        build_trainer(*args, say=lambda _: None)


def test_grpo_refuses_match_eval():
    from gleamx.train.arguments import GleamGRPOArguments

    with pytest.raises(GleamConfigError, match=r"recipe: eval_match_samples: applies to SFT only"):
        GleamGRPOArguments(dataset_name="data", eval_match_samples=8)
