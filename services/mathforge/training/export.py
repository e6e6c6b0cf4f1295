"""`mathforge checkpoint export`: a Hugging Face model directory (safetensors shards with an index,
config, tokenizer) from any checkpoint, for the sampler, the reward service and users.

    mathforge checkpoint export runs/sft --output exported/sft --dtype bfloat16
    mathforge checkpoint export runs/grpo/step-400 --output exported/grpo --max-shard-gb 5
    mathforge checkpoint export runs/reward/final --output exported/rm

A run directory exports its newest intact step; a step directory is verified against its manifest
and its fp32 training weights (train_state/) are exported, whatever world size or engine wrote them;
a model directory (final/, a published version) is resharded. Tensors are read and written one at
a time, so exporting a 7B model needs about one shard of memory, not the model. The command's parser
is in training/export_cli.py, so that `mathforge` starts without importing torch.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mathforge.models.checkpoint import (
    WEIGHTS,
    WEIGHTS_INDEX,
    CheckpointError,
    atomic_directory,
    read_manifest,
    verify_files,
)
from mathforge.models.presets import parse_dtype
from mathforge.training.checkpointing import TRAIN_STATE_DIR, find_intact_checkpoint
from mathforge.training.distributed import DistEnv
from mathforge.training.train_state import read_index

# A tensor's name, shape, and how to read it.
Tensors = list[tuple[str, list[int], Callable[[], torch.Tensor]]]


def _model_weights(model_dir: Path) -> Tensors:
    files = (
        [model_dir / WEIGHTS]
        if (model_dir / WEIGHTS).exists()
        else sorted(model_dir.glob("model-*.safetensors"))
    )
    if not files:
        raise CheckpointError(f"{model_dir}: no {WEIGHTS} or model-*.safetensors shards")
    found: Tensors = []
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                shape = list(handle.get_slice(name).get_shape())
                found.append((name, shape, _reader(path, name)))
    return found


def _train_state_weights(state_dir: Path) -> Tensors:
    index = read_index(state_dir)
    return [
        (name, shape, _reader(state_dir / index["tensors"][f"weight/{name}"], f"weight/{name}"))
        for name, shape in index["shapes"].items()
    ]


def _reader(path: Path, key: str) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor(key)

    return read


def resolve_source(source: Path) -> tuple[Path, Tensors]:
    """The directory holding config and tokenizer, and the weights to export, for a run, step or
    model directory."""
    if not source.is_dir():
        raise CheckpointError(f"{source}: no such checkpoint directory")
    if (source / "latest").exists() or list(source.glob("step-*")):
        step = find_intact_checkpoint(source, DistEnv(0, 0, 1, torch.device("cpu")))
        if step is None:
            raise CheckpointError(f"{source}: the run has no checkpoint yet (no `latest`)")
        source = step
    if (source / TRAIN_STATE_DIR).is_dir():
        verify_files(source, read_manifest(source))
        return source / "model", _train_state_weights(source / TRAIN_STATE_DIR)
    if (source / "config.json").exists():
        return source, _model_weights(source)
    raise CheckpointError(f"{source}: neither a run, a step-<n> nor a model directory (no config.json)")


def _shards(tensors: Tensors, max_bytes: int, itemsize: int) -> list[Tensors]:
    shards: list[Tensors] = [[]]
    held = 0
    for entry in tensors:
        size = itemsize * max(1, int(torch.Size(entry[1]).numel()))
        if shards[-1] and held + size > max_bytes:
            shards.append([])
            held = 0
        shards[-1].append(entry)
        held += size
    return shards


def export_checkpoint(
    source: str | Path, output: str | Path, dtype: str | None = None, max_shard_bytes: int = 5 << 30
) -> Path:
    """Writes `output` (atomically) as a Hugging Face directory; returns it."""
    config_dir, tensors = resolve_source(Path(source))
    config = json.loads((config_dir / "config.json").read_text())
    target = (
        parse_dtype(dtype) or parse_dtype(config.get("torch_dtype") or config.get("dtype")) or torch.float32
    )
    itemsize = torch.empty((), dtype=target).element_size()
    shards = _shards(sorted(tensors, key=lambda t: t[0]), max_shard_bytes, itemsize)
    out = Path(output)
    with atomic_directory(out) as staging:
        for path in config_dir.iterdir():
            if path.is_file() and not path.name.endswith(".safetensors") and path.name != WEIGHTS_INDEX:
                shutil.copy2(path, staging / path.name)
        config["torch_dtype"] = str(target).removeprefix("torch.")
        config.pop("dtype", None)
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        weight_map, total = {}, 0
        for number, shard in enumerate(shards, start=1):
            name = WEIGHTS if len(shards) == 1 else f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            tensors_out = dict(_read_all(shard, target))
            total += sum(t.numel() * t.element_size() for t in tensors_out.values())
            save_file(tensors_out, str(staging / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors_out, name))
        if len(shards) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (staging / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return out


def _read_all(shard: Tensors, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    for name, shape, read in shard:
        yield name, read().to(dtype).reshape(shape).contiguous()
