"""The command lines a user types: synth -> validate, convert, models tiny, demo; and the installed entry points.

Commands run in this process (``gleamx_cli``); one test starts each installed console script in a fresh
interpreter, as a user's shell does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def test_synth_then_validate_reports_no_problems_and_same_seed_same_bytes(tmp_path, gleamx_cli):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = gleamx_cli("data", "synth", "--out", out, "--n", "40", "--seed", "7")
        assert proc.returncode == 0, proc.stderr
        assert "wrote 40 samples" in proc.stdout
    for split in ("train", "val", "test"):
        assert (a / f"{split}.jsonl").read_bytes() == (b / f"{split}.jsonl").read_bytes()
    proc = gleamx_cli("data", "validate", a)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "40 valid of 40 records, 0 problem(s)" in proc.stdout
    assert "by view" in proc.stdout and "language" in proc.stdout


def test_convert_round_trip_through_the_cli(tmp_path, gleamx_cli):
    data = tmp_path / "d"
    assert gleamx_cli("data", "synth", "--out", data, "--n", "20", "--seed", "1").returncode == 0
    sg = tmp_path / "lf" / "train.json"
    proc = gleamx_cli("data", "convert", data, "--split", "train", "--to", "sharegpt", "--out", sg)
    assert proc.returncode == 0, proc.stderr
    back = tmp_path / "back" / "train.jsonl"
    assert gleamx_cli("data", "convert", sg, "--to", "jsonl", "--out", back).returncode == 0
    from gleamx.data import load_samples

    assert load_samples(back).samples == load_samples(data, split="train").samples


def test_models_tiny_and_bad_arguments(tmp_path, gleamx_cli):
    proc = gleamx_cli("models", "tiny", "--arch", "qwen2_vl", "--out", tmp_path / "m")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m" / "config.json").is_file()
    bad = gleamx_cli("data", "synth", "--out", tmp_path / "x", "--n", "0")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --n")


def test_installed_entry_points_start_in_a_fresh_interpreter(tmp_path):
    """`gleamx` and `gleamx-eval` as pip installed them: a command that works and a one-line refusal."""
    out = tmp_path / "d"
    ok = subprocess.run([str(BIN / "gleamx"), "data", "synth", "--out", str(out), "--n", "8", "--seed", "0"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "wrote 8 samples" in ok.stdout, ok.stderr[-2000:]
    bad = subprocess.run([str(BIN / "gleamx-eval"), "--model", "x", "--predictions", "y", "--data", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "Traceback" not in bad.stderr


def test_commands_are_quiet_by_default_and_verbose_shows_everything(monkeypatch, tmp_path, capsys):
    """`gleamx sft --help` imports TRL, PEFT, bitsandbytes and DeepSpeed: none of their import-time warnings
    (bitsandbytes' CPU kernel download, DeepSpeed's "Setting accelerator to CPU") reaches the user."""
    import logging

    from gleamx.console import quiet_third_party

    r = subprocess.run([str(BIN / "gleamx"), "sft", "--help"], capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k not in ("GLEAMX_VERBOSE", "ACCELERATE_USE_DEEPSPEED")})
    assert r.returncode == 0 and "usage: gleamx sft" in r.stdout, r.stderr[-2000:]
    assert r.stderr == ""
    for noise in ("gemm_4bit_forward", "Setting accelerator", "[WARNING]"):  # DeepSpeed logs to stdout
        assert noise not in r.stdout, noise
    # what the filters let through: errors always; DeepSpeed's warnings when the launch uses DeepSpeed
    deepspeed = logging.getLogger("DeepSpeed")
    for env, kept in (({}, False), ({"ACCELERATE_USE_DEEPSPEED": "true"}, True), ({"GLEAMX_VERBOSE": "1"}, True)):
        for f in list(deepspeed.filters):
            deepspeed.removeFilter(f)
        monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
        monkeypatch.delenv("GLEAMX_VERBOSE", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        quiet_third_party()
        record = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, "Setting accelerator to CPU", None, None)
        assert deepspeed.filter(record) == kept, env
        assert deepspeed.filter(logging.LogRecord("DeepSpeed", logging.ERROR, __file__, 1, "boom", None, None))
    # --verbose anywhere on a gleamx line: taken off the command's arguments, set for the process and its children
    from gleamx.cli.main import main

    monkeypatch.setenv("GLEAMX_VERBOSE", "0")  # restored after the test
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "4", "--verbose"]) == 0
    assert os.environ["GLEAMX_VERBOSE"] == "1" and "wrote 4 samples" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.xdist_group("demo")  # the run is shared with tests/test_app.py, which serves it
def test_demo_runs_end_to_end(demo_workdir):
    work, stdout = demo_workdir
    out = work / "demo-qwen2_5_vl-s0"
    for p in ("data/train.jsonl", "llamafactory/gleamx_train.json", "models/tiny-qwen2_5_vl/config.json",
              "eval/untrained/results.json", "sft/adapter_model.safetensors", "sft/README.md",
              "eval/sft/report.html", "retrieval/model.safetensors", "retrieval/results.json",
              "localize/localize_results.json", "localize/ranked.jsonl", "localize/verify/report.html"):
        assert (out / p).is_file(), p
    assert "fine-tuned: accuracy" in stdout and "Outputs:" in stdout
    said = " ".join(stdout.split())
    assert f"Open {out / 'eval' / 'sft' / 'report.html'} in a browser" in said  # the report a person reads
    assert "answers at random" not in said and "SFT run saved to" in said and "retrieval encoder run saved to" in said
    from gleamx.demo import finished_demo

    record = finished_demo(out)  # written last: it says the demo finished (gleamx app reuses such a folder)
    assert record["sft"] == out / "sft" and record["model"] == out / "models" / "tiny-qwen2_5_vl"
    assert set(record) == {"data", "sharegpt", "model", "eval", "sft", "eval_sft", "retrieval", "localize"}


def test_an_unfinished_demo_folder_is_not_taken_for_a_finished_one(tmp_path):
    from gleamx.demo import OUTPUTS_FILE, finished_demo

    assert finished_demo(tmp_path) is None  # killed before the record was written
    (tmp_path / OUTPUTS_FILE).write_text('{"sft": "x"')  # or while writing it
    assert finished_demo(tmp_path) is None


def test_top_level_help_names_every_command(gleamx_cli):
    from gleamx.cli.main import COMMANDS

    r = gleamx_cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())  # argparse wraps lines
    for name in COMMANDS:
        head, _, leaf = name.partition(" ")
        assert (f"{head} " in text and leaf in text) if leaf else f" {head}" in text, name
    assert "data synth|validate|convert|cvgl|pairs|push" in text and "review serve|export|import" in text
