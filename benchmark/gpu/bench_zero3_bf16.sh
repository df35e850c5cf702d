#!/usr/bin/env bash
# bf16 + DeepSpeed ZeRO-3 + flash attention (sdpa fallback) SFT benchmark on the GPUs of one machine.
# NOT RUN YET: written on a machine without a GPU; see README.md in this folder.
#
#   benchmark/gpu/bench_zero3_bf16.sh                       # tiny random Qwen2.5-VL + synthetic data, built here
#   MODEL=/models/Qwen2.5-VL-3B-Instruct benchmark/gpu/bench_zero3_bf16.sh --use_peft false
#
# Environment: MODEL (dir or Hub id; default: build the tiny model), DATA (GLEAM-X data; default:
# synthesise 400 pairs), NGPU (default: all visible), STEPS (default 20), BATCH (per GPU, default 4),
# BENCH_WARMUP (default 3), OUT (default outputs/bench-zero3-bf16), ATTN (force an attention kernel).
# Extra arguments go to recipes/sft.py (e.g. --use_peft false, --activation_checkpointing true).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
OUT="${OUT:-outputs/bench-zero3-bf16}"
WORK="${WORK:-$OUT/inputs}"
STEPS="${STEPS:-20}"
BATCH="${BATCH:-4}"
export BENCH_WARMUP="${BENCH_WARMUP:-3}"

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "error: no CUDA GPU visible; this benchmark measures GPU step time and memory" >&2
  exit 2
fi
NGPU="${NGPU:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}"

# bf16 needs Ampere or newer; refuse rather than silently measure something else.
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_bf16_supported() else 1)' \
  || { echo "error: this GPU has no bf16 support" >&2; exit 2; }

# flash_attention_2 when the flash-attn package imports, else PyTorch sdpa (which may itself pick a flash kernel).
if [[ -z "${ATTN:-}" ]]; then
  if "$PY" -c 'import flash_attn' 2>/dev/null; then ATTN=flash_attention_2; else ATTN=sdpa; fi
fi

# Inputs are built once, before the launch, so ranks never race to write them.
if [[ -z "${MODEL:-}" ]]; then
  MODEL="$WORK/model"
  [[ -f "$MODEL/config.json" ]] || "$PY" -m gleamx.cli.main models tiny --arch qwen2_5_vl --out "$MODEL"
fi
if [[ -z "${DATA:-}" ]]; then
  DATA="$WORK/data"
  [[ -f "$DATA/train.jsonl" ]] || "$PY" -m gleamx.cli.main data synth --out "$DATA" --n 400 --seed 0
fi

echo "bench: $NGPU GPU(s), attn=$ATTN, model=$MODEL, data=$DATA, steps=$STEPS, batch/GPU=$BATCH"
# The tiny recipe supplies the data/LoRA settings; the overrides below turn it into a bf16 GPU run.
"$PY" -m accelerate.commands.launch \
  --config_file accelerate_configs/zero3.yaml --num_processes "$NGPU" \
  benchmark/gpu/bench_sft.py --config recipes/tiny/sft_lora.yaml \
  --model_name_or_path "$MODEL" --dataset_name "$DATA" --output_dir "$OUT/run" --overwrite_output_dir true \
  --dtype bfloat16 --bf16 true --use_cpu false --attn_implementation "$ATTN" \
  --max_steps "$STEPS" --per_device_train_batch_size "$BATCH" --warmup_steps 0 \
  --logging_steps 1 --save_strategy "no" --report_to none \
  "$@"
echo "bench: result in $OUT/run/bench_result.json"
