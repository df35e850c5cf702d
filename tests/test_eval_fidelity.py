"""Evaluation sees what training saw: the run's processor (pixel budget), and gleamx's own decoding.

A: ``--adapter RUN`` evaluates with the run's saved processor, so image tokens per sample equal training's.
B: one explicit greedy config for every backend; a checkpoint's ``generation_config.json`` (Qwen2.5-VL:
``do_sample: true``, ``repetition_penalty: 1.05``, ...) never leaks into the answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamConfigError

ARCH = "qwen2_5_vl"
TRAIN_MAX_PIXELS = 6272  # 8 x 28 x 28: well under the 128-px synthetic tiles, so the budget shows in the token count


@pytest.fixture(scope="module")
def fidelity_base(request) -> Path:
    """A tiny Qwen2.5-VL built from the real checkpoint's files (processor, template, generation config)
    when gleamx.models.real_tiny exists, else gleamx's plain tiny model."""
    try:
        get = request.getfixturevalue("models_real_tiny_dir")
    except pytest.FixtureLookupError:
        get = request.getfixturevalue("models_tiny_dir")
    return get(ARCH)


@pytest.fixture(scope="module")
def fidelity_data(synth_dir) -> Path:
    return synth_dir(40, seed=7)


def _sft(base: Path, data: Path, out: Path, *, max_pixels: int, n: int = 2) -> Path:
    """One LoRA step on the first ``n`` training samples (English, label task): one batch holds them all."""
    from trl import ModelConfig, SFTConfig

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.sft import run_sft

    script = GleamScriptArguments(dataset_name=str(data), lang="en", task="label", max_pixels=max_pixels,
                                  max_train_samples=n)
    training = SFTConfig(output_dir=str(out), max_steps=1, per_device_train_batch_size=n, logging_steps=1,
                         save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True, bf16=False,
                         assistant_only_loss=True, max_length=None, learning_rate=1e-3, seed=0,
                         dataloader_num_workers=0)
    model_args = ModelConfig(model_name_or_path=str(base), dtype="float32", use_peft=True, lora_r=8, lora_alpha=16,
                             lora_dropout=0.0)
    return run_sft(script, training, model_args)


@pytest.fixture(scope="module")
def fidelity_run(fidelity_base, fidelity_data, tmp_path_factory) -> Path:
    return _sft(fidelity_base, fidelity_data, tmp_path_factory.mktemp("fidelity_run") / "run",
                max_pixels=TRAIN_MAX_PIXELS)


def _image_tokens_per_sample(processor, samples, image_token_id: int) -> list[int]:
    """Image placeholder tokens per sample, counted in the processor's own output."""
    from gleamx.eval.generate import prompt_texts
    from gleamx.prompts import sample_images

    out = []
    for s in samples:
        inputs = processor(text=prompt_texts(processor, [s], "en", "label"), images=[sample_images(s)],
                           return_tensors="pt")
        out.append(int((inputs["input_ids"] == image_token_id).sum()))
    return out


# --- A: the run's processor ------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_with_only_adapter_sees_the_image_tokens_training_saw(fidelity_base, fidelity_data, fidelity_run,
                                                                   tmp_path, capsys):
    from transformers import AutoConfig

    from gleamx.data import load_samples
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.models.load import load_processor

    trained = [h for h in json.loads((fidelity_run / "log_history.json").read_text()) if "loss" in h]
    assert len(trained) == 1  # one step, one batch: the two samples below
    per_batch = trained[0]["image_tokens_per_batch"]

    r = run_eval(EvalConfig(data=str(fidelity_data), split="train", limit=2, model=str(fidelity_base),
                            adapter=str(fidelity_run), task="label", max_new_tokens=2, dtype="float32",
                            output=str(tmp_path / "eval"), bootstrap=0, no_explanation_metrics=True)).results
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    images = saved["images"]
    assert images == r["images"]
    assert images["processor"] == str(fidelity_run) and images["max_pixels"] == TRAIN_MAX_PIXELS
    assert images["image_tokens_per_sample"] * 2 == per_batch  # what the training step counted
    assert "override" not in capsys.readouterr().out  # no pixel flags, nothing overridden

    # The same count, read off the processed inputs; the base's own processor would have made more tokens.
    samples = load_samples(fidelity_data, split="train").samples[:2]
    image_token_id = AutoConfig.from_pretrained(fidelity_base).image_token_id
    from transformers import AutoProcessor

    run_counts = _image_tokens_per_sample(AutoProcessor.from_pretrained(fidelity_run), samples, image_token_id)
    base_counts = _image_tokens_per_sample(load_processor(fidelity_base), samples, image_token_id)
    assert sum(run_counts) == per_batch < sum(base_counts)
    assert "image tokens per sample" in (tmp_path / "eval" / "results.md").read_text()


@pytest.mark.slow
def test_pixel_flags_still_override_the_runs_budget_and_say_so(fidelity_base, fidelity_data, fidelity_run,
                                                               tmp_path, capsys):
    from gleamx.eval.run import EvalConfig, run_eval

    r = run_eval(EvalConfig(data=str(fidelity_data), split="train", limit=2, model=str(fidelity_base),
                            adapter=str(fidelity_run), task="label", max_new_tokens=2, dtype="float32",
                            max_pixels=4 * TRAIN_MAX_PIXELS, output=str(tmp_path / "eval"), bootstrap=0,
                            no_explanation_metrics=True)).results
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "override" in line]
    assert len(notes) == 1 and str(fidelity_run) in notes[0] and f"max {TRAIN_MAX_PIXELS}" in notes[0]
    assert r["images"]["max_pixels"] == 4 * TRAIN_MAX_PIXELS


@pytest.mark.slow
def test_localize_with_adapter_uses_the_runs_processor(fidelity_base, fidelity_data, fidelity_run, tmp_path):
    from gleamx.retrieval.encoder import RetrievalEncoder
    from gleamx.retrieval.localize import LocalizeConfig, localize

    enc = tmp_path / "enc"
    RetrievalEncoder.tiny(32).save_pretrained(enc)
    r = localize(LocalizeConfig(encoder=str(enc), model=str(fidelity_base), adapter=str(fidelity_run),
                                data=str(fidelity_data), split="test", k=2, limit=2, max_new_tokens=2, dtype="float32",
                                output=str(tmp_path / "loc"))).results
    assert r["images"]["processor"] == str(fidelity_run) and r["images"]["max_pixels"] == TRAIN_MAX_PIXELS
    verify = json.loads((tmp_path / "loc" / "verify" / "results.json").read_text())
    assert verify["images"] == r["images"] and verify["generation"]["repetition_penalty"] == 1.0


def test_localize_cli_passes_pixel_and_decoding_flags(monkeypatch):
    import gleamx.retrieval.localize as loc
    from gleamx.cli.main import main

    seen = {}

    def fake(cfg):
        seen["cfg"] = cfg
        return loc.LocalizeResult({"n_query": 0, "k": 1, "n_gallery": 0, "recall_at_k": 0.0, "R@1_retrieval": 0.0,
                                   "R@1_verified": 0.0}, Path(cfg.output))

    monkeypatch.setattr(loc, "localize", fake)
    assert main(["localize", "--encoder", "e", "--model", "m", "--data", "d", "--output", "o", "--min-pixels", "3136",
                 "--max-pixels", "50176", "--repetition-penalty", "1.05"]) == 0
    cfg = seen["cfg"]
    assert (cfg.min_pixels, cfg.max_pixels, cfg.repetition_penalty) == (3136, 50176, 1.05)


# --- B: gleamx's own decoding ----------------------------------------------------------------------------


QWEN25_GENERATION = {"do_sample": True, "temperature": 0.1, "top_k": 1, "top_p": 0.001, "repetition_penalty": 1.05}


@pytest.fixture(scope="module")
def sampling_checkpoint(fidelity_base, tmp_path_factory) -> Path:
    """The tiny model with Qwen2.5-VL's shipped sampling settings, its repetition penalty raised to 1.5 so that
    inheriting it would visibly change a random model's greedy answers."""
    out = tmp_path_factory.mktemp("sampling_ckpt") / "model"
    shutil.copytree(fidelity_base, out)
    path = out / "generation_config.json"
    gen = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**gen, **QWEN25_GENERATION, "repetition_penalty": 1.5}, indent=2))
    return out


@torch.inference_mode()
def _argmax_answers(model, processor, samples, n_new: int, stop_ids: list[int]) -> list[str]:
    """Plain greedy decoding, one sample at a time, the whole sequence re-run per token: no generate(), no
    logits processors, no checkpoint settings."""
    from gleamx.eval.generate import prompt_texts
    from gleamx.prompts import sample_images

    answers = []
    for s in samples:
        inputs = processor(text=prompt_texts(processor, [s], "en", "label"), images=[sample_images(s)],
                           return_tensors="pt")
        ids, new = inputs["input_ids"], []
        for _ in range(n_new):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=inputs["pixel_values"],
                           image_grid_thw=inputs["image_grid_thw"]).logits[0, -1]
            tok = int(logits.argmax())
            if tok in stop_ids:
                break
            new.append(tok)
            ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
        answers.append(processor.tokenizer.decode(new, skip_special_tokens=True).strip())
    return answers


def _predictions(out: Path) -> dict[str, str]:
    return {r["id"]: r["prediction"] for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}


@pytest.mark.slow
def test_checkpoint_sampling_settings_do_not_leak_into_answers(sampling_checkpoint, fidelity_data, tmp_path):
    from gleamx.data import load_samples
    from gleamx.eval.decoding import checkpoint_stop_token_ids
    from gleamx.eval.generate import prompt_texts
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.models import load_model_and_processor
    from gleamx.prompts import sample_images

    n_new, limit = 6, 3
    base = dict(data=str(fidelity_data), split="test", limit=limit, model=str(sampling_checkpoint), task="label",
                max_new_tokens=n_new, dtype="float32", bootstrap=0, no_explanation_metrics=True)
    r = run_eval(EvalConfig(**base, output=str(tmp_path / "default"))).results
    samples = load_samples(fidelity_data, split="test").samples[:limit]
    model, processor = load_model_and_processor(sampling_checkpoint, dtype="float32")
    model.eval()
    stop_ids = checkpoint_stop_token_ids(str(sampling_checkpoint), processor.tokenizer)
    expected = _argmax_answers(model, processor, samples, n_new, stop_ids)
    got = _predictions(tmp_path / "default")
    assert [got[s.id] for s in samples] == expected

    # The generation config gleamx recorded is the one it used: greedy, neutral, penalty 1.0.
    assert r["generation"] == {"do_sample": False, "num_beams": 1, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                               "repetition_penalty": 1.0, "max_new_tokens": n_new, "stop_token_ids": stop_ids}

    # What generate() makes when left to the checkpoint (the old gleamx call) differs: the test can tell.
    processor.tokenizer.padding_side = "left"
    inputs = processor(text=prompt_texts(processor, samples, "en", "label"),
                       images=[sample_images(s) for s in samples], padding=True, return_tensors="pt")
    with torch.inference_mode():
        inherited = model.generate(**inputs, do_sample=False, max_new_tokens=n_new,
                                   pad_token_id=processor.tokenizer.pad_token_id)
    inherited_text = [t.strip() for t in processor.tokenizer.batch_decode(inherited[:, inputs["input_ids"].shape[1]:],
                                                                          skip_special_tokens=True)]
    assert inherited_text != expected

    # --repetition-penalty 1.5 asks for the checkpoint's penalty explicitly: then the answers are those.
    run_eval(EvalConfig(**base, repetition_penalty=1.5, output=str(tmp_path / "penalty")))
    got = _predictions(tmp_path / "penalty")
    assert [got[s.id] for s in samples] == inherited_text


def test_repetition_penalty_is_part_of_the_generation_key_and_flag(tmp_path):
    from gleamx.cli.main import parse_command
    from gleamx.eval.run import EvalConfig, run_eval

    cfg = EvalConfig(data="d", model="m")
    assert cfg.generation_config() == {"do_sample": False, "num_beams": 1, "temperature": 1.0, "top_p": 1.0,
                                       "top_k": 0, "repetition_penalty": 1.0, "max_new_tokens": 256}
    assert EvalConfig(data="d", model="m", repetition_penalty=1.05).generation_key() != cfg.generation_key()
    assert EvalConfig(data="d", model="m", max_new_tokens=10).generation_key() != cfg.generation_key()
    assert EvalConfig(data="d", model="m", batch_size=1).generation_key() == cfg.generation_key()
    assert parse_command("eval", ["--model", "m", "--data", "d", "--output", "o", "--repetition-penalty", "1.05"]
                         ).repetition_penalty == 1.05
    with pytest.raises(GleamConfigError, match="--repetition-penalty: expected a positive number"):
        run_eval(EvalConfig(data=str(tmp_path), model="m", repetition_penalty=0, output=str(tmp_path / "o")))


def test_hf_generation_config_overrides_every_checkpoint_sampling_field():
    """transformers fills only the fields gleamx leaves unset from the checkpoint; gleamx leaves none of them unset."""
    from transformers import GenerationConfig

    from gleamx.eval.decoding import greedy_decoding, hf_generation_config, vllm_sampling_kwargs

    ours = hf_generation_config(greedy_decoding(12), stop_ids=[7, 8], pad_token_id=0)
    ours.update(**GenerationConfig(**QWEN25_GENERATION).to_dict(), defaults_only=True)  # what generate() does
    assert (ours.do_sample, ours.temperature, ours.top_k, ours.top_p, ours.repetition_penalty, ours.num_beams) == \
        (False, 1.0, 0, 1.0, 1.0, 1)
    assert ours.eos_token_id == [7, 8] and ours.max_new_tokens == 12
    assert vllm_sampling_kwargs(greedy_decoding(12, 1.1), stop_ids=[7, 8]) == {
        "n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.1, "max_tokens": 12,
        "stop_token_ids": [7, 8]}
