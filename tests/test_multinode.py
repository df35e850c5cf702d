"""Multi-node jobs on the engines users run: a real 2-"node" accelerate job on this machine.

Each "node" is one ``recipes/slurm/launch_node.sh`` (what ``srun`` starts on every node of
``recipes/slurm/*.sbatch``) with SLURM's variables set by hand: ``--num_machines 2``, ``--machine_rank 0/1``,
rendezvous at 127.0.0.1, one CPU process per node over gloo. The result must equal a 1-node 2-process run of
the same recipe: the same ranks see the same batches, so the trained weights agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

from training_checks import (assert_gradients_flowed, assert_lora_trained, assert_moved, tensors,
                             tiny_encoder_at_start)
from processes import free_port, kill_tree
from test_distributed import dist_inputs  # noqa: F401  (the shared fixture)

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "recipes" / "slurm" / "launch_node.sh"
CPU_CONFIG = ROOT / "accelerate_configs" / "multi_node_cpu.yaml"
TIMEOUT_S = 600


def _node_env(nodes: int, rank: int, per_node: int, port: int) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the venv's `accelerate`, as on a cluster with it activated
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "SLURM_NNODES": str(nodes),
            "SLURM_NODEID": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "GPUS_PER_NODE": str(per_node), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_job(nodes: int, per_node: int, script_args: list[str]) -> None:
    """Start ``nodes`` launchers at once (as srun does) and wait for all; fail with each node's log tail."""
    port = free_port()
    procs = [subprocess.Popen(["bash", str(LAUNCH), str(CPU_CONFIG), *script_args], cwd=ROOT,
                              env=_node_env(nodes, r, per_node, port), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(nodes)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            kill_tree(p.pid)
        pytest.fail(f"{nodes}-node job: no exit within {TIMEOUT_S}s (rendezvous or collective hang)")
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"node {r} of {nodes}: exit {p.returncode}\n{log[-4000:]}"
    assert f"node 0 of {nodes}: {per_node} process(es), rendezvous at 127.0.0.1:{port}" in logs[0]


def _same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.allclose(ta[k], tb[k], atol=1e-6, rtol=0), k


def test_multi_node_configs_and_slurm_scripts_are_well_formed() -> None:
    for name, kind in (("multi_node_ddp.yaml", "MULTI_GPU"), ("multi_node_zero2.yaml", "DEEPSPEED"),
                       ("multi_node_zero3.yaml", "DEEPSPEED"), ("multi_node_cpu.yaml", "MULTI_GPU")):
        cfg = yaml.safe_load((ROOT / "accelerate_configs" / name).read_text(encoding="utf-8"))
        assert cfg["distributed_type"] == kind and cfg["num_machines"] == 2
        assert cfg["rdzv_backend"] == "static" and cfg["num_processes"] % cfg["num_machines"] == 0
        if kind == "DEEPSPEED":  # one accelerate launch per node (srun), not DeepSpeed's pdsh launcher
            assert cfg["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
    for script in ("launch_node.sh", "sft.sbatch", "retrieval.sbatch"):
        path = ROOT / "recipes" / "slurm" / script
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0, script
    for script, recipe in (("sft.sbatch", "recipes/sft.py"), ("retrieval.sbatch", "recipes/retrieval.py")):
        text = (ROOT / "recipes" / "slurm" / script).read_text(encoding="utf-8")
        assert "#SBATCH --ntasks-per-node=1" in text and f"launch_node.sh \"$config\" {recipe}" in text
        default = text.split("recipe=${1:-", 1)[1].split("}", 1)[0]
        assert (ROOT / default).is_file(), default  # the default recipe ships


def test_launch_node_refuses_outside_slurm_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    out = subprocess.run(["bash", str(LAUNCH), str(CPU_CONFIG), "recipes/sft.py"], env=env, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "SLURM_NNODES is not set" in out.stderr


@pytest.mark.slow
def test_sft_two_nodes_equals_one_node_two_processes(dist_inputs: SimpleNamespace, tmp_path: Path) -> None:  # noqa: F811
    def args(out: Path) -> list[str]:
        return ["recipes/sft.py", "--config", "recipes/tiny/sft_lora.yaml", "--model_name_or_path",
                str(dist_inputs.model), "--dataset_name", str(dist_inputs.data), "--output_dir", str(out),
                "--max_steps", "2", "--per_device_train_batch_size", "2", "--logging_steps", "1",
                "--save_strategy", "no"]

    run_job(2, 1, args(tmp_path / "two_nodes"))
    run_job(1, 2, args(tmp_path / "one_node"))
    for run in ("two_nodes", "one_node"):  # both trained: equal adapters are not two untouched ones
        assert_lora_trained(tmp_path / run)
        assert_gradients_flowed(tmp_path / run)
    _same_tensors(tmp_path / "two_nodes" / "adapter_model.safetensors",
                  tmp_path / "one_node" / "adapter_model.safetensors")


@pytest.mark.slow
def test_retrieval_two_nodes_equals_one_node_two_processes(tmp_path: Path) -> None:
    from gleamx.synth import synthesize

    synthesize(tmp_path / "data", n=160, seed=0, image_size=32, difficulty="toy")

    # the two-phase recipe (UAV, then all views balanced), one epoch a phase: phases across processes too
    phases = yaml.safe_load((ROOT / "recipes" / "retrieval" / "two_phase_tiny.yaml").read_text())["phases"]
    short = json.dumps([{**p, "epochs": 1, "batch_size": 8, "hard_negatives": 0} for p in phases])

    def args(out: Path) -> list[str]:
        return ["recipes/retrieval.py", "--config", "recipes/retrieval/two_phase_tiny.yaml", "--data",
                str(tmp_path / "data"), "--output_dir", str(out), "--img_size", "32", "--phases", short]

    run_job(2, 1, args(tmp_path / "two_nodes"))
    run_job(1, 2, args(tmp_path / "one_node"))
    for name in ("phase-1/model.safetensors", "model.safetensors"):
        _same_tensors(tmp_path / "two_nodes" / name, tmp_path / "one_node" / name)
    for run in ("two_nodes", "one_node"):  # each phase moved the weights, in both jobs
        phase1 = tensors(tmp_path / run / "phase-1" / "model.safetensors")
        assert_moved(tiny_encoder_at_start(img_size=32, seed=0), phase1, f"{run}: phase 1")
        assert_moved(phase1, tensors(tmp_path / run / "model.safetensors"), f"{run}: phase 2")
