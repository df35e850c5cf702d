"""The README walk-through: every command of README.md and docs/*.md's fenced shell blocks, in the order a reader
follows them (README, then the pages in README's table order), as written, in a fresh directory (holding links to the
checkout's ``recipes/`` and ``accelerate_configs/``, as a checkout's root does). ``GLEAMX_WALKTHROUGH=1`` caps sample
counts, steps and epochs (``gleamx.checks.cap_for_walkthrough``); the commands are never edited.

Each command is in ``PLAN`` exactly once, by page and text: ``RUN`` (run in this process, must exit 0) or a skip with
its reason (installs, servers, GPUs, downloads, API keys, the Hub). A command the docs gain without a line here fails
``test_every_doc_command_is_planned``."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import doc_commands as docs
from cli_run import run_captured, script_entry
from doc_commands import ROOT
from test_docs import written_folders

RUN = "run"


@dataclass(frozen=True)
class Fails:
    """A command that cannot succeed here (offline, no download, no key): run as written, it must stop with one
    ``error: WHAT: why`` line (docs/install.md's promise), quickly: WHAT names what it lacks (a Hub id, a folder, a
    key) or the setting that stops it."""

    needs: str

INSTALL = "installs packages / makes the venv the test already runs in"
SUITE = "the test suite itself"
SERVER = "serves a page until stopped"
GPU = "needs CUDA GPUs (DeepSpeed / multi-GPU accelerate config)"
HUB = Fails("Qwen/Qwen2.5-VL-3B-Instruct from the Hub (unreachable offline) and the GPU-trained adapter")
DOWNLOAD = Fails("the University-1652 download (raw/University-Release), or what is made from it")
API = Fails("an OpenAI-compatible API server and key, or the data annotated with one")
SLURM = "needs a SLURM cluster"

PLAN: dict[tuple[str, str], str | Fails] = {
    ("README.md", "python3 -m venv .venv"): INSTALL,
    ("README.md", ". .venv/bin/activate"): INSTALL,
    ("README.md", "pip install -e .[dev]"): INSTALL,
    ("README.md", "gleamx demo --out gleamx-demo"): RUN,
    ("README.md", "python -m pytest -q"): SUITE,
    ("README.md", "gleamx data synth --out data/gleamx --n 2000 --seed 0"): RUN,
    ("README.md", "accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft.py --config "
                  "recipes/qwen2.5-vl-3b/sft_lora.yaml"): GPU,
    ("README.md", "gleamx eval --model Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/qwen2.5-vl-3b-gleamx-lora "
                  "--data data/gleamx --split test --lang en --task explain --output eval/en"): HUB,
    ("docs/install.md", "python3 -m venv .venv"): INSTALL,
    ("docs/install.md", ". .venv/bin/activate"): INSTALL,
    ("docs/install.md", "pip install -e .[dev]"): INSTALL,
    ("docs/install.md", "pip install -e .[app]"): INSTALL,
    ("docs/install.md", "pip install -e .[lmms-eval]"): INSTALL,
    ("docs/install.md", "pip install -e .[tensorboard,quant,deepspeed]"): INSTALL,
    ("docs/install.md", "pip install flash-attn --no-build-isolation"): INSTALL,
    ("docs/data.md", "gleamx data synth --out data/synth --n 400 --seed 0"): RUN,
    ("docs/data.md", "gleamx data validate data/synth"): RUN,
    ("docs/data.md", "gleamx data convert data/synth --split train --to sharegpt --out lf/gleamx_train.json"): RUN,
    ("docs/data.md", "gleamx data convert lf/gleamx_train.json --to jsonl --out back/train.jsonl"): RUN,
    ("docs/data.md", "gleamx data validate user/some-hf-dataset --columns "
                     "query_image=drone,satellite_image=sat,label=match"): Fails("a placeholder Hub dataset id"),
    ("docs/data.md", "gleamx data cvgl raw/University-Release --layout university1652 --split train --out "
                     "data/u1652-layout"): DOWNLOAD,
    ("docs/data.md", "gleamx data pairs --retrieval data/u1652-layout --out data/u1652-labels --split-fractions "
                     "0.9,0.1,0 --neg-ratio 1 --hard-ratio 0.5 --seed 0"): DOWNLOAD,
    ("docs/data.md", "gleamx data validate data/u1652-labels"): DOWNLOAD,
    ("docs/data.md", "export OPENAI_API_KEY=..."): "a shell line (sets the API key)",
    ("docs/data.md", "gleamx annotate --data data/u1652-labels --model gpt-4o --base-url https://api.openai.com/v1 "
                     "--lang en,zh --out data/annotated --label given --concurrency 16 --price-in 2.5 "
                     "--price-out 10"): API,
    ("docs/data.md", "gleamx annotate --data data/u1652-labels --model gpt-4o --base-url https://api.openai.com/v1 "
                     "--lang en,zh --out data/annotated --batch --poll-interval 300 --price-in 2.5 --price-out 10 "
                     "--batch-discount 0.5"): API,
    ("docs/data.md", "gleamx review serve --data data/annotated --split test"): SERVER,
    ("docs/data.md", "gleamx review export --data data/annotated --split test --out sheet.csv"): API,
    ("docs/data.md", "gleamx review import --data data/annotated --revisions sheet.csv --out data/revised"): API,
    ("docs/data.md", "gleamx data cvgl raw/University-Release --layout university1652 --split train --out "
                     "data/u1652-train"): DOWNLOAD,
    ("docs/data.md", "gleamx retrieval train --config retrieval/convnext_base --data data/u1652-train --output_dir "
                     "outputs/u1652-retrieval"): DOWNLOAD,
    ("docs/data.md", "gleamx data pairs --retrieval data/u1652-train --out data/u1652-pairs --split-fractions "
                     "0.8,0.1,0.1 --max-per-view 3000 --neg-ratio 1 --hard-ratio 0.5 --encoder "
                     "outputs/u1652-retrieval --seed 0"): DOWNLOAD,
    ("docs/data.md", "gleamx annotate --data data/u1652-pairs --model gpt-4o --base-url https://api.openai.com/v1 "
                     "--lang en,zh --out data/u1652-annotated --concurrency 16 --price-in 2.5 --price-out 10"): API,
    ("docs/data.md", "gleamx review serve --data data/u1652-annotated --split test"): SERVER,
    ("docs/data.md", "gleamx review import --data data/u1652-annotated --split test --out data/u1652-gleamx"): API,
    ("docs/data.md", "gleamx data validate data/u1652-gleamx"): API,
    ("docs/data.md", "accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft.py --config "
                     "recipes/qwen2.5-vl-3b/sft_lora.yaml --dataset_name data/u1652-gleamx --output_dir "
                     "outputs/u1652-lora"): GPU,
    ("docs/data.md", "gleamx eval --model Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/u1652-lora --data "
                     "data/u1652-gleamx --split test --task explain --lang en --output eval/u1652-en"): HUB,
    ("docs/data.md", "gleamx data push data/u1652-gleamx --repo-id you/gleamx-u1652 --annotations "
                     "data/u1652-annotated --dry-run"): API,
    ("docs/data.md", "gleamx data push data/u1652-gleamx --repo-id you/gleamx-u1652 --annotations "
                     "data/u1652-annotated --private"): Fails("uploads to the Hub (token, network)"),
    ("docs/data.md", "gleamx localize --encoder outputs/u1652-retrieval --model Qwen/Qwen2.5-VL-3B-Instruct --adapter "
                     "outputs/u1652-lora --data you/gleamx-u1652 --split test --k 5 --output eval/u1652-localize"): HUB,
    ("docs/training.md", "gleamx models tiny --arch qwen2_5_vl --out models/tiny"): RUN,
    ("docs/training.md", "python recipes/sft.py --config recipes/qwen2.5-vl-3b/sft_lora.yaml --dataset_name "
                         "user/gleamx-vigor --dataset_streaming true --max_steps 20000 --stream_shuffle_buffer 1000 "
                         "--output_dir outputs/lora-stream"):
        Fails("a placeholder Hub dataset id (and Qwen/Qwen2.5-VL-3B-Instruct from the Hub)"),
    ("docs/training.md", "gleamx models tiny --arch qwen2_5_vl --tokenizer qwen --out models/tiny-qwenvocab"): RUN,
    ("docs/training.md", "gleamx models tiny --arch qwen3_vl --from-real --out models/tiny-qwen3"): RUN,
    ("docs/training.md", "python recipes/sft.py --config recipes/tiny/sft_lora.yaml --output_dir outputs/tiny-lora"):
        RUN,
    ("docs/training.md", "accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft.py --config "
                         "recipes/qwen2.5-vl-3b/sft_lora.yaml --output_dir out/lora"): GPU,
    ("docs/training.md", "accelerate launch --config_file accelerate_configs/zero3.yaml recipes/sft.py --config "
                         "recipes/qwen2.5-vl-3b/sft_full.yaml --learning_rate 5e-6"): GPU,
    ("docs/training.md", "gleamx sft --config qwen2.5-vl-3b/sft_lora --output_dir out/lora"): HUB,
    ("docs/training.md", "gleamx sft --accelerate_config zero2 --config qwen2.5-vl-3b/sft_lora --output_dir out/lora"):
        GPU,
    ("docs/training.md", "python recipes/sft.py --config recipes/qwen2.5-vl-3b/sft_lora.yaml --output_dir "
                         "outputs/lora-scale"): HUB,
    ("docs/training.md", "accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft.py --config "
                         "recipes/qwen2.5-vl-3b/sft_lora.yaml --output_dir outputs/lora-scale"): GPU,
    ("docs/training.md", "sbatch --nodes 4 recipes/slurm/sft.sbatch recipes/qwen2.5-vl-3b/sft_lora.yaml "
                         "accelerate_configs/multi_node_zero2.yaml --output_dir outputs/lora-scale"): SLURM,
    ("docs/training.md", "gleamx push outputs/qwen2.5-vl-3b-gleamx-lora --repo-id you/gleamx-qwen2.5-vl-3b --dry-run"):
        HUB,
    ("docs/training.md", "gleamx push outputs/qwen2.5-vl-3b-gleamx-lora --repo-id you/gleamx-qwen2.5-vl-3b --private"):
        HUB,
    ("docs/training.md", "gleamx merge --base Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/qwen2.5-vl-3b-gleamx-lora "
                         "--out merged/"): HUB,
    ("docs/grpo.md", "gleamx sft --config tiny/sft_lora"): RUN,
    ("docs/grpo.md", "gleamx grpo --config tiny/grpo"): RUN,
    ("docs/grpo.md", "accelerate launch --config_file accelerate_configs/zero2.yaml recipes/grpo.py --config "
                     "recipes/qwen2.5-vl-3b/grpo_lora.yaml"): GPU,
    ("docs/grpo.md", "accelerate launch --config_file accelerate_configs/zero3.yaml recipes/grpo.py --config "
                     "recipes/qwen2.5-vl-3b/grpo_full.yaml"): GPU,
    ("docs/evaluation.md", "accelerate launch --config_file accelerate_configs/ddp.yaml --num_processes 8 -m "
                           "gleamx.cli.main eval --model Qwen/Qwen2.5-VL-3B-Instruct --adapter "
                           "outputs/qwen2.5-vl-3b-gleamx-lora --data data/gleamx --split test --lang en --batch-size 16 "
                           "--output eval/en-8gpu"): GPU,
    ("docs/evaluation.md", "gleamx-eval --model Qwen/Qwen2.5-VL-3B-Instruct --adapter "
                           "outputs/qwen2.5-vl-3b-gleamx-lora --data data/gleamx --split test --lang zh --task explain "
                           "--batch-size 16 --output eval/zh"): HUB,
    ("docs/evaluation.md", "gleamx-eval --predictions preds.jsonl --data data/gleamx --lang en --output eval/api"):
        Fails("preds.jsonl: the reader's answers, made elsewhere"),
    ("docs/evaluation.md", "gleamx-eval ... --judge-model gpt-4o --judge-base-url https://api.openai.com/v1"):
        "a placeholder line (`...`); the judge needs an API server",
    ("docs/evaluation.md", "gleamx eval --config eval/zh_explain --model Qwen/Qwen2.5-VL-3B-Instruct --adapter RUN_DIR"):
        Fails("a placeholder (RUN_DIR) and a Hub model"),
    ("docs/evaluation.md", "pip install -e .[lmms-eval]"): INSTALL,
    ("docs/evaluation.md", "gleamx export lmms-eval --data data/gleamx --split test --lang en --task explain --out "
                           "lmms-tasks/gleamx-en"): RUN,
    ("docs/evaluation.md", "python -m lmms_eval --model qwen2_5_vl --force_simple --model_args "
                           "pretrained=Qwen/Qwen2.5-VL-3B-Instruct --tasks gleamx_en_explain --include_path "
                           "lmms-tasks/gleamx-en --batch_size 1 --output_path eval/lmms-eval"):
        "lmms-eval's run of a Hub model (unreachable offline)",
    ("docs/evaluation.md", "gleamx review serve --data data/gleamx --split test --predictions preds.jsonl --lang en "
                           "--ratings ratings/api-en.jsonl"): SERVER,
    ("docs/evaluation.md", "gleamx-eval --predictions preds.jsonl --data data/gleamx --lang en --output "
                           "eval/api-rated --ratings ratings/api-en.jsonl"): Fails("ratings/api-en.jsonl: people's ratings of the "
                                                                    "reader's answers"),
    ("docs/evaluation.md", "gleamx eval --model Qwen/Qwen2.5-VL-3B-Instruct --adapter "
                           "outputs/qwen2.5-vl-3b-gleamx-lora --data data/gleamx --lang en,zh --output eval/both"): HUB,
    ("docs/evaluation.md", "gleamx compare eval/base eval/sft --names base,sft --output eval/compare"):
        Fails("eval/base, eval/sft: the reader's eval runs of a base and a fine-tuned model"),
    ("docs/training.md", "gleamx ablation --config qwen2.5-vl-3b/ablation --accelerate_config zero2"): GPU,
    ("docs/training.md", "gleamx ablation --config tiny/ablation"): RUN,
    ("docs/retrieval.md", "gleamx data synth --out data/synth-toy --n 2000 --difficulty toy --image-size 64"): RUN,
    ("docs/retrieval.md", "gleamx retrieval train --config recipes/retrieval/tiny.yaml --data data/synth-toy"): RUN,
    ("docs/retrieval.md", "accelerate launch --config_file accelerate_configs/ddp.yaml recipes/retrieval.py --config "
                          "recipes/retrieval/convnext_base.yaml"): GPU,
    ("docs/retrieval.md", "gleamx retrieval train --config retrieval/two_phase_tiny --data data/synth-toy"): RUN,
    ("docs/retrieval.md", "gleamx retrieval train --config retrieval/stream_tiny --data data/synth-toy"): RUN,
    ("docs/retrieval.md", "gleamx retrieval eval --encoder outputs/retrieval-tiny --data data/synth-toy --split test "
                          "--output eval/retrieval"): RUN,
    ("docs/retrieval.md", "gleamx localize --encoder outputs/retrieval-tiny --model Qwen/Qwen2.5-VL-3B-Instruct "
                          "--adapter outputs/qwen2.5-vl-3b-gleamx-lora --data data/synth-toy --split test --k 5 "
                          "--task explain --lang zh --output eval/localize"): HUB,
    ("docs/app.md", "pip install -e .[app]"): INSTALL,
    ("docs/app.md", "gleamx app"): SERVER,
    ("docs/app.md", "gleamx app --model Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/u1652-lora --encoder "
                    "outputs/u1652-retrieval --gallery data/u1652-gleamx"): SERVER,
    ("docs/app.md", "gleamx app --export-space my-space --adapter user/gleamx-lora"): RUN,
    ("docs/app.md", "gleamx predict --query query.jpg --satellite satellite.jpg --view uav --lang zh"):
        Fails("query.jpg, satellite.jpg: the reader's own photos"),
    ("docs/app.md", "gleamx predict --query query.jpg --satellite satellite.jpg --model Qwen/Qwen2.5-VL-3B-Instruct "
                    "--adapter outputs/u1652-lora --json"): HUB,
}


def _key(c: docs.DocCommand) -> tuple[str, str]:
    return docs.shown(c.file), c.text


def walk() -> list[docs.DocCommand]:
    """Every fenced command, README first, then the pages in README's table order; each page's in its order."""
    return [c for page in docs.walk_order() for c in docs.commands(page) if c.fenced]


def test_every_doc_command_is_planned():
    """Each fenced command of the docs has exactly one line in PLAN, and PLAN names no command the docs lost."""
    keys = {_key(c) for c in walk()}
    missing = sorted(k for k in keys if k not in PLAN)
    stale = sorted(k for k in PLAN if k not in keys)
    assert not missing, "commands the walk-through does not classify:\n" + "\n".join(map(str, missing))
    assert not stale, "PLAN lines no doc command has any more:\n" + "\n".join(map(str, stale))


def _entry(c: docs.DocCommand):
    """(entry, args) running ``c`` in this process: ``gleamx``/``gleamx-eval`` through the CLI's main, ``python
    X.py`` through the script's ``__main__``."""
    words = list(c.words)
    if words[0] == "gleamx":
        return None, words[1:]
    if words[0] == "gleamx-eval":
        return None, ["eval", *words[1:]]
    if words[0] in ("python", "python3") and words[1].endswith(".py"):
        return script_entry(ROOT / words[1]), words[2:]
    raise AssertionError(f"{c}: PLAN says run, but the walk-through cannot run a {words[0]!r} line in-process")


def _runnable(c: docs.DocCommand) -> bool:
    return c.words[0] in ("gleamx", "gleamx-eval") or (c.words[0] in ("python", "python3")
                                                         and c.words[1].endswith(".py"))


def _check_fails_in_one_line(c: docs.DocCommand, result, seconds: float) -> None:
    """``c`` (a :class:`Fails` line) stopped with one ``error:`` line naming a word of its own, within seconds."""
    said = f"{c}\nexit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert result.returncode != 0, "exit 0 where it cannot succeed: " + said
    assert "Traceback" not in result.stderr, "a traceback, not one line: " + said
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, "not one error: line: " + said
    assert re.match(r"error: \S+: \S", errors[0]), "not `error: WHAT: why`: " + said
    assert seconds < 10, f"took {seconds:.1f} s to fail: " + said


@pytest.mark.slow
def test_the_docs_walk_through(tmp_path, monkeypatch, capsys):
    """In order, in one fresh directory at walk-through sizes: every command PLAN marks RUN exits 0, and every one it
    marks :class:`Fails` stops with one error line that names what it lacks (offline, with no API key)."""
    monkeypatch.chdir(tmp_path)
    for name in ("recipes", "accelerate_configs"):  # a checkout's root, as the docs assume
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.setenv("GLEAMX_WALKTHROUGH", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLEAMX_CACHE", str(tmp_path / ".cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ran, failed, times = 0, 0, []
    for c in walk():
        plan = PLAN[_key(c)]
        if plan != RUN and not (isinstance(plan, Fails) and _runnable(c)):
            continue
        entry, args = _entry(c)
        start = time.perf_counter()
        result = run_captured(capsys, args, entry)
        seconds = time.perf_counter() - start
        times.append((seconds, str(c)))
        if isinstance(plan, Fails):
            _check_fails_in_one_line(c, result, seconds)
            failed += 1
            continue
        assert result.returncode == 0, f"{c}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        for out in written_folders(c):  # it made what the docs say it makes
            assert any((tmp_path / out).iterdir()) if (tmp_path / out).is_dir() else (tmp_path / out).is_file(), \
                f"{c}: exit 0 but {out} was not written"
        ran += 1
    assert ran == sum(p == RUN for p in PLAN.values())
    assert failed >= 20  # the Hub, download and API lines are checked, not skipped
    with capsys.disabled():  # what each step took, shown with -s
        print("\n" + "\n".join(f"{t:6.1f}s  {what}" for t, what in times))
