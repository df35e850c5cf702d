"""SFT against hostile but realistic use: user files, changed settings, bad numbers, Ctrl-C and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gleamx.errors import GleamConfigError

from cli_run import script_entry

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, models_tiny_dir):
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("sft_hostile")
    synthesize(root / "data", n=40, seed=11, image_size=64)
    return {"data": root / "data", "model": models_tiny_dir("qwen2_5_vl")}


def _args(inputs, out: Path, *overrides: str):
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    return parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
        "--config", str(RECIPE), "--model_name_or_path", str(inputs["model"]), "--dataset_name", str(inputs["data"]),
        "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no", "--per_device_train_batch_size", "2",
        "--logging_steps", "1", *overrides])


def _train(inputs, out: Path, *overrides: str) -> Path:
    from gleamx.train.sft import run_sft

    return run_sft(*_args(inputs, out, *overrides))


def test_user_files_in_output_dir_are_never_overwritten(inputs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes\n")
    (out / "log_history.json").write_text("[1, 2, 3]\n")
    with pytest.raises(GleamConfigError, match=r"holds files gleamx did not write \(e.g. README.md\).*overwrite"):
        _train(inputs, out)
    with pytest.raises(GleamConfigError, match=r"holds files gleamx did not write \(e.g. README.md\) and this "
                                               r"command needs a folder of its own"):
        _train(inputs, out, "--overwrite_output_dir", "true")  # the Trainer would write over README.md
    assert (out / "README.md").read_text() == "my notes\n" and (out / "log_history.json").read_text() == "[1, 2, 3]\n"


def test_a_finished_run_rerun_with_other_settings_is_refused(inputs, tmp_path):
    out = _train(inputs, tmp_path / "run", "--hub_token", "hf_secret_never_written")
    adapter = (out / "adapter_model.safetensors").read_bytes()
    assert "hf_secret_never_written" not in (out / "gleamx_run.json").read_text()
    for override in (["--lr_scheduler_type", "linear"], ["--warmup_steps", "1"], ["--weight_decay", "0.1"],
                     ["--adam_beta2", "0.95"], ["--max_grad_norm", "0.5"]):
        with pytest.raises(GleamConfigError, match=f"holds a run of `gleamx sft` with other settings .*training.{override[0][2:]}"):
            _train(inputs, out, *override)
    assert (out / "adapter_model.safetensors").read_bytes() == adapter
    # Where and how often a run logs or saves is not "another run".
    _train(inputs, out, "--logging_steps", "2", "--report_to", "none", "--dataloader_num_workers", "0")


@pytest.mark.parametrize(("override", "message"), [
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size: expected an integer >= 1, got 0"),
    (["--learning_rate", "-1"], "learning_rate: expected a number > 0, got -1.0"),
    (["--max_train_samples", "0"], "max_train_samples: expected an integer >= 1"),
    (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps: expected an integer >= 1"),
    (["--max_pixels", "-5"], "max_pixels: expected an integer >= 1"),
    (["--lora_r", "0"], "lora_r: expected an integer >= 1"),
])
def test_bad_numbers_are_one_line(inputs, tmp_path, override, message):
    from gleamx.train.sft import run_sft

    with pytest.raises(GleamConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_sft(*_args(inputs, tmp_path / "o", *override))


def test_output_dir_that_is_a_file_is_one_line(inputs, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(GleamConfigError, match="output_dir: .* is a file"):
        _train(inputs, f)


def test_bad_numbers_on_the_command_line_are_one_line_without_traceback(inputs, tmp_path, gleamx_cli):
    r = gleamx_cli("--config", RECIPE, "--model_name_or_path", inputs["model"], "--dataset_name", inputs["data"],
                   "--output_dir", tmp_path / "o", "--per_device_train_batch_size", "0",
                   entry=script_entry(ROOT / "recipes" / "sft.py"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: recipe: per_device_train_batch_size: expected an integer >= 1, got 0" in r.stderr


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_saves_a_checkpoint_and_resumes_to_the_same_losses(inputs, tmp_path, sig):
    steps = 60
    cmd = [sys.executable, str(ROOT / "recipes" / "sft.py"), "--config", str(RECIPE),
           "--model_name_or_path", str(inputs["model"]), "--dataset_name", str(inputs["data"]),
           "--max_steps", str(steps), "--save_strategy", "no", "--per_device_train_batch_size", "2",
           "--logging_steps", "1", "--report_to", "none"]
    straight = tmp_path / "straight"
    subprocess.run([*cmd, "--output_dir", str(straight)], check=True, capture_output=True, timeout=600)

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*cmd, "--output_dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    # The Trainer prints one "{'loss': ...}" line per step: signal during the step after the third one, whatever
    # the machine's speed (a fixed sleep lets a fast machine finish all steps first).
    logged = 0
    for line in proc.stdout:
        logged += "'loss'" in line
        if logged >= 3:
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and "--resume_from_checkpoint true" in err
    ckpts = sorted(out.glob("checkpoint-*"))
    assert len(ckpts) == 1, err[-2000:]
    stopped = int(ckpts[0].name.split("-")[1])
    assert 0 < stopped < steps, "the run was interrupted mid-way"
    assert not (out / "adapter_model.safetensors").exists()  # an interrupted run is not a finished one

    r = subprocess.run([*cmd, "--output_dir", str(out), "--resume_from_checkpoint", "true"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _losses(straight), _losses(out)
    assert sorted(b) == list(range(1, steps + 1))
    for step in range(stopped + 1, steps + 1):
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
