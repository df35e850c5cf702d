"""The command lines a user types: synth -> validate, convert, models tiny, demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GLEAMX = [sys.executable, "-m", "gleamx.cli.main"]


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*GLEAMX, *args], capture_output=True, text=True, timeout=timeout)


def test_synth_then_validate_reports_no_problems_and_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = _run("data", "synth", "--out", str(out), "--n", "40", "--seed", "7")
        assert proc.returncode == 0, proc.stderr
        assert "wrote 40 samples" in proc.stdout
    for split in ("train", "val", "test"):
        assert (a / f"{split}.jsonl").read_bytes() == (b / f"{split}.jsonl").read_bytes()
    proc = _run("data", "validate", str(a))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "40 valid of 40 records, 0 problem(s)" in proc.stdout
    assert "by view" in proc.stdout and "language" in proc.stdout


def test_convert_round_trip_through_the_cli(tmp_path):
    data = tmp_path / "d"
    assert _run("data", "synth", "--out", str(data), "--n", "20", "--seed", "1").returncode == 0
    sg = tmp_path / "lf" / "train.json"
    proc = _run("data", "convert", str(data), "--split", "train", "--to", "sharegpt", "--out", str(sg))
    assert proc.returncode == 0, proc.stderr
    back = tmp_path / "back" / "train.jsonl"
    assert _run("data", "convert", str(sg), "--to", "jsonl", "--out", str(back)).returncode == 0
    from gleamx.data import load_samples

    assert load_samples(back).samples == load_samples(data, split="train").samples


def test_models_tiny_and_bad_arguments(tmp_path):
    proc = _run("models", "tiny", "--arch", "qwen2_vl", "--out", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m" / "config.json").is_file()
    bad = _run("data", "synth", "--out", str(tmp_path / "x"), "--n", "0")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --n")


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = _run("demo", "--out", str(out), "--n", "48", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for p in ("data/train.jsonl", "llamafactory/gleamx_train.json", "models/tiny-qwen2_5_vl/config.json",
              "eval/untrained/results.json", "sft/adapter_model.safetensors", "sft/README.md",
              "eval/sft/report.html", "gleamc/model.safetensors", "gleamc/results.json",
              "localize/localize_results.json", "localize/ranked.jsonl", "localize/verify/report.html"):
        assert (out / p).is_file(), p
    assert "fine-tuned: accuracy" in proc.stdout and "Outputs:" in proc.stdout
