#!/usr/bin/env bash
# GRPO on the GPU, one command: recipes/qwen2.5-vl-3b/grpo_lora.yaml as shipped (bf16, flash attention where
# installed, 8 answers a prompt, 384 completion tokens, fresh LoRA r 64) on a random-weight Qwen2.5-VL-3B built
# from the real checkpoint's files; time per step split into generation, reward computation and optimisation,
# and peak GPU memory (benchmark/bench_grpo.py --full-recipe).
# NOT RUN ON A GPU YET: written and checked with CPU=1 (tiny real-file model) on a machine without one.
#
#   benchmark/gpu/bench_grpo.sh            # GPU: 5 measured steps, 1 run (a few minutes on an H100-class GPU)
#   CPU=1 benchmark/gpu/bench_grpo.sh      # plumbing check, no GPU
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" \
  TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" PYTHONUNBUFFERED=1
ARGS=(--full-recipe --repeats "${REPEATS:-1}" --steps "${STEPS:-5}" --threads "${THREADS:-4}")
[[ "${CPU:-0}" == 1 ]] && ARGS+=(--cpu-twin --steps "${STEPS:-2}" --threads 1)
exec "$PY" benchmark/bench_grpo.py "${ARGS[@]}"
