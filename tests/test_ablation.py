"""gleamx ablation: arms of one SFT recipe trained, evaluated on the same samples and compared; the paper's pair
(label-only vs with explanations) differs in the task alone."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from gleamx.errors import GleamConfigError


def _settings(arm) -> dict:
    """An arm's parsed settings, without the fields an arm is allowed to differ in."""
    out = {**asdict(arm.script_args), **{f"training.{k}": v for k, v in arm.training_args.to_dict().items()},
           **{f"model.{k}": v for k, v in asdict(arm.model_args).items()}}
    for k in ("task", "training.output_dir", "training.logging_dir", "training.run_name"):
        out.pop(k, None)
    return out


@pytest.mark.parametrize("name", ["qwen2.5-vl-3b/ablation", "tiny/ablation"])
def test_the_packaged_ablations_differ_in_the_task_alone(name):
    from gleamx import recipes
    from gleamx.parsing import command_parser, parse_with_config
    from gleamx.recipes.ablation import AblationConfig, plan_arms

    cfg = parse_with_config(command_parser(AblationConfig, "gleamx ablation"),
                            ["--config", str(recipes.path(name))], what="config", label="gleamx ablation")[0]
    cfg.overrides += " --use_cpu true"  # a GPU recipe parsed here (bf16 needs a GPU or use_cpu)
    arms = plan_arms(cfg)
    assert [a.name for a in arms] == ["label", "explain"]
    assert [a.script_args.task for a in arms] == ["label", "explain"]
    assert _settings(arms[0]) == _settings(arms[1])
    assert arms[0].model_dir != arms[1].model_dir


def test_arms_must_share_seed_and_data_and_be_well_formed(tmp_path):
    from gleamx.recipes.ablation import AblationConfig, plan_arms

    with pytest.raises(GleamConfigError, match="differ in seed"):
        plan_arms(AblationConfig(recipe="tiny/sft_lora", output_dir=str(tmp_path),
                                 arms=["a: --seed 1", "b: --seed 2"]))
    with pytest.raises(GleamConfigError, match="differ in training data"):
        plan_arms(AblationConfig(recipe="tiny/sft_lora", output_dir=str(tmp_path),
                                 arms=["a: --dataset_name x", "b: --dataset_name y"]))
    for arms, said in ((["label --task label", "b: "], "expected 'NAME: recipe flags'"),
                       (["a: --task label", "a: --task explain"], "given twice"),
                       (["a: --task label"], "at least two arms"),
                       (["a: --task 'label", "b:"], "No closing quotation")):
        with pytest.raises(GleamConfigError, match=said):
            AblationConfig(recipe="tiny/sft_lora", output_dir=str(tmp_path), arms=arms)


@pytest.mark.slow  # two tiny SFT runs and four evals: about a minute
def test_tiny_ablation_trains_both_arms_evaluates_and_compares(tmp_path, synth_dir, models_tiny_dir, gleamx_cli):
    from safetensors.torch import load_file

    data, model = synth_dir(200, seed=3), models_tiny_dir("qwen2_5_vl")
    out = tmp_path / "ablation"
    args = ["ablation", "--config", "tiny/ablation", "--output_dir", str(out), "--eval_limit", "6",
            "--eval_max_new_tokens", "8",
            "--overrides", f"--model_name_or_path {model} --dataset_name {data} --max_steps 4 --save_strategy no"]
    r = gleamx_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "explain vs label: match verdicts" in r.stdout
    runs = {arm: json.loads((out / arm / "model" / "gleamx_run.json").read_text())["signature"]
            for arm in ("label", "explain")}
    assert runs["label"]["script"]["task"] == "label" and runs["explain"]["script"]["task"] == "explain"
    weights = {arm: load_file(out / arm / "model" / "adapter_model.safetensors") for arm in runs}
    assert weights["label"].keys() == weights["explain"].keys()
    assert any(not (weights["label"][k] == weights["explain"][k]).all() for k in weights["label"])  # trained apart
    for arm in runs:
        sub = json.loads((out / arm / "eval" / "results.json").read_text())
        assert sub["langs"] == ["en", "zh"]
        assert {lang: r["config"]["task"] for lang, r in sub["by_lang"].items()} == {"en": arm, "zh": arm}
    result = json.loads((out / "compare" / "compare.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["label", "explain"] and result["n"] == 12
    assert {"lang=en", "lang=zh"} <= set(result["comparisons"][0]["groups"])
    # again: nothing is trained or generated a second time, the table is the same
    before = (out / "compare" / "compare.json").read_text()
    r = gleamx_cli(*args)
    assert r.returncode == 0 and r.stdout.count("trained earlier with these settings") == 2
    assert (out / "compare" / "compare.json").read_text() == before
