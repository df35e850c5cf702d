"""The command lines a user types: synth -> validate, convert, models tiny, demo; and the installed entry points.

Commands run in this process (``gleamx_cli``); one test starts each installed console script in a fresh
interpreter, as a user's shell does.
"""

from __future__ import annotations

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


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, gleamx_cli):
    out = tmp_path / "demo"
    proc = gleamx_cli("demo", "--out", out, "--n", "48")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for p in ("data/train.jsonl", "llamafactory/gleamx_train.json", "models/tiny-qwen2_5_vl/config.json",
              "eval/untrained/results.json", "sft/adapter_model.safetensors", "sft/README.md",
              "eval/sft/report.html", "gleamc/model.safetensors", "gleamc/results.json",
              "localize/localize_results.json", "localize/ranked.jsonl", "localize/verify/report.html"):
        assert (out / p).is_file(), p
    assert "fine-tuned: accuracy" in proc.stdout and "Outputs:" in proc.stdout
