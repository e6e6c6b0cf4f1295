"""Runs inside each vLLM worker process (one per tensor-parallel rank): reads a safetensors
checkpoint from a shared path and hands its tensors to the model's own `load_weights`, which
shards them for that rank.

vLLM mixes this class into its worker when the engine is created with
`worker_extension_cls="mathforge.sampler.vllm_worker.PolicyWeightsWorker"`, and the backend calls it
through the engine's documented `collective_rpc("load_policy_checkpoint", args=(path,))`. It
imports nothing of vLLM, so this module stays importable on a CPU install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open


def checkpoint_tensors(path: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of every safetensors file in a checkpoint directory, read
    one at a time so host memory holds one tensor, not the model."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors files")
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                yield name, handle.get_tensor(name)


class PolicyWeightsWorker:
    """Worker extension: `self.model_runner` is the vLLM worker's model runner."""

    model_runner: Any

    def load_policy_checkpoint(self, path: str) -> int:
        """Loads every tensor of the checkpoint at `path` into the running model; returns the bytes read."""
        loaded = 0

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal loaded
            for name, tensor in checkpoint_tensors(path):
                loaded += tensor.numel() * tensor.element_size()
                yield name, tensor

        self.model_runner.model.load_weights(weights=counted())
        return loaded
