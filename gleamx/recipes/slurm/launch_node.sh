#!/usr/bin/env bash
# One node's share of a multi-node gleamx job: `srun` starts this once per node (see sft.sbatch, retrieval.sbatch),
# and it runs one `accelerate launch` that starts this node's processes and meets the other nodes.
#
#   launch_node.sh ACCELERATE_CONFIG SCRIPT [SCRIPT ARGS...]
#
# Read from SLURM (or set by hand outside it):
#   SLURM_NNODES     number of nodes                  -> --num_machines
#   SLURM_NODEID     this node's rank (0..N-1)        -> --machine_rank (SLURM_PROCID when unset)
#   MASTER_ADDR      the first node's address         -> --main_process_ip (default: the job's first host)
#   MASTER_PORT      a free port on it                -> --main_process_port (default 29500)
#   GPUS_PER_NODE    processes per node               (default: the GPUs nvidia-smi lists, at least 1)
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ACCELERATE_CONFIG SCRIPT [ARGS...]" >&2
  exit 2
fi
config=$1
shift
nodes=${SLURM_NNODES:?"SLURM_NNODES is not set: run under srun (sbatch recipes/slurm/*.sbatch) or set it"}
rank=${SLURM_NODEID:-${SLURM_PROCID:?"SLURM_NODEID/SLURM_PROCID is not set: run under srun or set it"}}
if [ -z "${MASTER_ADDR:-}" ]; then
  MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?}" | head -n 1)
fi
per_node=${GPUS_PER_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "${per_node:-0}" -ge 1 ] || per_node=1
echo "node $rank of $nodes: $per_node process(es), rendezvous at $MASTER_ADDR:${MASTER_PORT:-29500}" >&2
exec accelerate launch --config_file "$config" \
  --num_machines "$nodes" --machine_rank "$rank" --num_processes $((nodes * per_node)) \
  --main_process_ip "$MASTER_ADDR" --main_process_port "${MASTER_PORT:-29500}" \
  "$@"
