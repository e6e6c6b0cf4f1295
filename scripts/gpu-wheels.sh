#!/usr/bin/env bash
# Downloads (and for DeepSpeed, builds) into .whl/ the wheels that a stock CUDA image with python3.12,
# torch, transformers, safetensors, grpcio's core, numpy and pyyaml lacks for bench/gpu_check.py.
# Run it on any Linux machine that reaches PyPI; copy .whl/ to the GPU node beside the checkout;
# scripts/gpu-check.sh installs them there without a network.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
dest=.whl
mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# Versions as pinned in pyproject.toml / constraints.txt; the generated stubs need grpcio and
# protobuf at least as new as the ones that generated them.
binary=(grpcio==1.85.1 grpcio-tools==1.85.1 protobuf==7.36.2 zstandard==0.25.0 pydantic-core==2.50.5)
pure=(grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 math-verify==0.9.0
  latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 dill==0.4.1 hjson==3.1.0
  pydantic==2.14.4 annotated-types==0.7.0 typing-inspection==0.4.5)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dest" "${binary[@]}"
"$py" -m pip download -q --no-deps --only-binary=:all: -d "$dest" "${pure[@]}"
# DeepSpeed ships only a source archive; with DS_BUILD_OPS=0 it builds a pure-Python wheel whose
# ops compile on first use (ZeRO-2 with torch's AdamW needs none).
DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dest" deepspeed==0.19.8
du -sh "$dest"
