#!/usr/bin/env bash
# The GPU check on a CUDA node, in one command (docs/gpu.md):
#   bash scripts/gpu-check.sh [OUT_DIR [gpu_check.py flags]]   (OUT_DIR: $OUT, else runs/gpu-check)
# Installs the wheels that scripts/gpu-wheels.sh put in .whl/ (no network needed), then runs
# bench/gpu_check.py, which writes gpu-check.json and gpu-check.md into OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu-check}}
py=${PYTHON:-python3}
# The carried wheels are for the GPU image's Python; a --dry-run rehearsal uses the local set.
if [[ " ${*:2} " != *" --dry-run "* ]] && compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/services${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}
exec "$py" bench/gpu_check.py --out "$out" "${@:2}"
