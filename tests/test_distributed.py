"""Multi-process training: accelerate configs, DDP and DeepSpeed ZeRO-2/3 on 2 CPU processes.

The slow tests launch ``recipes/sft.py`` the way users do (``accelerate launch --config_file ...``)
on the tiny Qwen2.5-VL model and check what lands on disk: a LoRA adapter that PEFT loads, and
under ZeRO-3 real, consolidated tensors rather than the 0-size shard placeholders a careless save
writes. The first DeepSpeed run on a machine JIT-builds DeepSpeed's shared-memory collectives
(needs a C++ compiler and Python headers, ~1-2 min, then cached in ~/.cache/torch_extensions).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from gleamx.errors import GleamConfigError
from gleamx.train.arguments import LLM_LORA_TARGETS
from gleamx.train.run import check_zero3_save
from processes import free_port, kill_tree, run_bounded
from training_checks import MIN_CHANGE, assert_gradients_flowed, assert_lora_trained, max_change

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "accelerate_configs"
RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"
ARCH = "qwen2_5_vl"
LORA_R = 16  # recipes/tiny/sft_lora.yaml
LAUNCH_TIMEOUT_S = 600  # generous: covers the one-off DeepSpeed op build on a cold machine
# 3 steps x batch 2 x 2 ranks: enough to move every trainable weight, short enough for CI.
TRAIN_ARGS = ("--max_steps", "3", "--per_device_train_batch_size", "2", "--logging_steps", "1",
              "--save_strategy", "steps", "--save_steps", "3")


# --- fast: config files and the ZeRO-3 save guard ----------------------------------------------


def _load_config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "kind", "stage", "procs", "cpu"),
    [("zero2.yaml", "DEEPSPEED", 2, 8, False), ("zero3.yaml", "DEEPSPEED", 3, 8, False),
     ("ddp.yaml", "MULTI_GPU", None, 8, False), ("cpu.yaml", "MULTI_GPU", None, 2, True),
     ("zero2_cpu.yaml", "DEEPSPEED", 2, 2, True), ("zero3_cpu.yaml", "DEEPSPEED", 3, 2, True)],
)
def test_accelerate_config_shape(name: str, kind: str, stage: int | None, procs: int, cpu: bool) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    raw = _load_config(name)
    parsed = load_config_from_file(str(CONFIGS / name))  # accelerate's own reader accepts it
    assert parsed.distributed_type.value == kind
    assert raw["num_processes"] == procs and raw["use_cpu"] is cpu
    assert raw["mixed_precision"] == ("no" if cpu else "bf16")
    if stage is not None:
        ds = raw["deepspeed_config"]
        assert ds["zero_stage"] == stage
        assert ds["zero3_init_flag"] is (stage == 3)
        # Without it a ZeRO-3 full fine-tune saves no model.safetensors.
        assert ds.get("zero3_save_16bit_model", False) is (stage == 3)


def _ds_args(zero: dict | None) -> SimpleNamespace:
    plugin = None if zero is None else SimpleNamespace(deepspeed_config={"zero_optimization": zero})
    return SimpleNamespace(deepspeed_plugin=plugin)


@pytest.mark.parametrize(
    ("zero", "use_peft", "ok"),
    [(None, False, True), ({"stage": 2}, False, True), ({"stage": 3}, True, True),
     ({"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}, False, True),
     ({"stage": 3}, False, False), ({"stage": 3, "stage3_gather_16bit_weights_on_model_save": False}, False, False)],
)
def test_check_zero3_save(zero: dict | None, use_peft: bool, ok: bool) -> None:
    call = lambda: check_zero3_save(_ds_args(zero), SimpleNamespace(use_peft=use_peft))  # noqa: E731
    if ok:
        call()
    else:
        with pytest.raises(GleamConfigError, match="zero3_save_16bit_model"):
            call()


# --- slow: real 2-process launches ---------------------------------------------------------------


def _deepspeed_ready() -> str | None:
    """Why DeepSpeed cannot run on this CPU machine, or None."""
    try:
        import deepspeed  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means "skip"
        return f"deepspeed unavailable ({type(e).__name__})"
    if not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler for DeepSpeed's CPU comm op"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python headers for DeepSpeed's CPU comm op"
    return None


@pytest.fixture(scope="module")
def dist_inputs(tmp_path_factory: pytest.TempPathFactory, synth_dir, models_tiny_dir) -> SimpleNamespace:
    """A small synthetic dataset and the tiny model, shared by every launch in this module."""
    return SimpleNamespace(data=synth_dir(40, seed=0),  # 32 train pairs -> 64 bilingual conversations
                           model=models_tiny_dir(ARCH), root=tmp_path_factory.mktemp("dist"))


def _launch(inputs: SimpleNamespace, config: str, out: Path, *extra: str) -> float:
    """``accelerate launch`` recipes/sft.py on 2 CPU processes; returns wall seconds, fails with the log tail."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
           "--main_process_port", str(free_port()), str(ROOT / "recipes" / "sft.py"), "--config", str(RECIPE),
           "--model_name_or_path", str(inputs.model), "--dataset_name", str(inputs.data),
           "--output_dir", str(out), *TRAIN_ARGS, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    rc, log = run_bounded(cmd, timeout_s=LAUNCH_TIMEOUT_S, what=f"{config} (hung collective?)", cwd=ROOT, env=env)
    seconds = time.monotonic() - start
    print(f"{config} {' '.join(extra)}: {seconds:.1f}s wall")  # visible with -s; --durations shows the test total
    assert rc == 0, f"{config}: exit {rc}\n{log[-4000:]}"
    return seconds


def _zero_stage(out: Path) -> int:
    """The ZeRO stage DeepSpeed actually ran, read back from the checkpoint's optimizer shards."""
    import torch

    shards = sorted(out.glob("checkpoint-3/global_step3/*optim_states.pt"))
    assert len(shards) == 2, f"expected one optimizer shard per rank, got {[p.name for p in shards]}"
    state = torch.load(shards[0], map_location="cpu", weights_only=False)["optimizer_state_dict"]
    return int(state["zero_stage"])


def _fresh_base(inputs: SimpleNamespace):  # noqa: ANN202
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(inputs.model, local_files_only=True)


def _expected_adapter_shapes(base) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    """Adapter file keys -> shapes: LoRA A/B on each language-model linear, plus the trained merger copy."""
    import torch.nn as nn

    shapes: dict[str, tuple[int, ...]] = {}
    for name, mod in base.named_modules():
        if isinstance(mod, nn.Linear) and re.fullmatch(LLM_LORA_TARGETS, name):
            shapes[f"base_model.model.{name}.lora_A.weight"] = (LORA_R, mod.in_features)
            shapes[f"base_model.model.{name}.lora_B.weight"] = (mod.out_features, LORA_R)
    for name, p in base.named_parameters():
        if ".merger." in name:  # recipe: freeze_merger false -> merger in modules_to_save
            shapes[f"base_model.model.{name}"] = tuple(p.shape)
    return shapes


@pytest.fixture(scope="module")
def lora_runs(dist_inputs: SimpleNamespace) -> Callable[[str], Path]:
    """``get(config) -> output dir``: one LoRA run per accelerate config, launched on first use."""
    done: dict[str, Path] = {}

    def get(config: str) -> Path:
        if config not in done:
            out = dist_inputs.root / f"lora_{Path(config).stem}"
            _launch(dist_inputs, config, out)
            done[config] = out
        return done[config]

    return get


def _check_adapter(out: Path, inputs: SimpleNamespace) -> dict:
    """The saved adapter has exactly the expected, real, finite tensors, and PEFT loads it as saved."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(out / "adapter_model.safetensors")
    expected = _expected_adapter_shapes(_fresh_base(inputs))
    assert expected and set(saved) == set(expected)
    for key, tensor in saved.items():
        # ZeRO-3 without gathering leaves shape (0,) placeholders here.
        assert tuple(tensor.shape) == expected[key], f"{key}: {tuple(tensor.shape)} != {expected[key]}"
        assert torch.isfinite(tensor).all(), key
    # lora_B starts at zero: values moved by a real amount prove the trained weights, not the initial ones,
    # were saved (and that every rank's run trained: the equality tests below compare trained adapters).
    assert all(saved[k].abs().sum() > 0 for k in saved if ".lora_B." in k)
    assert_lora_trained(saved)
    assert_gradients_flowed(out)

    peft_model = PeftModel.from_pretrained(_fresh_base(inputs), out)
    loaded = get_peft_model_state_dict(peft_model)
    assert set(loaded) == set(saved)
    for key, tensor in saved.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0)
    return saved


@pytest.mark.slow
@pytest.mark.parametrize(("config", "stage"), [("zero2_cpu.yaml", 2), ("zero3_cpu.yaml", 3)])
def test_zero_lora_saves_loadable_adapter(dist_inputs: SimpleNamespace, lora_runs: Callable[[str], Path],
                                          config: str, stage: int) -> None:
    if why := _deepspeed_ready():
        pytest.skip(why)
    out = lora_runs(config)
    assert _zero_stage(out) == stage
    _check_adapter(out, dist_inputs)
    # DeepSpeed's CPU op was built in this session's folder (tests/conftest.py), not the user's cache
    assert list(Path(os.environ["TORCH_EXTENSIONS_DIR"]).rglob("deepspeed_shm_comm/*.so"))


@pytest.mark.slow
def test_ddp_cpu_matches_zero(dist_inputs: SimpleNamespace, lora_runs: Callable[[str], Path]) -> None:
    """cpu.yaml trains on 2 processes, and ZeRO-2/3 save the same adapter values as plain DDP.

    Same seed, data and maths: only reduction order differs, so the adapters agree to float noise.
    A value match (not just a shape match) shows ZeRO-3 put each gathered shard back in its place.
    """
    import torch
    from safetensors.torch import load_file

    reference = _check_adapter(lora_runs("cpu.yaml"), dist_inputs)
    if why := _deepspeed_ready():
        pytest.skip(why)
    for config in ("zero2_cpu.yaml", "zero3_cpu.yaml"):
        other = load_file(lora_runs(config) / "adapter_model.safetensors")
        for key, tensor in reference.items():
            torch.testing.assert_close(other[key], tensor, rtol=1e-4, atol=1e-5, msg=lambda m: f"{config} {key}: {m}")


@pytest.mark.slow
def test_zero3_full_finetune_saves_consolidated_model(dist_inputs: SimpleNamespace) -> None:
    import torch
    from transformers import AutoModelForImageTextToText

    if why := _deepspeed_ready():
        pytest.skip(why)
    out = dist_inputs.root / "full_zero3"
    _launch(dist_inputs, "zero3_cpu.yaml", out, "--use_peft", "false", "--learning_rate", "1e-4")
    assert _zero_stage(out) == 3
    assert (out / "model.safetensors").is_file()

    model, info = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    base = _fresh_base(dist_inputs).state_dict()
    trained = model.state_dict()
    assert set(trained) == set(base)
    for key, tensor in trained.items():
        assert tensor.shape == base[key].shape, key
        assert torch.isfinite(tensor).all(), key
    changed = {k for k in base if max_change({k: base[k]}, {k: trained[k]}) > MIN_CHANGE}
    assert_gradients_flowed(out)
    # Recipe: vision tower frozen, merger and language model trained.
    assert any(".merger." in k for k in changed) and any("language_model" in k for k in changed)
    assert not any(".visual." in k and ".merger." not in k for k in changed), sorted(changed)[:5]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["cpu.yaml", "zero3_cpu.yaml"])
def test_match_eval_on_two_processes_finishes_and_keeps_a_checkpoint(dist_inputs: SimpleNamespace,
                                                                      config: str) -> None:
    """Every rank generates the same verdicts at the evaluation (collective under ZeRO-3): no hang, one score,
    and the best checkpoint is reloaded on every rank."""
    if config.startswith("zero") and (why := _deepspeed_ready()):
        pytest.skip(why)
    out = dist_inputs.root / f"match_{Path(config).stem}"
    _launch(dist_inputs, config, out, "--eval_strategy", "steps", "--eval_steps", "3", "--eval_match_samples", "4",
            "--eval_match_max_new_tokens", "6", "--metric_for_best_model", "match_accuracy",
            "--load_best_model_at_end", "true")
    evals = [h for h in json.loads((out / "log_history.json").read_text()) if "eval_loss" in h]
    assert len(evals) == 1 and 0.0 <= evals[0]["eval_match_accuracy"] <= 1.0
    kept = json.loads((out / "gleamx_run.json").read_text())["kept_checkpoint"]
    assert kept["checkpoint"] == "checkpoint-3" and kept["value"] == evals[0]["eval_match_accuracy"]


def test_accelerate_config_names_and_paths_resolve_in_one_place(tmp_path: Path) -> None:
    from gleamx import accelerate_configs
    from gleamx.cli.main import _pop_option

    assert {"cpu", "ddp", "zero2", "zero3", "multi_node_zero3"} <= set(accelerate_configs.names())
    for spelling in ("zero2", "zero2.yaml", "accelerate_configs/zero2.yaml"):
        assert accelerate_configs.resolve(spelling).resolve() == accelerate_configs.ROOT / "zero2.yaml", spelling
    mine = tmp_path / "mine.yaml"
    mine.write_text("num_processes: 1\n")
    assert accelerate_configs.resolve(str(mine)) == mine
    with pytest.raises(GleamConfigError) as e:
        accelerate_configs.resolve("zero5")
    assert str(e.value).startswith("--accelerate_config zero5: neither a config file") and "zero3_cpu" in str(e.value)
    assert _pop_option(["--config", "c", "--accelerate_config", "zero2", "--seed", "1"], "--accelerate_config") == \
        ("zero2", ["--config", "c", "--seed", "1"])
    assert _pop_option(["--accelerate-config=cpu"], "--accelerate_config") == ("cpu", [])
    assert _pop_option(["--seed", "1"], "--accelerate_config") == (None, ["--seed", "1"])
    with pytest.raises(GleamConfigError, match="^--accelerate_config: expected an accelerate config file"):
        _pop_option(["--accelerate_config", "--seed", "1"], "--accelerate_config")


@pytest.mark.parametrize("name", ["eval", "retrieval eval", "sft"])
def test_a_bad_launch_is_one_line_before_anything_starts(name: str, tmp_path: Path, gleamx_cli, monkeypatch) -> None:
    """``--accelerate_config`` with a bad flag, a bad process count or an unknown config: one line, no launch."""
    import subprocess as sp

    monkeypatch.setattr(sp, "call", lambda *a, **k: pytest.fail(f"launched: {a}"))
    args = {"eval": ["--model", "m", "--data", "d"], "retrieval eval": ["--encoder", "e", "--data", "d"],
            "sft": ["--config", "tiny/sft_lora"]}[name]
    args += ["--output", str(tmp_path / "o")]
    for extra, said in ((["--accelerate_config", "cpu", "--num_processes", "0"],
                         "--num_processes: expected an integer >= 1, got '0'"),
                        (["--accelerate_config", "zero9"], "--accelerate_config zero9: neither a config file"),
                        (["--accelerate_config"], "--accelerate_config: expected an accelerate config file")):
        r = gleamx_cli(*name.split(), *args, *extra)
        assert r.returncode == 2 and r.stderr.startswith(f"error: {said}") and len(r.stderr.splitlines()) == 1, r.stderr
    if name != "sft":  # the command's own flags are checked before the launch too (a recipe's, by the recipe)
        r = gleamx_cli(*name.split(), *args, "--bogus", "1", "--accelerate_config", "cpu")
        assert r.returncode == 2 and "--bogus" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_gleamx_sft_launches_itself_with_an_accelerate_config(dist_inputs: SimpleNamespace, tmp_path: Path,
                                                              gleamx_cli) -> None:
    """`gleamx sft --accelerate_config FILE` runs the recipe under accelerate launch: 2 CPU processes train."""
    config = tmp_path / "cpu.yaml"  # the packaged cpu.yaml on a free port (tests run side by side)
    config.write_text((CONFIGS / "cpu.yaml").read_text() + f"main_process_port: {free_port()}\n")
    out = tmp_path / "run"
    r = gleamx_cli("sft", "--accelerate_config", config, "--config", "tiny/sft_lora", "--model_name_or_path",
                   dist_inputs.model, "--dataset_name", dist_inputs.data, "--output_dir", out, *TRAIN_ARGS)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"accelerate launch --config_file {config} -m gleamx.recipes.sft" in r.stdout
    assert_lora_trained(out)
    assert_gradients_flowed(out)
    assert json.loads((out / "log_history.json").read_text())[-1]["step"] == 3


# --- gleamx eval on 2 processes: each generates a share, the first scores and writes -------------------------


EVAL_ARGS = ("--split", "train", "--lang", "en", "--task", "explain", "--max-new-tokens", "40", "--batch-size", "2",
             "--bootstrap", "50")


def _eval_command(inputs: SimpleNamespace, out: Path, n_proc: int, shortcut: bool = False) -> list[str]:
    """``gleamx eval`` of the tiny model on the module's data: a plain process, or ``accelerate launch`` of
    ``n_proc`` CPU processes; ``shortcut``: gleamx's own ``--accelerate_config FILE --num_processes N``, which
    starts that launch (FILE: cpu.yaml on a free port)."""
    args = ["-m", "gleamx.cli.main", "eval", "--model", str(inputs.model), "--data", str(inputs.data), *EVAL_ARGS,
            "--output", str(out)]
    if n_proc == 1:
        return [sys.executable, *args]
    if shortcut:
        config = out.parent / f"{out.name}-cpu.yaml"
        config.write_text((CONFIGS / "cpu.yaml").read_text() + f"main_process_port: {free_port()}\n")
        return [sys.executable, *args, "--accelerate_config", str(config), "--num_processes", str(n_proc)]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu.yaml"),
            "--num_processes", str(n_proc), "--main_process_port", str(free_port()), *args]


# one BLAS thread in every process, however launched: the same float sums in one process as in two
EVAL_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def _run_eval(inputs: SimpleNamespace, out: Path, n_proc: int, shortcut: bool = False) -> str:
    proc = subprocess.run(_eval_command(inputs, out, n_proc, shortcut), cwd=ROOT, env=EVAL_ENV, capture_output=True,
                          text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, f"{n_proc} process(es): exit {proc.returncode}\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout


def _eval_outputs(out: Path) -> tuple[bytes, bytes, dict]:
    """predictions.jsonl, per_sample.jsonl and results.json without its config (which names the output folder)."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results.pop("config")
    return (out / "predictions.jsonl").read_bytes(), (out / "per_sample.jsonl").read_bytes(), results


@pytest.fixture(scope="module")
def one_process_eval(dist_inputs: SimpleNamespace) -> Path:
    out = dist_inputs.root / "eval_one"
    _run_eval(dist_inputs, out, 1)
    return out


@pytest.mark.slow
def test_eval_on_two_processes_writes_what_one_process_writes(dist_inputs: SimpleNamespace,
                                                              one_process_eval: Path) -> None:
    """Started as ``gleamx eval ... --accelerate_config FILE --num_processes 2`` (the killed-run tests below start
    ``accelerate launch -m gleamx.cli.main eval`` themselves)."""
    out = dist_inputs.root / "eval_two"
    stdout = _run_eval(dist_inputs, out, 2, shortcut=True)
    assert stdout.startswith("accelerate launch --config_file ") and " --num_processes 2 -m gleamx.cli.main eval " \
        in stdout.splitlines()[0]
    assert _eval_outputs(out) == _eval_outputs(one_process_eval)  # byte for byte, in the same order
    assert stdout.count("accuracy=") == 1 and "process 1 of 2" in stdout  # one summary: the first process's
    assert not list(out.glob("predictions.rank*"))  # the other process's log went into predictions.jsonl
    n = json.loads((out / "results.json").read_text())["n"]
    assert n == len((out / "predictions.jsonl").read_text().splitlines()) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("resume_with", [1, 2])
def test_killed_two_process_eval_resumes_without_generating_again(dist_inputs: SimpleNamespace,
                                                                   one_process_eval: Path, resume_with: int) -> None:
    """A 2-process run killed while both processes have answers on disk (the first's in predictions.jsonl, the
    second's in its own log), started again with 1 or 2 processes: every finished answer is kept as it was, none
    is generated twice, and the outputs equal an uninterrupted one-process run's."""
    out = dist_inputs.root / f"eval_killed_{resume_with}"
    proc = subprocess.Popen(_eval_command(dist_inputs, out, 2), cwd=ROOT, env=EVAL_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    main_log, other_log = out / "predictions.jsonl", out / "predictions.rank1.jsonl"

    def lines(path: Path) -> list[str]:
        return [x for x in path.read_text(encoding="utf-8").splitlines(keepends=True) if x.endswith("\n")] \
            if path.is_file() else []

    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if lines(main_log) and lines(other_log):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        kill_tree(proc.pid)
    before = {json.loads(x)["id"]: x for x in lines(main_log) + lines(other_log)}
    n = json.loads((one_process_eval / "results.json").read_text())["n"]
    assert 0 < len(before) < n and not (out / "results.json").exists()
    _run_eval(dist_inputs, out, resume_with)
    after = lines(main_log)
    assert len(after) == n == len({json.loads(x)["id"] for x in after})  # nothing generated twice
    assert set(before.values()) <= set(after)  # every answer finished before the kill kept as it was
    assert not other_log.exists()
    # the same answers and scores (the file's order is the resumed run's: finished answers first)
    want_preds, want_rows, want_results = _eval_outputs(one_process_eval)
    got_preds, got_rows, got_results = _eval_outputs(out)
    assert sorted(got_preds.splitlines()) == sorted(want_preds.splitlines())
    assert (got_rows, got_results) == (want_rows, want_results)
