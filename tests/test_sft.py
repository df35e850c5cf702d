"""SFT through TRL: assistant-only labels, resume, outputs, adapters, merge, QLoRA, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from gleamx import recipes as packaged_recipes
from gleamx.errors import GleamConfigError, GleamDataError
from training_checks import (assert_gradients_flowed, assert_lora_trained, assert_moved, run_card_snippet,
                             straight_and_resumed, tensors)

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"


@pytest.fixture(scope="module")
def sft_inputs(synth_dir, models_tiny_dir):
    """Synthetic data (small) and a tiny Qwen2.5-VL model, built once per session."""
    return {"data": synth_dir(48, seed=3), "model": models_tiny_dir("qwen2_5_vl")}


def _parse(*overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
    return parse_recipe(parser, ["--config", str(TINY_RECIPE), *overrides])


def _train(sft_inputs, out: Path, *overrides: str) -> Path:
    from gleamx.train.sft import run_sft

    args = _parse("--model_name_or_path", str(sft_inputs["model"]), "--dataset_name", str(sft_inputs["data"]),
                  "--output_dir", str(out), "--logging_steps", "1", "--per_device_train_batch_size", "2",
                  "--max_steps", "2", "--save_steps", "1000", *overrides)
    return run_sft(*args)


def _losses(out: Path) -> dict[int, float]:
    hist = json.loads((out / "log_history.json").read_text())
    return {h["step"]: h["loss"] for h in hist if "loss" in h}


def test_labels_are_the_assistant_answer_only(sft_inputs, tmp_path):
    """Token by token: images, system and user turns are -100; the answer, its <|im_end|> and the newline after
    it are learned (TRL's Qwen-VL training template marks all three)."""
    from trl import SFTTrainer

    from gleamx.data import load_samples
    from gleamx.models import load_model_and_processor
    from gleamx.prompts import build_answer
    from gleamx.train.sft_data import build_sft_dataset

    script, training, _ = _parse("--output_dir", str(tmp_path / "o"), "--task", "explain", "--max_steps", "1")
    samples = load_samples(sft_inputs["data"], split="train").samples[:3]
    data = build_sft_dataset(samples, "both", "explain").dataset
    model, processor = load_model_and_processor(sft_inputs["model"])
    trainer = SFTTrainer(model=model, args=training, train_dataset=data, processing_class=processor)
    rows = [data[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    tok = processor.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    image_pad = model.config.image_token_id
    answers = [build_answer(samples[0], "en"), build_answer(samples[0], "zh"),
               build_answer(samples[1], "en"), build_answer(samples[1], "zh")]
    for i, answer in enumerate(answers):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        learned = (labels != -100).nonzero().flatten()
        # one contiguous run of learned tokens...
        assert learned.numel() > 0 and (learned[-1] - learned[0] + 1) == learned.numel()
        # ...that is exactly the answer text followed by <|im_end|> and its newline, labels equal to the inputs
        assert tok.decode(ids[learned]) == answer + "<|im_end|>\n"
        assert int(ids[learned[-2]]) == im_end
        assert torch.equal(labels[learned], ids[learned])
        # everything before it (system, user text, both images' tokens) and the padding is masked
        assert (labels[: learned[0]] == -100).all()
        assert (labels[ids == image_pad] == -100).all() and (ids == image_pad).sum() > 0
        assert (labels[mask == 0] == -100).all()
        assert tok.decode(ids[: learned[0]]).endswith("<|im_start|>assistant\n")


def test_fast_assistant_masks_equal_transformers_own(sft_inputs, tmp_path):
    """The list-offsets shim gives the very batch transformers' own mask walk gives, and survives pickling."""
    import pickle

    from trl import SFTTrainer

    from gleamx.data import load_samples
    from gleamx.models import load_model_and_processor
    from gleamx.train.assistant_mask import speed_up_assistant_masks
    from gleamx.train.sft_data import build_sft_dataset

    script, training, _ = _parse("--output_dir", str(tmp_path / "o"), "--max_steps", "1")
    samples = load_samples(sft_inputs["data"], split="train").samples[:6]
    model, processor = load_model_and_processor(sft_inputs["model"])
    trainer = SFTTrainer(model=model, args=training, train_dataset=build_sft_dataset(samples, "en", "label").dataset,
                         processing_class=processor)
    for task in ("label", "explain"):
        data = build_sft_dataset(samples, "both", task).dataset
        rows = [data[i] for i in range(len(data))]
        plain = trainer.data_collator(rows)
        speed_up_assistant_masks(processor)
        fast = trainer.data_collator(rows)
        copy = pickle.loads(pickle.dumps(trainer.data_collator))(rows)
        del processor._adjust_assistant_masks_indices, processor._gleamx_fast_assistant_masks
        assert (plain["labels"] != -100).sum() > 0
        for key in plain:
            assert torch.equal(plain[key], fast[key]) and torch.equal(plain[key], copy[key]), (task, key)


def test_image_tokens_are_logged_with_dataloader_workers(sft_inputs, tmp_path):
    """Counted in the training step, so batches collated in worker processes are counted too."""
    out = _train(sft_inputs, tmp_path / "workers", "--dataloader_num_workers", "1")
    logged = [h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    assert logged and all(h["image_tokens_per_batch"] > 0 and h["max_seq_len"] > 0 for h in logged)


def test_train_writes_adapter_card_plot_and_reloads_onto_fresh_base(sft_inputs, tmp_path, capsys):
    from peft import PeftModel
    from safetensors.torch import load_file

    from gleamx.models import load_model_and_processor

    out = _train(sft_inputs, tmp_path / "run")
    # the run ends with what it did: where, how far, the final loss, and the command that scores it
    said = " ".join(capsys.readouterr().out.split())
    assert f"SFT run saved to {out} after 2 step(s); final loss " in said, said[-600:]
    assert f"next: gleamx eval --model {sft_inputs['model']} --adapter {out} --data {sft_inputs['data']}" in said
    for f in ("adapter_model.safetensors", "adapter_config.json", "processor_config.json", "tokenizer.json",
              "chat_template.jinja", "gleamx_args.yaml", "loss_curve.png", "log_history.json", "README.md"):
        assert (out / f).is_file(), f
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and "image-text-to-text" in card and "learning_rate" in card
    assert "token" not in (out / "gleamx_args.yaml").read_text().lower().replace("tokens", "")
    weights = load_file(out / "adapter_model.safetensors")
    assert_lora_trained(weights)
    assert_gradients_flowed(out)
    lora = [k for k in weights if "lora_" in k]
    # LoRA sits on the language model only; the merger is trained in full (modules_to_save)
    assert lora and all("language_model" in k for k in lora)
    assert any(".merger." in k for k in weights) and not any("visual.blocks" in k for k in weights)
    base, processor = load_model_and_processor(sft_inputs["model"])
    model = PeftModel.from_pretrained(base, str(out))
    n_loaded = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    assert n_loaded == len(lora)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            key = name.replace(".default", "")
            assert torch.equal(p.detach(), weights[key]), name  # the trained values, not a fresh init


def test_a_checkpoint_of_another_run_is_refused_naming_what_changed(sft_inputs, tmp_path):
    """Resuming another folder's checkpoint with a changed setting would train at the restored schedule while this
    run records the new value: refused in one line before any work, naming the key."""
    first = _train(sft_inputs, tmp_path / "first", "--save_steps", "1")
    ckpt = first / "checkpoint-1"
    assert ckpt.is_dir()
    with pytest.raises(GleamConfigError, match=r"^resume_from_checkpoint: .*checkpoint-1 is a checkpoint of another "
                                               r"run \(changed: training\.learning_rate\)"):
        _train(sft_inputs, tmp_path / "second", "--save_steps", "1", "--learning_rate", "0.5",
               "--resume_from_checkpoint", str(ckpt))
    assert not (tmp_path / "second").exists()  # refused before anything was written


def test_resume_gives_the_same_losses(sft_inputs, tmp_path):
    straight, resumed = straight_and_resumed(partial(_train, sft_inputs), tmp_path, 3, "--max_steps", "6",
                                             "--save_steps", "3")
    a, b = _losses(straight), _losses(resumed)
    # the resumed history carries steps 1-3 from the checkpoint's trainer_state; 4-6 are computed anew
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert abs(a[step] - b[step]) <= 1e-5, (step, a[step], b[step])
    # steps 4-6 trained in both runs: equal losses are not two runs that both stood still
    at3 = tensors(resumed / "checkpoint-3" / "adapter_model.safetensors")
    for run in (straight, resumed):
        assert_moved(at3, tensors(run / "adapter_model.safetensors"), f"{run.name} after checkpoint-3")


def test_a_checkpoint_at_max_steps_is_not_trained_past_the_end(sft_inputs, tmp_path):
    """transformers resumes a checkpoint at max_steps one optimizer step past the end (it checks the bound only after
    a step): a finished run started again with --resume_from_checkpoint true is refused, its weights untouched."""
    out = _train(sft_inputs, tmp_path / "run", "--save_steps", "2")
    adapter = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(GleamConfigError, match=r"checkpoint-2 is at step 2, and max_steps is 2: that run has "
                                                r"finished training"):
        _train(sft_inputs, out, "--save_steps", "2", "--resume_from_checkpoint", "true")
    assert (out / "adapter_model.safetensors").read_bytes() == adapter
    assert sorted(_losses(out)) == [1, 2]


def test_a_signal_in_the_last_step_lets_the_run_finish():
    """SIGTERM during the last step: no interrupt checkpoint at max_steps (the resume of which would train one step
    too many); the run ends and saves as it was about to. Before the last step it stops and saves, as always."""
    from transformers import TrainerControl, TrainerState

    from gleamx.train.interrupt import SaveOnInterrupt

    for step, stops in ((4, False), (3, True)):
        callback = SaveOnInterrupt()
        callback.signum = 15
        control = callback.on_step_end(None, TrainerState(global_step=step, max_steps=4), TrainerControl())
        assert (control.should_training_stop, control.should_save, callback.stopped_at) == \
            ((True, True, 3) if stops else (False, False, None)), step


def test_merge_writes_weights_that_load_and_match_the_adapter(sft_inputs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from gleamx.data import load_samples
    from gleamx.eval.generate import prompt_texts
    from gleamx.hub.merge import merge_adapter
    from gleamx.models import load_model_and_processor
    from gleamx.prompts import sample_images

    out = _train(sft_inputs, tmp_path / "run")
    merged_dir = merge_adapter(str(sft_inputs["model"]), out, tmp_path / "merged").out
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    base, processor = load_model_and_processor(sft_inputs["model"])
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    s = load_samples(sft_inputs["data"], split="test").samples[:2]
    inputs = processor(text=prompt_texts(processor, s, "en", "label"), images=[sample_images(x) for x in s],
                       padding=True, return_tensors="pt")
    with torch.no_grad():
        a = merged(**inputs).logits
        b = peft_model(**inputs).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_full_finetune_freezes_the_vision_tower(sft_inputs, tmp_path):
    from safetensors.torch import load_file

    out = _train(sft_inputs, tmp_path / "full", "--use_peft", "false", "--learning_rate", "1e-3")
    trained = load_file(out / "model.safetensors")
    from safetensors.torch import load_file as lf

    original = lf(sft_inputs["model"] / "model.safetensors")
    vision = [k for k in original if "visual.blocks" in k]
    assert vision and all(torch.equal(original[k], trained[k]) for k in vision)
    lm = [k for k in original if k.endswith("layers.0.self_attn.q_proj.weight")]
    assert lm and not torch.equal(original[lm[0]], trained[lm[0]])


def test_vision_lora_with_activation_checkpointing(sft_inputs, tmp_path):
    """LoRA on the vision tower too (``lora_vision``), trained through activation (gradient) checkpointing."""
    from safetensors.torch import load_file

    out = _train(sft_inputs, tmp_path / "vlora", "--lora_vision", "true", "--activation_checkpointing", "true",
                 "--learning_rate", "1e-2")
    weights = load_file(out / "adapter_model.safetensors")
    vision_b = [k for k in weights if "visual.blocks" in k and "lora_B" in k]
    llm_b = [k for k in weights if "language_model" in k and "lora_B" in k]
    assert vision_b and llm_b
    # lora_B starts at zero: one that moved got gradients through the checkpointed vision blocks
    assert_lora_trained({k: weights[k] for k in vision_b})
    assert all(v == v for v in _losses(out).values())
    args = (out / "gleamx_args.yaml").read_text()
    assert "activation_checkpointing: true" in args and "lora_vision: true" in args


@pytest.mark.slow
def test_qlora_trains_on_cpu(sft_inputs, tmp_path):
    import bitsandbytes  # noqa: F401
    out = _train(sft_inputs, tmp_path / "qlora", "--load_in_4bit", "true", "--use_bnb_nested_quant", "true",
                 "--bnb_4bit_quant_type", "nf4", "--dtype", "bfloat16", "--bf16", "true")
    losses = _losses(out)
    assert len(losses) == 2 and all(v == v for v in losses.values())  # finite, not NaN
    assert_lora_trained(out)
    assert_gradients_flowed(out)
    assert "qlora" in (out / "README.md").read_text()
    with pytest.raises(GleamConfigError, match="QLoRA.*set bf16: true"):
        _train(sft_inputs, tmp_path / "qlora-fp32", "--load_in_4bit", "true", "--bf16", "false")


def test_bad_inputs_fail_before_training_with_one_line(sft_inputs, tmp_path):
    with pytest.raises(GleamDataError, match=r"nowhere: path: not found"):
        _train({**sft_inputs, "data": "nowhere"}, tmp_path / "a")
    # a sample with a broken image
    bad = tmp_path / "bad"
    shutil.copytree(sft_inputs["data"], bad)
    first = json.loads((bad / "train.jsonl").read_text().splitlines()[0])
    (bad / first["query_image"]).write_bytes(b"not a png")
    with pytest.raises(GleamDataError, match=r"train\.jsonl:1: query_image: cannot decode image"):
        _train({**sft_inputs, "data": bad}, tmp_path / "b")
    # an output dir that holds a different run
    _train(sft_inputs, tmp_path / "c")
    with pytest.raises(GleamConfigError, match=r"holds a run of `gleamx sft` with other settings \(changed: script.lang"):
        _train(sft_inputs, tmp_path / "c", "--lang", "zh")


def test_recipe_with_unknown_key_is_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY_RECIPE.read_text() + "\nlearning_rat: 1.0\n")
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "sft.py"), "--config", str(recipe)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1] == f"error: {recipe}: unknown recipe key(s): 'learning_rat' (did you mean 'learning_rate'?)"
    assert "Traceback" not in proc.stderr


def test_model_card_snippet_loads_the_run_and_answers_as_written(sft_inputs, tmp_path):
    """The card's Use snippet, run as written (beside a query and a satellite image), loads the adapter on its base
    and generates; the base model is code, not a link to a local folder; epochs are the ones trained; a push
    names the repo in the snippet instead of the local folder."""
    from gleamx.data import load_samples
    from gleamx.hub.push import plan_push

    out = _train(sft_inputs, tmp_path / "run")
    sample = load_samples(sft_inputs["data"], split="test").samples[0]
    work = tmp_path / "user"
    work.mkdir()
    printed = run_card_snippet(out / "README.md", work, {"query.jpg": sample.query_image,
                                                         "satellite.jpg": sample.satellite_image})
    assert printed.strip(), "the snippet printed no answer"
    card = (out / "README.md").read_text()
    assert f"Fine-tuned from `{sft_inputs['model']}`" in card and "](" + str(sft_inputs["model"]) not in card
    assert "| epochs trained |" in card and "| num_train_epochs |" not in card  # max_steps 2 stops mid-epoch
    pushed = plan_push(out, "me/gleamx-tiny").card
    assert "RUN = 'me/gleamx-tiny'" in pushed and f"RUN = '{out}'" not in pushed and f"RUN = '{out}'" in card


def test_push_dry_run_lists_files_and_card_without_token(sft_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    out = _train(sft_inputs, tmp_path / "run")
    (out / "checkpoint-9").mkdir()
    (out / "checkpoint-9" / "optimizer.pt").write_bytes(b"x")
    proc = subprocess.run([sys.executable, "-m", "gleamx.cli.main", "push", str(out), "--repo-id", "me/gleamx-tiny",
                           "--dry-run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = [ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("  ")]
    assert "adapter_model.safetensors" in listed and "README.md" in listed
    assert not any(f.startswith("checkpoint-") or f.endswith(".bin") for f in listed)
    assert "library_name: peft" in proc.stdout
    assert "hf_secret_value_123" not in proc.stdout + proc.stderr
    assert not any("hf_secret_value_123" in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("recipe", [f"recipes/{n}.yaml" for n in packaged_recipes.names("sft")])
# retrieval recipes: test_retrieval.py; eval configs: test_cli_configs.py; GRPO recipes: test_grpo.py; ablations:
# test_ablation.py
def test_every_recipe_parses(recipe):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    # GPU recipes ask for bf16 on a GPU; transformers refuses that at parse time on a CPU-only machine
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    script, training, model = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)),
                                           ["--config", str(ROOT / recipe), *cpu])
    assert model.model_name_or_path and script.dataset_name and training.output_dir
    assert training.assistant_only_loss  # loss on the answer only, in every recipe
    assert script.max_pixels, "every recipe bounds image tokens"


def test_model_card_carries_eval_results_as_model_index(sft_inputs, tmp_path):
    """A gleamx-eval results.json given as eval_results becomes model-index metadata in the card."""
    from huggingface_hub import ModelCard

    from gleamx.eval.run import EvalConfig, run_eval

    out = _train(sft_inputs, tmp_path / "run")
    ev = tmp_path / "eval"
    run_eval(EvalConfig(data=str(sft_inputs["data"]), model=str(sft_inputs["model"]), adapter=str(out), task="label",
                        max_new_tokens=4, limit=6, output=str(ev), bootstrap=0))
    out2 = _train(sft_inputs, tmp_path / "run2", "--eval_results", str(ev / "results.json"))
    card = ModelCard.load(out2 / "README.md")
    results = json.loads((ev / "results.json").read_text())
    names = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert names["Match accuracy"] == round(100 * results["accuracy"], 2)
    assert "Accuracy on non-matching pairs" in names and "## Evaluation" in card.text


def test_peft_and_quantization_configs_start_from_trls_helpers(sft_inputs, tmp_path):
    """Every LoRA and bitsandbytes option of TRL's ModelConfig reaches the built configs (they start from TRL's
    get_peft_config / get_quantization_config); gleamx only adds its targets, the merger and the skip list."""
    import torch

    from gleamx.models import load_model_and_processor
    from gleamx.train.arguments import LLM_LORA_TARGETS
    from gleamx.train.peft_configs import lora_config, quantization_config

    script, _, model_args = _parse("--output_dir", str(tmp_path / "o"), "--lora_target_parameters",
                                   "mlp.experts.down_proj", "--load_in_4bit", "true", "--bnb_4bit_quant_storage",
                                   "uint8", "--use_rslora", "true", "--lora_r", "4", "--dtype", "bfloat16")
    model, _ = load_model_and_processor(sft_inputs["model"])
    lora = lora_config(model_args, script, model)
    assert lora.target_parameters == ["mlp.experts.down_proj"] and lora.use_rslora and lora.r == 4
    assert lora.target_modules == LLM_LORA_TARGETS and "merger" in lora.modules_to_save
    quant = quantization_config(model_args)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_storage == torch.uint8
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16  # the weights' dtype, as TRL does ...
    assert quant.llm_int8_skip_modules == ["lm_head", "model.visual"]
    for dtype, compute in (("float32", torch.float32), ("auto", torch.bfloat16)):  # ... and "auto" is bf16
        _, _, args = _parse("--output_dir", str(tmp_path / "o"), "--load_in_4bit", "true", "--dtype", dtype)
        assert quantization_config(args).bnb_4bit_compute_dtype == compute, dtype


def test_full_finetune_resume_gives_the_same_losses(sft_inputs, tmp_path):
    """A full fine-tune's checkpoint holds ``model.safetensors`` in Qwen-VL's saved layout, which transformers'
    resume loads with ``load_state_dict(strict=False)``: were nothing to load, the resumed run would go on from the
    base weights (with the checkpoint's optimizer) and its losses from step 4 on would differ."""
    full = ("--use_peft", "false", "--learning_rate", "1e-3", "--max_steps", "6", "--save_steps", "3")
    straight, resumed = straight_and_resumed(partial(_train, sft_inputs), tmp_path, 3, *full)
    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert abs(a[step] - b[step]) <= 1e-5, (step, a[step], b[step])
    end = tensors(straight / "model.safetensors")
    again = tensors(resumed / "model.safetensors")
    assert end.keys() == again.keys() and all(torch.allclose(end[k], again[k], atol=1e-6) for k in end)
    assert_moved(tensors(resumed / "checkpoint-3" / "model.safetensors"), again, "resumed after checkpoint-3")
