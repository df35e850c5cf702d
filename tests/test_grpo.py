"""GRPO through TRL's GRPOTrainer: recipes, start from an SFT run or a base model, outputs, eval and push on the
output, resume, and bad input refused in one line before a model loads."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from gleamx.errors import GleamConfigError, GleamDataError
from training_checks import assert_gradients_flowed, assert_lora_trained, assert_moved, straight_and_resumed

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny" / "grpo.yaml"
GRPO_RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes").rglob("grpo*.yaml"))


@pytest.fixture(scope="module")
def grpo_inputs(synth_dir, models_tiny_dir, tiny_lora_run):
    """Synthetic toy data, the tiny Qwen2.5-VL model, and a 3-step SFT LoRA run on it (the GRPO start)."""
    data = synth_dir(48, seed=3, image_size=64, difficulty="toy")
    sft = tiny_lora_run(data, "--max_steps", "3", "--per_device_train_batch_size", "4")
    return {"data": data, "model": models_tiny_dir("qwen2_5_vl"), "sft": sft}


def _parse(*overrides: str, recipe: Path = TINY):
    from trl import GRPOConfig, ModelConfig, TrlParser

    from gleamx.train.arguments import GleamGRPOArguments
    from gleamx.parsing import parse_recipe

    return parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)), ["--config", str(recipe), *overrides])


def _grpo(inputs, out: Path, *overrides: str, start: str = "sft", encoder_loader=None) -> Path:
    from gleamx.train.grpo import run_grpo

    args = _parse("--model_name_or_path", str(inputs[start]), "--dataset_name", str(inputs["data"]),
                  "--output_dir", str(out), "--max_steps", "2", "--max_completion_length", "6",
                  "--save_strategy", "no", *overrides)
    return run_grpo(*args, encoder_loader=encoder_loader)


def _encoder():
    """A stand-in sentence encoder for reference_similarity: a fixed random vector per text."""
    return lambda texts: np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts])


def _history(out: Path) -> list[dict]:
    return json.loads((out / "log_history.json").read_text())


@pytest.mark.slow
def test_grpo_from_an_sft_run_trains_its_adapter_and_leaves_sft_like_outputs(grpo_inputs, tmp_path, capsys):
    from huggingface_hub import ModelCard
    from safetensors.torch import load_file

    from gleamx.cli.main import main as cli_main
    from gleamx.eval.run import EvalConfig, run_eval

    # reference_similarity spreads the rewards within a group (a 3-step SFT's verdict and format rewards alone
    # are equal across a group: zero advantage, zero gradient, nothing trained)
    out = _grpo(grpo_inputs, tmp_path / "run", "--learning_rate", "0.05", "--task", "explain", "--lang", "en",
                "--reward_funcs", "verdict", "format", "reference_similarity", "--reward_weights", "1.0", "0.5", "0.25",
                encoder_loader=_encoder)
    for f in ("adapter_model.safetensors", "adapter_config.json", "processor_config.json", "chat_template.jinja",
              "gleamx_args.yaml", "log_history.json", "reward_curve.png", "README.md"):
        assert (out / f).is_file(), f
    # each reward logged separately, mean and std, every step
    logged = [h for h in _history(out) if "reward" in h]
    assert len(logged) == 2
    assert all({"rewards/verdict/mean", "rewards/verdict/std", "rewards/format/mean", "rewards/format/std"} <= set(h)
               for h in logged)
    # the SFT adapter was trained further: same tensors, an adapter on the same base model
    sft, grpo = load_file(grpo_inputs["sft"] / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert set(sft) == set(grpo)
    assert_moved(sft, grpo, "the SFT adapter under GRPO")  # fails at --learning_rate 1e-30
    assert_gradients_flowed(out)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(grpo_inputs["model"])
    args = (out / "gleamx_args.yaml").read_text()
    assert "method: grpo" in args and "sft_parent:" in args and "reward_funcs:" in args
    # the card: base, SFT parent, rewards with their weights; eval results become model-index
    card = (out / "README.md").read_text()
    assert "SFT parent" in card and str(grpo_inputs["sft"]) in card and "| verdict | 1.0 |" in card
    assert "| format | 0.5 |" in card and "- grpo" in card

    # gleamx eval and gleamx push take the output as they take an SFT run
    ev = tmp_path / "eval"
    results = run_eval(EvalConfig(data=str(grpo_inputs["data"]), model=str(grpo_inputs["model"]), adapter=str(out),
                                  task="label", max_new_tokens=4, limit=6, output=str(ev), bootstrap=0)).results
    assert results["n"] > 0 and (ev / "results.json").is_file()
    out2 = _grpo(grpo_inputs, tmp_path / "run2", "--eval_results", str(ev / "results.json"))
    names = {r.metric_name: r.metric_value for r in ModelCard.load(out2 / "README.md").data.eval_results}
    assert names["Match accuracy"] == round(100 * results["accuracy"], 2)
    capsys.readouterr()
    assert cli_main(["push", str(out), "--repo-id", "me/gleamx-grpo", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "adapter_model.safetensors" in said and "reward_curve.png" in said and "library_name: peft" in said


@pytest.mark.slow
def test_a_grpo_run_that_cannot_learn_says_so_in_its_log_and_card(grpo_inputs, tmp_path, capsys):
    """One-token answers never reach a verdict line: every answer is clipped and every group's rewards are equal
    (zero advantage). The run still finishes, and says so on the console and in its model card, with what to
    change; its last lines name the output, the steps, the final reward and the command to run next."""
    out = _grpo(grpo_inputs, tmp_path / "flat", "--max_completion_length", "1")
    history = _history(out)
    assert all(h["completions/clipped_ratio"] == 1.0 for h in history if "completions/clipped_ratio" in h)
    said = " ".join(capsys.readouterr().out.split())
    card = " ".join((out / "README.md").read_text().split())
    for text in (said, card):
        assert "GRPO learned little" in text and "raise temperature or num_generations" in text, text[-800:]
        assert "100% of answers were cut at max_completion_length (1 tokens) before they ended" in text
    assert "this run may not have learned" in card
    assert f"GRPO run saved to {out} after 2 step(s); final loss " in said and "reward " in said
    base = grpo_inputs["model"]
    assert f"next: gleamx eval --model {base} --adapter {out} --data {grpo_inputs['data']}" in said


@pytest.mark.slow
def test_grpo_from_a_base_model_with_kl_and_every_reward(grpo_inputs, tmp_path):
    """A fresh LoRA on the base model, explain task, all four rewards (reference similarity through the encoder
    handed in), beta > 0 so TRL logs the KL and a KL plot is written."""
    from gleamx.models import load_model_and_processor

    out = _grpo(grpo_inputs, tmp_path / "base", "--task", "explain", "--lang", "en", "--beta", "0.1",
                "--reward_funcs", "verdict", "format", "consistency", "reference_similarity",
                "--reward_weights", "1.0", "0.5", "0.5", "0.25", start="model", encoder_loader=_encoder)
    logged = [h for h in _history(out) if "reward" in h]
    assert logged and all("kl" in h and "rewards/reference_similarity/mean" in h for h in logged)
    # sampled answers differ in similarity, so the group advantages and the LoRA gradients are not zero
    assert any(h["rewards/reference_similarity/std"] > 0 for h in logged)
    assert_gradients_flowed(out)
    assert_lora_trained(out)
    assert (out / "kl_curve.png").is_file() and (out / "reward_curve.png").is_file()
    card = (out / "README.md").read_text()
    assert "none (GRPO from the base model)" in card and "| reference_similarity | 0.25 |" in card
    # the output loads onto its base model as an SFT adapter does
    from gleamx.models.adapter import load_adapter

    base, _ = load_model_and_processor(grpo_inputs["model"])
    assert load_adapter(base, out) is not None


@pytest.mark.slow
def test_cli_grpo_runs_the_packaged_tiny_recipe(grpo_inputs, tmp_path):
    from gleamx.cli.main import main as cli_main

    out = tmp_path / "cli"
    rc = cli_main(["grpo", "--config", "tiny/grpo", "--model_name_or_path", str(grpo_inputs["sft"]),
                   "--dataset_name", str(grpo_inputs["data"]), "--output_dir", str(out), "--max_steps", "1",
                   "--max_completion_length", "4", "--save_strategy", "no", "--beta", "0.1"])
    assert rc == 0 and (out / "adapter_model.safetensors").is_file() and (out / "kl_curve.png").is_file()
    # beta > 0 on an SFT adapter: TRL's frozen reference copy (the SFT adapter itself) is not left in the output
    assert not (out / "ref").exists()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["materialised", "streamed", "full"])
def test_resume_continues_with_the_same_rewards(grpo_inputs, tmp_path, variant):
    """Stopped after step 2 and resumed from checkpoint-2: steps 3-4 sample the same answers and get the same
    rewards and losses (non-zero: reference_similarity spreads the rewards) as the straight run. Streamed, the
    resumed run reads on where the stream stopped (shuffled: the prompts of steps 3-4 are not those of 1-2).
    Full fine-tune: the checkpoint's ``model.safetensors`` (Qwen-VL's saved layout) is reloaded whole."""
    over = ("--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--learning_rate", "0.05",
            "--task", "explain", "--lang", "en", "--reward_funcs", "verdict", "reference_similarity",
            "--reward_weights", "1", "1",
            *{"materialised": (), "streamed": ("--dataset_streaming", "true", "--stream_shuffle_buffer", "8"),
              "full": ("--use_peft", "false", "--learning_rate", "1e-3")}[variant])
    straight, resumed = straight_and_resumed(partial(_grpo, grpo_inputs, start="model", encoder_loader=_encoder),
                                             tmp_path, 2, *over, resume="true")
    a = {h["step"]: h for h in _history(straight) if "reward" in h}
    b = {h["step"]: h for h in _history(resumed) if "reward" in h}
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]  # steps 1-2 from the checkpoint's state, 3-4 computed anew
    for step in (3, 4):
        for key in ("reward", "rewards/verdict/mean", "rewards/reference_similarity/mean", "loss", "grad_norm"):
            assert a[step][key] == pytest.approx(b[step][key], abs=1e-5), (step, key)
    assert any(a[s]["loss"] != 0 for s in (3, 4))


def test_data_without_labels_is_refused_in_one_line(tmp_path):
    from PIL import Image

    from gleamx.train.grpo import grpo_training_data

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    row = {"id": "a", "query_image": "a.png", "satellite_image": "a.png", "query_view": "uav", "split": "train"}
    (tmp_path / "d.jsonl").write_text(json.dumps(row) + "\n")
    script, training, _ = _parse("--dataset_name", str(tmp_path / "d.jsonl"), "--output_dir", str(tmp_path / "o"))
    with pytest.raises(GleamDataError, match=r"d\.jsonl:1: label: missing.*nothing to verify") as e:
        grpo_training_data(script, training)
    assert "\n" not in str(e.value)


def test_bad_recipes_are_one_line_before_any_model_loads(tmp_path):
    # TRL's num_generations rule, at parse time
    with pytest.raises(GleamConfigError, match=r"^recipe: generation_batch_size \(6\) must be divisible by "
                                               r"num_generations \(4\)\.?$"):
        _parse("--per_device_train_batch_size", "6")
    # an unknown reward name, with a did-you-mean
    with pytest.raises(GleamConfigError, match=r"unknown reward 'consistancy' \(did you mean 'consistency'\?\)"):
        _parse("--reward_funcs", "verdict", "consistancy")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text().replace("reward_funcs: [verdict, format,", "reward_funcs: [verdict, fromat,"))
    with pytest.raises(GleamConfigError, match=r"did you mean 'format'"):
        _parse(recipe=recipe)
    # checks that need both halves of the recipe, before data or model load (the model path does not exist)
    from gleamx.train.grpo import run_grpo

    base = ("--model_name_or_path", str(tmp_path / "no-model"), "--dataset_name", str(tmp_path / "no-data"),
            "--output_dir", str(tmp_path / "o"))
    with pytest.raises(GleamConfigError, match=r"reward_weights: 3 weight\(s\) for 4 reward\(s\)"):
        run_grpo(*_parse(*base, "--reward_weights", "1", "1", "1"))
    with pytest.raises(GleamConfigError, match="class_balance: with scale_rewards group"):
        run_grpo(*_parse(*base, "--class_balance", "true", "--scale_rewards", "group"))
    # a weight that is not a number would silently drop its reward from the sum
    with pytest.raises(GleamConfigError, match=r"^recipe: reward_weights: expected finite numbers, got \[nan, 1.0\]$"):
        run_grpo(*_parse(*base, "--reward_weights", "nan", "1"))
    # a reward that scores the explanation has nothing to score in the label task: refused, not a silent 0 loss
    with pytest.raises(GleamConfigError, match=r"'consistency' scores the explanation, and with task: label"):
        _parse("--task", "label", "--reward_funcs", "verdict", "consistency")
    if not torch.cuda.is_available():
        with pytest.raises(GleamConfigError, match="use_vllm: vLLM generation needs a CUDA GPU"):
            run_grpo(*_parse(*base, "--use_vllm", "true"))


def test_class_balance_runs_with_batch_scaling(grpo_inputs):
    """class_balance with scale_rewards batch: the rewards TRL gets are weighted per label."""
    from gleamx.train.grpo import grpo_training_data
    from gleamx.train.rewards import class_weights

    script, training, _ = _parse("--dataset_name", str(grpo_inputs["data"]), "--class_balance", "true",
                                 "--scale_rewards", "batch", "--output_dir", "unused")
    data = grpo_training_data(script, training)
    w = class_weights(data.dataset["label"])
    assert data.n_positive + (len(data.dataset) - data.n_positive) == len(data.dataset)
    assert w[True] * data.n_positive == pytest.approx(w[False] * (len(data.dataset) - data.n_positive))
    row = data.dataset[0]
    assert [p["type"] for p in row["prompt"][0]["content"]] == ["image", "image", "text"] and len(row["images"]) == 2


@pytest.mark.parametrize("recipe", GRPO_RECIPES)
def test_every_grpo_recipe_parses(recipe):
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    script, training, model = _parse(*cpu, recipe=ROOT / recipe)
    assert model.model_name_or_path and script.dataset_name and training.output_dir
    assert script.reward_funcs[0] == "verdict"
    assert len(training.reward_weights) == len(script.reward_funcs)
    assert training.generation_batch_size % training.num_generations == 0
    # how rewards become advantages and which loss: stated in the recipe (with its reasons), not left to TRL's defaults
    import yaml

    stated = yaml.safe_load((ROOT / recipe).read_text())
    for key in ("loss_type", "importance_sampling_level", "scale_rewards", "multi_objective_aggregation",
                "mask_truncated_completions"):
        assert key in stated, f"{recipe}: {key} is not stated"
    assert training.scale_rewards in ("group", "batch", "none")
    assert training.loss_type in ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
    assert not (script.class_balance and training.scale_rewards == "group")


def test_grpo_recipes_are_their_own_kind():
    from gleamx.recipes import names, resolve_config

    assert set(names("grpo")) == {"tiny/grpo", "qwen2.5-vl-3b/grpo_lora", "qwen2.5-vl-3b/grpo_full",
                                  "qwen3-vl-4b/grpo_lora"}
    assert not any("grpo" in n for n in names("sft"))
    with pytest.raises(GleamConfigError, match="packaged SFT recipes"):
        resolve_config(["--config", "tiny/grpo"], "sft")
    assert resolve_config(["--config", "tiny/grpo"], "grpo")[1].endswith("tiny/grpo.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [r for r in GRPO_RECIPES if not r.startswith("recipes/tiny/")])
def test_gpu_grpo_recipe_runs_as_shipped(recipe, grpo_inputs, models_real_tiny_dir, tmp_path):
    """One GRPO step of every GPU recipe through recipes/grpo.py's main, on the tiny random model built from the
    real files of its family. Overridden: what a CPU forces (model path: a base model, as no SFT run exists here;
    data; use_cpu; output dir) and the amount of work (one step of one prompt group, 8 answer tokens). Rewards
    (reference similarity through the offline encoder), weights, bf16, LoRA or full fine-tuning stay as shipped."""
    from gleamx.recipes.grpo import main as grpo_main

    arch = {"qwen2.5-vl-3b": "qwen2_5_vl", "qwen3-vl-4b": "qwen3_vl"}[recipe.split("/")[1]]
    shipped_script, shipped, shipped_model = _parse("--use_cpu", "true", recipe=ROOT / recipe)
    out = tmp_path / "out"
    grpo_main(["--config", str(ROOT / recipe), "--model_name_or_path", str(models_real_tiny_dir(arch)),
               "--dataset_name", str(grpo_inputs["data"]), "--output_dir", str(out), "--use_cpu", "true",
               "--max_steps", "1", "--gradient_accumulation_steps", "1",
               "--per_device_train_batch_size", str(shipped.num_generations), "--max_completion_length", "8",
               "--report_to", "none"])
    logged = [h for h in _history(out) if "reward" in h]
    assert len(logged) == 1 and all(f"rewards/{n}/mean" in logged[0] for n in shipped_script.reward_funcs)
    assert {"length", "repetition"} <= set(shipped_script.reward_funcs)  # the guards against gamed answers
    assert (out / ("adapter_model.safetensors" if shipped_model.use_peft else "model.safetensors")).is_file()


@pytest.mark.slow
def test_grpo_trains_from_a_stream(grpo_inputs, tmp_path):
    """dataset_streaming: true: the prompts are read as the run goes (TRL's iterable path, batches not dispatched),
    and the SFT adapter still moves."""
    from safetensors.torch import load_file

    out = _grpo(grpo_inputs, tmp_path / "run", "--dataset_streaming", "true", "--learning_rate", "0.05", "--task",
                "explain", "--lang", "en", "--reward_funcs", "verdict", "format", "reference_similarity",
                "--reward_weights", "1.0", "0.5", "0.25", encoder_loader=_encoder)
    assert len([h for h in _history(out) if "reward" in h]) == 2
    assert_moved(load_file(grpo_inputs["sft"] / "adapter_model.safetensors"),
                 load_file(out / "adapter_model.safetensors"), "the SFT adapter under streamed GRPO")
    assert "streamed training prompts" in (out / "README.md").read_text()
