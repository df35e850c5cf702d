"""One adapter loader for gleamx-eval, localize and merge: every tensor applied, old layouts renamed,
misfits refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamModelError

ARCH = "qwen2_5_vl"
# Names, not a regex: what adapters made with other tools (and transformers 4) use; in Qwen2.5-VL they also
# match the vision blocks' MLPs, so both the language model and the vision tower carry LoRA tensors.
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _make_adapter(model, out: Path) -> Path:
    """A LoRA adapter with non-zero B (so it changes the logits) and a trained-in-full merger, saved to ``out``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, modules_to_save=["merger"], init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a merger that differs from the base's, as after training
        for p in peft_model.base_model.model.model.visual.merger.modules_to_save["default"].parameters():
            p.add_(0.01)
    peft_model.save_pretrained(out)
    return out


def _to_old_layout(adapter: Path, out: Path) -> Path:
    """The same adapter with transformers 4's Qwen-VL key names (``model.layers.*``, ``visual.*``)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, out)
    weights = load_file(adapter / "adapter_model.safetensors")
    old = {}
    for key, value in weights.items():
        key = key.replace("base_model.model.model.language_model.", "base_model.model.model.")
        key = key.replace("base_model.model.model.visual.", "base_model.model.visual.")
        old[key] = value
    assert set(old) != set(weights)
    save_file(old, out / "adapter_model.safetensors", metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def adapters(models_tiny_dir, tmp_path_factory):
    from gleamx.models import load_model_and_processor

    root = tmp_path_factory.mktemp("adapters")
    base_dir = models_tiny_dir(ARCH)
    model, processor = load_model_and_processor(base_dir, dtype="float32")
    new = _make_adapter(model, root / "new")
    return {"base": base_dir, "new": new, "old": _to_old_layout(new, root / "old"), "processor": processor}


def _inputs(processor, data: Path):
    from gleamx.data import load_samples
    from gleamx.eval.generate import prompt_texts
    from gleamx.prompts import sample_images

    s = load_samples(data).samples[:2]
    return processor(text=prompt_texts(processor, s, "en", "label"), images=[sample_images(x) for x in s],
                     padding=True, return_tensors="pt")


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def _fresh(base: Path):
    from gleamx.models import load_model_and_processor

    return load_model_and_processor(base, dtype="float32", with_processor=False)[0].eval()


def test_old_layout_adapter_loads_with_every_tensor_applied(adapters, data_small_jsonl):
    from peft import PeftModel
    from safetensors.torch import load_file

    from gleamx.models.adapter import load_adapter

    inputs = _inputs(adapters["processor"], data_small_jsonl)
    reference = PeftModel.from_pretrained(_fresh(adapters["base"]), str(adapters["new"])).eval()
    want = _logits(reference, inputs)
    assert not torch.allclose(want, _logits(_fresh(adapters["base"]), inputs))  # the adapter changes the output

    normal = load_adapter(_fresh(adapters["base"]), adapters["new"])  # a normal adapter loads as before
    assert torch.equal(_logits(normal, inputs), want)
    old = load_adapter(_fresh(adapters["base"]), adapters["old"])
    assert torch.equal(_logits(old, inputs), want)
    # every saved tensor is in the model: LoRA on the language model and the vision tower, and the merger
    saved = load_file(adapters["new"] / "adapter_model.safetensors")
    params = dict(old.named_parameters())
    lora_keys = [k for k in saved if "lora_" in k]
    assert any("visual.blocks" in k for k in lora_keys) and any("language_model" in k for k in lora_keys)
    for key in lora_keys:
        assert torch.equal(params[key.replace(".weight", ".default.weight")], saved[key]), key


def test_peft_alone_does_not_apply_an_old_layout_adapter(adapters, data_small_jsonl):
    """Why gleamx has its own loader: PEFT maps none of the old keys (0 LoRA tensors, or a KeyError for the merger)."""
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(_fresh(adapters["base"]), str(adapters["old"])).eval()
    except KeyError:
        return
    inputs = _inputs(adapters["processor"], data_small_jsonl)
    want = _logits(PeftModel.from_pretrained(_fresh(adapters["base"]), str(adapters["new"])).eval(), inputs)
    assert not torch.allclose(_logits(model, inputs), want)


def test_adapter_of_another_width_is_refused_in_one_line(adapters, tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from gleamx.cli.main import main
    from gleamx.models.adapter import load_adapter

    config = AutoConfig.from_pretrained(adapters["base"])
    config.text_config.intermediate_size *= 2  # the MLP's LoRA tensors change shape, attention's do not
    other = AutoModelForImageTextToText.from_config(config).eval()
    wide = _make_adapter(other, tmp_path / "wide")
    with pytest.raises(GleamModelError) as err:
        load_adapter(_fresh(adapters["base"]), wide)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"--adapter {wide}: ")
    matched, total = (int(x) for x in msg.split(": ", 1)[1].split(" adapter tensors")[0].split(" of "))
    assert 0 < matched < total
    assert msg.endswith("adapter tensors match the model's modules (adapter made for another model or layout?)")

    # gleamx merge refuses it the same way: one line, no traceback
    assert main(["merge", "--base", str(adapters["base"]), "--adapter", str(wide), "--out", str(tmp_path / "m")]) == 2
    err_text = capsys.readouterr().err
    errors = [line for line in err_text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == f"error: {msg}" and "Traceback" not in err_text


def test_adapter_made_for_another_base_name_warns(adapters, tmp_path, capsys):
    from gleamx.models.adapter import load_adapter

    moved = shutil.copytree(adapters["new"], tmp_path / "a")
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "someone/other-vl"}))
    load_adapter(_fresh(adapters["base"]), moved)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "'someone/other-vl'" in lines[0] and str(moved) in lines[0]
    load_adapter(_fresh(adapters["base"]), adapters["new"])  # its own base: no warning
    assert "warning:" not in capsys.readouterr().out


def test_merge_and_eval_load_old_layout_adapters_like_new_ones(adapters, data_small_jsonl, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.hub.merge import merge_adapter

    inputs = _inputs(adapters["processor"], data_small_jsonl)
    want = _logits(PeftModel.from_pretrained(_fresh(adapters["base"]), str(adapters["new"])).eval(), inputs)
    merged = merge_adapter(str(adapters["base"]), adapters["old"], tmp_path / "merged", dtype="float32").out
    got = _logits(AutoModelForImageTextToText.from_pretrained(merged, dtype=torch.float32).eval(), inputs)
    assert torch.allclose(got, want, atol=1e-4)

    answers = []
    for name in ("new", "old"):
        run_eval(EvalConfig(data=str(data_small_jsonl), split=None, model=str(adapters["base"]),
                            adapter=str(adapters[name]), task="label", max_new_tokens=4, dtype="float32",
                            output=str(tmp_path / name), bootstrap=0, no_explanation_metrics=True))
        lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
        answers.append([json.loads(x)["prediction"] for x in lines])
    assert answers[0] == answers[1]


def test_adapter_without_config_is_one_line(adapters, tmp_path):
    from gleamx.errors import GleamConfigError
    from gleamx.models.adapter import load_adapter

    with pytest.raises(GleamConfigError, match=r"^--adapter: .* has no adapter_config.json \(expected a PEFT adapter"):
        load_adapter(_fresh(adapters["base"]), tmp_path)


def test_adapter_folder_that_is_not_there_is_not_found(adapters, tmp_path):
    """A mistyped adapter folder says ``not found``, not what a folder that is not there lacks."""
    from gleamx.errors import GleamConfigError
    from gleamx.models.adapter import load_adapter

    with pytest.raises(GleamConfigError, match=r"^--adapter: .*outputs/typo: not found \(expected a PEFT adapter"):
        load_adapter(_fresh(adapters["base"]), tmp_path / "outputs" / "typo")
