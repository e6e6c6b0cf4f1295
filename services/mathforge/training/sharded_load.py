"""Model creation and loading that never holds the whole model in one process, for ZeRO-3 runs.

    model = load_partitioned(model_dir, ds_config)               # then build_engine(config, model, env)
    model = prepare_partitioned(config, env, model_dir)          # the same, the DS config from the run's

Under `deepspeed.zero.Init` each parameter is partitioned as soon as its module is built, so a
process allocates only its 1/world_size share (plus one layer in flight); the weights are not
initialised (they are about to be overwritten). Each process then reads from the safetensors
files only the elements of its own partition: a partition is a contiguous range of the flattened
parameter, and `safe_open(...).get_slice` reads the rows that cover it, so a 7B checkpoint on 8
processes is read once in total, not eight times. DeepSpeed's engine takes the partitioned model
as it is. DDP and ZeRO-2 keep a full copy of the weights on every process by design; they load as
before (transformers creates the model on the meta device and reads the weights once).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from mathforge.models.checkpoint import WEIGHTS, WEIGHTS_INDEX, CheckpointError
from mathforge.training.config import TrainConfig
from mathforge.training.distributed import DistEnv


def zero_stage(config: TrainConfig) -> int:
    """The ZeRO stage the run's engine uses (0 for DDP)."""
    if config.engine.kind != "deepspeed":
        return 0
    ds = json.loads(Path(config.engine.deepspeed_config).read_text())
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def weight_files(model_dir: Path) -> dict[str, Path]:
    """Which safetensors file holds each tensor of a model directory."""
    if (model_dir / WEIGHTS_INDEX).exists():
        index = json.loads((model_dir / WEIGHTS_INDEX).read_text())
        return {name: model_dir / file for name, file in index["weight_map"].items()}
    if not (model_dir / WEIGHTS).exists():
        raise CheckpointError(f"{model_dir}: no {WEIGHTS} or {WEIGHTS_INDEX}")
    with safe_open(str(model_dir / WEIGHTS), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), model_dir / WEIGHTS)


def read_flat_range(handle: Any, name: str, start: int, stop: int) -> torch.Tensor:
    """Elements [start, stop) of the flattened tensor `name`, reading only the rows that hold them."""
    piece = handle.get_slice(name)
    shape = piece.get_shape()
    if len(shape) <= 1:
        return piece[start:stop].reshape(-1) if shape else handle.get_tensor(name).reshape(-1)
    row = math.prod(shape[1:])
    first, last = start // row, -(-stop // row)
    rows = piece[first:last].reshape(-1)
    return rows[start - first * row : stop - first * row]


def partitioned_model(model_dir: Path, ds_config: dict[str, Any]) -> PreTrainedModel:
    """The model of `model_dir` created partitioned over the processes, with no weights read yet;
    bf16 when the DeepSpeed config enables it, else fp32."""
    import deepspeed
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    dtype = torch.bfloat16 if ds_config.get("bf16", {}).get("enabled") is True else torch.float32
    # The dtype comes from ds_config: zero.Init's own dtype argument is not honoured on every
    # accelerator (on CPU it picks bf16 whatever is passed).
    with deepspeed.zero.Init(config_dict_or_path=ds_config), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


@torch.no_grad()
def read_partitions(model: PreTrainedModel, model_dir: Path) -> int:
    """Copies into each ZeRO-3 partition its elements from `model_dir`; returns the elements read."""
    files = weight_files(model_dir)
    handles: dict[Path, Any] = {}
    read = 0
    try:
        for name, param in model.named_parameters():
            if name not in files:
                raise CheckpointError(f"{model_dir}: no weights for {name}")
            if files[name] not in handles:
                handles[files[name]] = safe_open(str(files[name]), framework="pt")
            local = param.ds_tensor  # this process's partition, flat and padded at the end
            start = min(param.ds_numel, local.numel() * _partition_rank(param))
            stop = min(param.ds_numel, start + local.numel())
            if stop > start:
                values = read_flat_range(handles[files[name]], name, start, stop)
                local.narrow(0, 0, stop - start).copy_(values.to(local.dtype))
                read += stop - start
    finally:
        handles.clear()
    return read


def _partition_rank(param: Any) -> int:
    import torch.distributed as dist

    group = getattr(param, "ds_process_group", None)
    return dist.get_rank(group=group) if dist.is_initialized() else 0


def load_partitioned(model_dir: str | Path, ds_config: dict[str, Any]) -> PreTrainedModel:
    """A ZeRO-3-partitioned model holding `model_dir`'s weights; each process reads only its share."""
    directory = Path(model_dir)
    model = partitioned_model(directory, ds_config)
    read_partitions(model, directory)
    return model


def prepare_partitioned(config: TrainConfig, env: DistEnv, model_dir: str | Path) -> PreTrainedModel:
    """`load_partitioned` with the DeepSpeed settings the run's engine will use (so the partitions
    match), for pretraining, SFT and GRPO's policy."""
    from mathforge.training.engines import deepspeed_config

    ds_config = deepspeed_config(config, env, config.accumulation_steps(env.world_size))
    return load_partitioned(model_dir, ds_config)
