#!/usr/bin/env bash
# The GPU day in one command: inputs (model + data, built once), Qwen2.5-VL-3B LoRA SFT under ZeRO-2,
# padded vs padding-free per-sample losses (flash attention), HF vs vLLM eval predictions, one GRPO step with
# vLLM colocate; one report (OUT/report.json + OUT/report.md). Each stage has a time budget; a failing
# stage does not stop the others. NOT RUN ON A GPU YET (see README.md here).
#
#   benchmark/gpu/run_all.sh                 # GPU: random full-size Qwen2.5-VL-3B, within 8 minutes
#   CPU=1 benchmark/gpu/run_all.sh           # CPU twin: tiny real-file model, every stage a CPU can run
#
# Environment: CPU, OUT, WORK, MODEL, DATA, STAGES, FAIL_STAGE, TOTAL_BUDGET_S, BUDGET_<STAGE>, PYTHON and
# the sizes listed in run_all.py's docstring. Exit: 0 no stage failed, 1 a stage failed, 2 no usable GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
# The checkout's gleamx (scripts run by path do not see the cwd); no network on the lent machine.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHON="$PY" PYTHONUNBUFFERED=1 \
  HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}" \
  HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
exec "$PY" "$ROOT/benchmark/gpu/run_all.py" "$@"
