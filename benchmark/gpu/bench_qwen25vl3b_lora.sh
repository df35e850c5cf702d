#!/usr/bin/env bash
# Qwen2.5-VL-3B LoRA, one command: the shipped recipe for STEPS steps under ZeRO-2 (bf16), then
# gleamx-eval on N_EVAL samples with the trained adapter; step time, tokens/s, samples/s, image tokens
# per sample and peak GPU memory for both, in one JSON summary plus a short table.
# NOT RUN ON A GPU YET: written and checked (CPU=1) on a machine without one; see README.md here.
#
#   benchmark/gpu/bench_qwen25vl3b_lora.sh                                    # GPU, random full-size model
#   MODEL=/models/Qwen2.5-VL-3B-Instruct benchmark/gpu/bench_qwen25vl3b_lora.sh  # GPU, a local checkpoint
#   CPU=1 benchmark/gpu/bench_qwen25vl3b_lora.sh                              # plumbing check, no GPU
#
# Environment (GPU default / CPU=1 default):
#   MODEL           model dir; default: build a random-weight full-size Qwen2.5-VL-3B from the real
#                   checkpoint's files (CPU=1: the tiny real-file model) under WORK
#   DATA            GLEAM-X data dir; default: synthesise N_DATA pairs of IMAGE_SIZE px under WORK
#   STEPS           optimizer steps (30 / 2)          BENCH_WARMUP  steps left out of the averages (3 / 1)
#   N_EVAL          eval samples (64 / 4)             EVAL_BATCH    gleamx-eval --batch-size (16 / 2)
#   MAX_NEW_TOKENS  generated tokens cap (128 / 16)   EVAL_SPLIT    split evaluated (test)
#   IMAGE_SIZE      synthetic tile side (640 / 128)   N_DATA        pairs (max(400, 5 x N_EVAL) / max(40, 5 x N_EVAL))
#   NPROC           processes (all GPUs / 1)          ACCEL_CONFIG  (accelerate_configs/zero2.yaml / cpu.yaml)
#   BATCH, ACCUM    per-device batch / grad accumulation (recipe's 4 / 4; CPU=1: 2 / 1)
#   ATTN            force an attention kernel (default: the recipe's flash_attention_2, which falls back
#                   to sdpa with a notice where flash-attn is missing)
#   OUT             (outputs/bench-qwen25vl3b-lora[-cpu])   WORK (OUT/inputs)   PYTHON (python, else python3)
# Extra arguments go to the training script (recipes/sft.py's options).
# Exit codes: 0 ok; 2 no usable GPU (without CPU=1); anything else: the stage that failed says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Paths given relative to where the script was started from stay so after the cd (a Hub id as MODEL too).
for var in OUT WORK MODEL DATA; do
  value="${!var:-}"
  if [[ -n "$value" && "$value" != /* ]] && { [[ "$var" == OUT || "$var" == WORK ]] || [[ -e "$value" ]]; }; then
    printf -v "$var" '%s' "$PWD/$value"
  fi
done
cd "$ROOT"
PY="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
# The checkout's gleamx, also where it is not pip-installed (scripts run by path do not see the cwd).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
CPU="${CPU:-0}"
RECIPE=recipes/qwen2.5-vl-3b/sft_lora.yaml
ARCH=qwen2_5_vl

die() { echo "error: bench: $*" >&2; kill $(jobs -p) 2>/dev/null || true; exit 1; }  # and our background builds
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ "$CPU" == 1 ]]; then
  MODE=cpu
  OUT="${OUT:-outputs/bench-qwen25vl3b-lora-cpu}"
  STEPS="${STEPS:-2}"; N_EVAL="${N_EVAL:-4}"; EVAL_BATCH="${EVAL_BATCH:-2}"; MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-16}"
  IMAGE_SIZE="${IMAGE_SIZE:-128}"; MIN_DATA=40; export BENCH_WARMUP="${BENCH_WARMUP:-1}"
  ACCEL_CONFIG="${ACCEL_CONFIG:-accelerate_configs/cpu.yaml}"; NPROC="${NPROC:-1}"
  BATCH="${BATCH:-2}"; ACCUM="${ACCUM:-1}"  # 16 conversations through a 151,936-token lm_head per step: minutes on a CPU
else
  MODE=gpu
  OUT="${OUT:-outputs/bench-qwen25vl3b-lora}"
  STEPS="${STEPS:-30}"; N_EVAL="${N_EVAL:-64}"; EVAL_BATCH="${EVAL_BATCH:-16}"; MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-128}"
  IMAGE_SIZE="${IMAGE_SIZE:-640}"; MIN_DATA=400; export BENCH_WARMUP="${BENCH_WARMUP:-3}"
  ACCEL_CONFIG="${ACCEL_CONFIG:-accelerate_configs/zero2.yaml}"
  if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: bench: no CUDA GPU visible; this benchmark measures GPU time and memory (CPU=1 checks the plumbing)" >&2
    exit 2
  fi
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_bf16_supported() else 1)' \
    || { echo "error: bench: this GPU has no bf16 support (the recipe trains in bf16)" >&2; exit 2; }
  NPROC="${NPROC:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}"
fi
EVAL_SPLIT="${EVAL_SPLIT:-test}"
# Splits 75/5/20 (not synth's default 80/10/10): the test split holds N_EVAL with fewer pairs to render,
# and 400 pairs give 600 training conversations, more than 30 steps x 16 take (no epoch wrap).
N_DATA="${N_DATA:-$(( 5 * N_EVAL > MIN_DATA ? 5 * N_EVAL : MIN_DATA ))}"
WORK="${WORK:-$OUT/inputs}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}" \
  HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}" \
  PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs" "$WORK"
rm -rf "$OUT/train" "$OUT/eval" "$OUT/eval_bench.json" "$OUT/summary.json"

# --- 1. inputs: model and data, built side by side (GPU build, CPU synthesis), each once per WORK ---------
T0=$(now)
if [[ -z "${MODEL:-}" ]]; then
  if [[ "$MODE" == gpu ]]; then
    MODEL="$WORK/qwen2.5-vl-3b-random"
    MODEL_KIND="random-weight full-size Qwen2.5-VL-3B-Instruct (the real checkpoint's config, processor, tokenizer and chat template)"
    BUILD=(-c "import os; from gleamx.models.real_tiny import build_real_tiny_model as b
b(os.environ['BENCH_ARCH'], os.environ['BENCH_MODEL'], full_size=True, device='cuda')")
  else
    MODEL="$WORK/qwen2.5-vl-tiny-real"
    MODEL_KIND="random-weight tiny Qwen2.5-VL (the real checkpoint's files, sizes shrunk)"
    BUILD=(-m gleamx.cli.main models tiny --arch "$ARCH" --from-real --out "$MODEL")
  fi
  if [[ ! -f "$MODEL/.bench-built" ]]; then
    rm -rf "$MODEL"
    ( BENCH_ARCH="$ARCH" BENCH_MODEL="$MODEL" "$PY" "${BUILD[@]}" > "$OUT/logs/model.log" 2>&1 \
      && touch "$MODEL/.bench-built" ) &
    MODEL_PID=$!
  fi
else
  MODEL_KIND="given: $MODEL"
fi
if [[ -z "${DATA:-}" ]]; then
  DATA="$WORK/data-n$N_DATA-px$IMAGE_SIZE"
  DATA_KIND="gleamx.synth.synthesize(n=$N_DATA, image_size=$IMAGE_SIZE, seed=0, split_fractions=(0.75, 0.05, 0.2))"
  if [[ ! -f "$DATA/.bench-built" ]]; then
    rm -rf "$DATA"
    ( BENCH_DATA="$DATA" "$PY" -c "import os; from gleamx.synth import synthesize as s
print(s(os.environ['BENCH_DATA'], n=$N_DATA, seed=0, image_size=$IMAGE_SIZE, split_fractions=(0.75, 0.05, 0.2)))" \
        > "$OUT/logs/data.log" 2>&1 && touch "$DATA/.bench-built" ) &
    DATA_PID=$!
  fi
else
  DATA_KIND="given: $DATA"
fi
if [[ -n "${MODEL_PID:-}" ]]; then
  wait "$MODEL_PID" || { tail -n 30 "$OUT/logs/model.log" >&2; die "building the model failed (log: $OUT/logs/model.log)"; }
fi
if [[ -n "${DATA_PID:-}" ]]; then
  wait "$DATA_PID" || { tail -n 30 "$OUT/logs/data.log" >&2; die "synthesising the data failed (log: $OUT/logs/data.log)"; }
fi
INPUTS_S=$(since "$T0")
echo "bench: $MODE, $NPROC process(es), $ACCEL_CONFIG, model=$MODEL, data=$DATA, steps=$STEPS, eval=$N_EVAL (inputs ready in ${INPUTS_S}s)"

# --- 2. training: the shipped recipe; only model, data, output dir and step count (CPU=1: + batch, use_cpu) ---
OVERRIDES=(--model_name_or_path "$MODEL" --dataset_name "$DATA" --output_dir "$OUT/train"
           --overwrite_output_dir true --max_steps "$STEPS")
[[ "$MODE" == cpu ]] && OVERRIDES+=(--use_cpu true)  # TrainingArguments refuses bf16 without it on a CPU
[[ -n "${BATCH:-}" ]] && OVERRIDES+=(--per_device_train_batch_size "$BATCH")
[[ -n "${ACCUM:-}" ]] && OVERRIDES+=(--gradient_accumulation_steps "$ACCUM")
[[ -n "${ATTN:-}" ]] && OVERRIDES+=(--attn_implementation "$ATTN")
OVERRIDES+=("$@")
PORT="${MAIN_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
T0=$(now)
"$PY" -m accelerate.commands.launch --config_file "$ACCEL_CONFIG" --num_processes "$NPROC" --main_process_port "$PORT" \
  benchmark/gpu/bench_sft.py --config "$RECIPE" "${OVERRIDES[@]}" 2>&1 | tee "$OUT/logs/train.log" \
  || die "training failed (log: $OUT/logs/train.log)"
TRAIN_S=$(since "$T0")
[[ -f "$OUT/train/bench_result.json" ]] || die "training wrote no $OUT/train/bench_result.json"
[[ -f "$OUT/train/adapter_model.safetensors" ]] || die "training saved no adapter in $OUT/train"

# --- 3. gleamx-eval on N_EVAL samples with the trained adapter ------------------------------------------
T0=$(now)
"$PY" benchmark/gpu/bench_eval.py --model "$MODEL" --adapter "$OUT/train" --data "$DATA" --split "$EVAL_SPLIT" \
  --limit "$N_EVAL" --batch-size "$EVAL_BATCH" --max-new-tokens "$MAX_NEW_TOKENS" --output "$OUT/eval" \
  --result "$OUT/eval_bench.json" 2>&1 | tee "$OUT/logs/eval.log" \
  || die "gleamx-eval failed (log: $OUT/logs/eval.log)"
EVAL_S=$(since "$T0")

# --- 4. one summary -------------------------------------------------------------------------------------
json_list() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }
"$PY" benchmark/gpu/bench_report.py --train "$OUT/train/bench_result.json" --eval "$OUT/eval_bench.json" \
  --out "$OUT/summary.json" --mode "$MODE" \
  --set "model=$MODEL" --set "model_kind=$MODEL_KIND" --set "data=$DATA" --set "data_kind=$DATA_KIND" \
  --set "recipe=$RECIPE" --set "accelerate_config=$ACCEL_CONFIG" --set "num_processes=$NPROC" \
  --set "recipe_overrides=$(json_list "${OVERRIDES[@]}")" \
  --set "stage_wall_s={\"inputs\": $INPUTS_S, \"train\": $TRAIN_S, \"eval\": $EVAL_S}" \
  || die "the summary is incomplete ($OUT/summary.json)"
