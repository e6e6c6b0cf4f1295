"""The optimizer side of a checkpoint in a form no world size or engine owns: per parameter name,
the fp32 weight and each AdamW moment as a full tensor in safetensors files, plus JSON for the step
count, the learning rates and the schedule.

    save_train_state(engine, staging / "train_state", env)   # collective; returns files written
    load_train_state(engine, step_dir / "train_state", env)  # collective

DDP, ZeRO-2 and ZeRO-3 write the same files, so a run saved by 8 processes under ZeRO-3 resumes on
2 under DDP (or the reverse) with the same weights, moments and schedule: the optimizer state is
resharded, not dropped. Saving: every process walks the parameters in the same order (ZeRO's
gathers are collective) and keeps the full tensors of the parameters assigned to it, flushing them
to a file whenever `shard_bytes` is reached, so no process holds more than that plus one parameter.
Loading: each process reads one parameter at a time and keeps its partition (ZeRO) or all of it
(DDP). Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file

from mathforge.training.distributed import DistEnv

INDEX = "train_state.json"
MOMENTS = ("exp_avg", "exp_avg_sq")
SHARD_BYTES = 2 << 30  # 2 GiB files: large enough to be few, small enough to write in one go


class TrainStateError(RuntimeError):
    """The saved state does not fit the model being resumed."""


def _zero_optimizer(engine: Any) -> Any | None:
    """DeepSpeed's ZeRO optimizer when the engine runs ZeRO stage 1-3, else None."""
    if getattr(engine, "stage", 0) and hasattr(engine, "engine"):
        return engine.engine.optimizer
    return None


def _base_optimizer(engine: Any) -> torch.optim.Optimizer:
    zero = _zero_optimizer(engine)
    return zero.optimizer if zero is not None else engine.optimizer


def _shape(param: torch.nn.Parameter) -> tuple[int, ...]:
    return tuple(getattr(param, "ds_shape", param.shape))


def named_trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def assign_owners(sizes: list[int], world_size: int) -> list[int]:
    """Greedy balance of parameters over processes by size (deterministic in the order given)."""
    load = [0] * world_size
    owners = []
    for size in sizes:
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners.append(rank)
        load[rank] += size
    return owners


def _full_tensor(engine: Any, param: torch.nn.Parameter, key: str) -> torch.Tensor | None:
    """The whole fp32 `key` ("weight" or a moment) of one parameter; collective under ZeRO."""
    if _zero_optimizer(engine) is not None:
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        if key == "weight":
            return safe_get_full_fp32_param(param)
        return safe_get_full_optimizer_state(param, key)
    if key == "weight":
        return param.detach()
    return engine.optimizer.state.get(param, {}).get(key)


def _step_count(engine: Any) -> int:
    for state in _base_optimizer(engine).state.values():
        if "step" in state:
            return int(float(state["step"]))
    return 0


def _scheduler_state(engine: Any) -> dict[str, Any]:
    # LambdaLR's state is numbers and lists (its lambdas are functions, saved as None).
    return {k: v for k, v in engine.scheduler.state_dict().items() if k != "lr_lambdas"}


def save_train_state(engine: Any, directory: Path, env: DistEnv, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Writes this process's share of the state under `directory`; rank 0 also writes the index.
    Collective. Returns the files this process wrote, relative to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    params = named_trainable(engine.module)
    owners = assign_owners([_numel(p) for _, p in params], env.world_size)
    moments = _step_count(engine) > 0
    keys = ("weight", *MOMENTS) if moments else ("weight",)
    zero = _zero_optimizer(engine)
    if moments and zero is not None and hasattr(zero, "_lazy_init_hp_params_optimizer_state"):
        # ZeRO-1/2 link each parameter to its moments lazily; on some optimizer paths the link is
        # marked done before the moments exist, so it is redone here.
        zero._hp_optimizer_states_linked = False
        zero._lazy_init_hp_params_optimizer_state()
    pending: dict[str, torch.Tensor] = {}
    written: dict[str, str] = {}
    files: list[str] = []

    def flush() -> None:
        name = f"state-r{env.rank:05d}-{len(files):05d}.safetensors"
        save_file(pending, str(directory / name))
        written.update(dict.fromkeys(pending, name))
        files.append(name)
        pending.clear()

    held = 0
    for (name, param), owner in zip(params, owners, strict=True):
        for key in keys:
            tensor = _full_tensor(engine, param, key)
            if owner != env.rank:
                continue
            if tensor is None:
                raise TrainStateError(f"no {key} for parameter {name} in the optimizer")
            pending[f"{key}/{name}"] = tensor.detach().to("cpu", torch.float32).reshape(_shape(param)).clone()
            held += pending[f"{key}/{name}"].numel() * 4
        if held >= shard_bytes:
            flush()
            held = 0
    if pending:
        flush()
    every_rank = [written]
    if env.distributed:
        every_rank = [{} for _ in range(env.world_size)]
        dist.all_gather_object(every_rank, written)
    if env.is_main:
        optimizer = _base_optimizer(engine)
        index = {
            "format": 1,
            "step": _step_count(engine),
            "moments": moments,
            "param_groups": [
                {k: v for k, v in group.items() if k != "params" and isinstance(v, int | float | list | bool)}
                for group in optimizer.param_groups
            ],
            "scheduler": _scheduler_state(engine),
            "shapes": {name: list(_shape(p)) for name, p in params},
            "tensors": {k: v for part in every_rank for k, v in sorted(part.items())},
        }
        (directory / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        files.append(INDEX)
    return files


def _numel(param: torch.nn.Parameter) -> int:
    return int(getattr(param, "ds_numel", param.numel()))


def read_index(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainStateError(f"{directory / INDEX}: unreadable ({exc})") from exc


def _check_fits(index: dict[str, Any], params: list[tuple[str, torch.nn.Parameter]], where: Path) -> None:
    saved = index["shapes"]
    names = [n for n, _ in params]
    missing = [n for n in names if n not in saved]
    extra = [n for n in saved if n not in names]
    if missing or extra:
        raise TrainStateError(
            f"{where}: the checkpoint's parameters differ from the model's "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); resume with the same model preset"
        )
    for name, param in params:
        if list(_shape(param)) != saved[name]:
            raise TrainStateError(
                f"{where}: {name} has shape {saved[name]}, the model's is {list(_shape(param))}"
            )


def _init_zero_moments(zero: Any, step: int) -> None:
    """Creates AdamW's state for ZeRO's flat partitions (it exists only after a first step), so
    the moments can be written into it before training goes on."""
    base = zero.optimizer
    # ZeRO-3 keys the state by its fp32 partitions, which sit in the param groups only during a step.
    flats = getattr(zero, "fp32_partitioned_groups_flat", None) or [
        p for group in base.param_groups for p in group["params"]
    ]
    for flat in flats:
        if flat not in base.state or "exp_avg" not in base.state[flat]:
            base.state[flat] = {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.zeros_like(flat),
                "exp_avg_sq": torch.zeros_like(flat),
            }
        else:
            base.state[flat]["step"] = torch.tensor(float(step))
    if hasattr(zero, "_lazy_init_hp_params_optimizer_state"):  # ZeRO-1/2 link their views lazily
        zero._hp_optimizer_states_linked = False
        zero._lazy_init_hp_params_optimizer_state()


@torch.no_grad()
def load_train_state(engine: Any, directory: Path, env: DistEnv) -> None:
    """Puts the saved weights, moments, step count, learning rates and schedule into the engine,
    whatever world size and engine wrote them. Collective under ZeRO-3 (its weight refresh)."""
    index = read_index(directory)
    params = named_trainable(engine.module)
    _check_fits(index, params, directory)
    zero = _zero_optimizer(engine)
    optimizer = _base_optimizer(engine)
    if index["moments"] and zero is not None:
        _init_zero_moments(zero, int(index["step"]))
    handles: dict[str, Any] = {}
    try:
        for name, param in params:
            for key in ("weight", *(MOMENTS if index["moments"] else ())):
                file = index["tensors"][f"{key}/{name}"]
                if file not in handles:
                    handles[file] = _open(directory / file)
                try:
                    value = handles[file].get_tensor(f"{key}/{name}")
                except Exception as exc:
                    raise TrainStateError(f"{directory / file}: cannot read {key}/{name} ({exc})") from exc
                _put(engine, zero, optimizer, param, key, value, int(index["step"]))
    finally:
        handles.clear()
    if zero is not None:
        _refresh_zero_weights(zero)
    _restore_schedule(engine.scheduler, index["scheduler"])


def _restore_schedule(scheduler: Any, saved: dict[str, Any]) -> None:
    """Moves the schedule to the saved position and sets every group's rate from it. Only the
    position is taken: the number of param groups differs between engines (ZeRO-3 regroups), and
    the base rates and factors come from the run's config."""
    groups = scheduler.optimizer.param_groups  # the groups it drives (ZeRO's wrapper's, under ZeRO)
    scheduler.last_epoch = int(saved["last_epoch"])
    scheduler._step_count = int(saved.get("_step_count", scheduler.last_epoch + 1))
    factors = getattr(scheduler, "lr_lambdas", None)
    if factors is None:
        raise TrainStateError(f"cannot restore a {type(scheduler).__name__} schedule (LambdaLR expected)")
    if len(factors) == 1:
        factors = factors * len(groups)
    for group, base, factor in zip(groups, scheduler.base_lrs, factors, strict=False):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]


def _open(path: Path) -> Any:
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:
        raise TrainStateError(f"{path}: not a readable safetensors file ({exc})") from exc


def _put(
    engine: Any,
    zero: Any,
    optimizer: torch.optim.Optimizer,
    param: Any,
    key: str,
    value: torch.Tensor,
    step: int,
) -> None:
    if zero is not None:
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        if key == "weight":
            safe_set_full_fp32_param(param, value)
        else:
            safe_set_full_optimizer_state(param, value, key)
        return
    value = value.to(param.device)
    if key == "weight":
        param.copy_(value.to(param.dtype))
        return
    state = optimizer.state.setdefault(param, {})
    state.setdefault("step", torch.tensor(float(step)))
    state[key] = value.to(param.dtype).clone()


def _refresh_zero_weights(zero: Any) -> None:
    """Copies the restored fp32 masters into the low-precision weights the forward pass uses."""
    if hasattr(zero, "fp16_partitioned_groups_flat"):  # ZeRO-3: this rank's partitions
        for low, master in zip(
            zero.fp16_partitioned_groups_flat, zero.fp32_partitioned_groups_flat, strict=True
        ):
            low.data.copy_(master.data)
    else:  # ZeRO-1/2: this rank's partition, then an all-gather of the full weights
        zero.update_lp_params()
