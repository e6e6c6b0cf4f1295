"""Model creation and loading that never holds the whole model in one process, for ZeRO-3 runs.

    model = load_partitioned(model_dir, ds_config)               # then build_engine(config, model, env)
    model = prepare_partitioned(config, env, model_dir)          # the same, the DS config from the run's

Under `deepspeed.zero.Init` each parameter is partitioned as soon as its module is built, so a
process allocates only its 1/world_size share (plus one layer in flight); the weights are not
initialised (they are about to be overwritten). Each process then reads from the safetensors
files only the elements of its own partition: a partition is a contiguous range of the flattened
parameter, so one positioned read (no memory map) fetches it, a 7B checkpoint on 8 processes is
read once in total rather than eight times, and no process holds more than its share.
DeepSpeed's engine takes the partitioned model as it is. DDP and ZeRO-2 keep a full copy of the
weights on every process by design; they load as before.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
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


_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


class SafetensorsRanges:
    """Reads element ranges of the tensors in one safetensors file with plain positioned reads.

    A partition is a contiguous range of a flattened tensor, so it is one contiguous byte range of
    the file. Reading it with pread (not through a memory map) keeps the rest of the file out of
    the process: only the bytes asked for are read, and none count in its resident memory.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        try:
            (length,) = struct.unpack("<Q", os.pread(self.fd, 8, 0))
            header = json.loads(os.pread(self.fd, length, 8))
        except (struct.error, ValueError) as exc:
            os.close(self.fd)
            raise CheckpointError(f"{path}: not a safetensors file ({exc})") from exc
        header.pop("__metadata__", None)
        self.base = 8 + length
        self.tensors = header

    def read_range(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Elements [start, stop) of the flattened tensor `name`."""
        entry = self.tensors[name]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(f"{self.path}: {name} has dtype {entry['dtype']}, not a float type")
        size = torch.empty((), dtype=dtype).element_size()
        numel = math.prod(entry["shape"])
        if not 0 <= start <= stop <= numel:
            raise CheckpointError(f"{self.path}: {name} has {numel} elements, asked for [{start}, {stop})")
        first = self.base + entry["data_offsets"][0] + start * size
        data = bytearray(os.pread(self.fd, (stop - start) * size, first))
        if len(data) != (stop - start) * size:
            raise CheckpointError(f"{self.path}: truncated inside {name}")
        return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)

    def close(self) -> None:
        os.close(self.fd)


def partitioned_model(
    model_dir: Path,
    ds_config: dict[str, Any],
    model_class: Any = AutoModelForCausalLM,
    model_config: Any = None,
) -> PreTrainedModel:
    """The model of `model_dir` (a `model_class` of its config, or of `model_config`) created
    partitioned over the processes, with no weights read yet; bf16 when the DeepSpeed config
    enables it, else fp32."""
    import deepspeed
    from transformers.initialization import no_init_weights

    config = model_config or AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    dtype = torch.bfloat16 if ds_config.get("bf16", {}).get("enabled") is True else torch.float32
    # The dtype comes from ds_config: zero.Init's own dtype argument is not honoured on every
    # accelerator (on CPU it picks bf16 whatever is passed).
    with deepspeed.zero.Init(config_dict_or_path=ds_config), no_init_weights():
        model = model_class.from_config(config, dtype=dtype)
    return model


@torch.no_grad()
def read_partitions(model: PreTrainedModel, model_dir: Path, fresh: tuple[str, ...] = ()) -> int:
    """Copies into each ZeRO-3 partition its elements from `model_dir`; returns the elements read.
    Parameters named in `fresh` may be missing from the files (the caller initialises them)."""
    files = weight_files(model_dir)
    readers: dict[Path, SafetensorsRanges] = {}
    read = 0
    try:
        for name, param in model.named_parameters():
            if name not in files and name in fresh:
                continue
            if name not in files:
                raise CheckpointError(f"{model_dir}: no weights for {name}")
            if files[name] not in readers:
                readers[files[name]] = SafetensorsRanges(files[name])
            start, stop = partition_range(param)
            if stop > start:
                values = readers[files[name]].read_range(name, start, stop)
                param.ds_tensor.narrow(0, 0, stop - start).copy_(values.to(param.ds_tensor.dtype))
                read += stop - start
    finally:
        for reader in readers.values():
            reader.close()
    return read


def partition_range(param: Any) -> tuple[int, int]:
    """The elements [start, stop) of the flattened ZeRO-3 parameter that this process holds: its
    `ds_tensor` is that range, padded at the end of the last partition."""
    import torch.distributed as dist

    group = getattr(param, "ds_process_group", None)
    rank = dist.get_rank(group=group) if dist.is_initialized() else 0
    start = min(param.ds_numel, param.ds_tensor.numel() * rank)
    return start, min(param.ds_numel, start + param.ds_tensor.numel())


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


def load_policy(config: TrainConfig, env: DistEnv, model_dir: str | Path) -> tuple[PreTrainedModel, Any]:
    """A model to train and its tokenizer: partitioned under ZeRO-3 (each process reading its
    share), else the whole model as `load_model` gives it. GRPO's policy is built with this."""
    from transformers import AutoTokenizer

    from mathforge.models.checkpoint import load_model

    if zero_stage(config) != 3:
        return load_model(model_dir, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return prepare_partitioned(config, env, model_dir), tokenizer


@dataclass
class FrozenModel:
    """A model for scoring only (GRPO's pi_ref): eval mode, no gradients. Under ZeRO-3 `model` is
    partitioned and `engine` is the DeepSpeed engine whose hooks gather each layer for its forward."""

    model: torch.nn.Module
    engine: Any = None

    def elements(self) -> tuple[int, int]:
        """(elements this process holds, elements of the whole model)."""
        params = list(self.model.parameters())
        total = sum(int(getattr(p, "ds_numel", p.numel())) for p in params)
        held = sum(int(p.ds_tensor.numel()) if hasattr(p, "ds_tensor") else p.numel() for p in params)
        return held, total

    def release(self) -> None:
        """Removes the engine's hooks so the partitions can be freed (before loading a new pi_ref)."""
        if self.engine is not None and hasattr(self.engine, "destroy"):
            self.engine.destroy()
        self.engine = None


def load_frozen(config: TrainConfig, env: DistEnv, model_dir: str | Path) -> FrozenModel:
    """`model_dir`'s model to score with. Under ZeRO-3 it is created partitioned like the policy and
    each process reads only its share: a 7B pi_ref costs each of 8 GPUs 1/8 of its weights, not all
    of them. DeepSpeed's engine, built without an optimizer, gathers each layer's partitions for the
    forward pass (collective: every process scores the same number of micro-batches, as the
    policy's own forward passes already do). Other engines load the whole model on every process."""
    from mathforge.models.checkpoint import load_model

    if zero_stage(config) == 3:
        import deepspeed

        from mathforge.training.engines import deepspeed_config

        ds_config = deepspeed_config(config, env, config.accumulation_steps(env.world_size))
        for training_only in ("optimizer", "scheduler"):
            ds_config.pop(training_only, None)
        model = load_partitioned(model_dir, ds_config)
        model.requires_grad_(False)
        engine, *_ = deepspeed.initialize(model=model, config=ds_config)
        engine.module.eval()
        return FrozenModel(engine.module, engine)
    dtype = "bfloat16" if env.device.type == "cuda" else "float32"
    model, _ = load_model(str(model_dir), dtype=dtype, device=env.device)
    model.eval()
    model.requires_grad_(False)
    return FrozenModel(model)
