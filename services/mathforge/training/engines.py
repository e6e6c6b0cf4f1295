"""Engines wrap a model with its optimizer and schedule for one way of distributing it.

    engine = build_engine(config, model, dist_env)
    with engine.micro_step(last=i == n - 1) as model:                  # per micro-step
        engine.backward(compute_loss(model, batch))
    grad_norm = engine.step()                                           # per optimizer step

Both satisfy `TrainEngine`. A caller whose optimizer steps always take the configured number of
micro-steps may leave `last` out (the engine counts); one whose batches vary in size (GRPO with
dynamic sampling) says which micro-step is the last, and the gradient all-reduce happens there.

DDPEngine: torch DistributedDataParallel (gloo on CPU, nccl on GPU), torch AdamW, gradient
accumulation with no_sync. DeepSpeedEngine: ZeRO stage 2/3 (optionally with CPU offload) from a
JSON in configs/deepspeed/, its "auto" values filled from the training config. Both save and load
exactly what a resumed run needs: weights, optimizer and scheduler state.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from mathforge.training.config import ConfigError, TrainConfig
from mathforge.training.distributed import DistEnv
from mathforge.training.schedule import build_scheduler, lr_factor_fn


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only; norms and biases are not decayed (the usual practice)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class TrainEngine(Protocol):
    """What a training loop drives, whatever distributes the model."""

    module: torch.nn.Module  # the bare model (for scoring, saving, publishing)
    loss_multiplier: float  # multiply a loss normalised over the global batch by this before backward

    def micro_step(self, last: bool | None = None) -> AbstractContextManager[torch.nn.Module]:
        """The model to run one micro-batch's forward on. `last` says whether this micro-step ends the
        optimizer step (its backward all-reduces the gradients); None = count to the accumulation
        the engine was built with."""
        ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> float:
        """Applies the optimizer step; returns the gradient norm before clipping."""
        ...

    def lr(self) -> float: ...

    def full_state_dict(self) -> dict[str, torch.Tensor] | None: ...


class UnsyncedGradientsError(RuntimeError):
    """An optimizer step was asked for before the gradients of its micro-steps were all-reduced."""


class DDPEngine:
    """Plain data parallelism with torch's DDP (or none on one process)."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module, env: DistEnv, accumulation: int):
        self.env = env
        self.accumulation = accumulation
        self.module = model.to(env.device)
        self.wrapped: torch.nn.Module = (
            DistributedDataParallel(
                self.module, device_ids=[env.local_rank] if env.device.type == "cuda" else None
            )
            if env.distributed
            else self.module
        )
        optim = config.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(self.module, optim.weight_decay),
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            eps=optim.eps,
            foreach=False,
        )
        self.scheduler = build_scheduler(self.optimizer, config.schedule, config.batch.steps)
        self.grad_clip = optim.grad_clip
        self._micro = 0
        self._unsynced = False
        # A loss normalised over the whole global batch must be multiplied back by the world size,
        # because DDP averages gradients over processes.
        self.loss_multiplier = float(env.world_size)

    @contextlib.contextmanager
    def micro_step(self, last: bool | None = None) -> Iterator[torch.nn.Module]:
        """The model to run forward on; skips the gradient all-reduce until the last micro-step."""
        if last is None:
            last = (self._micro + 1) % self.accumulation == 0
        if isinstance(self.wrapped, DistributedDataParallel) and not last:
            with self.wrapped.no_sync():
                yield self.wrapped
        else:
            yield self.wrapped
        self._micro += 1
        self._unsynced = not last

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        """Clips, updates, advances the schedule; returns the gradient norm before clipping."""
        if self._unsynced:
            raise UnsyncedGradientsError(
                "optimizer step after a micro-step not marked last: its gradients were never all-reduced"
            )
        self._micro = 0
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Weights to publish as safetensors (None = the module's own state dict)."""
        return None


class DeepSpeedEngine:
    """DeepSpeed ZeRO; DeepSpeed does the accumulation, clipping and mixed precision."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module, env: DistEnv, accumulation: int):
        import deepspeed

        self.env = env
        self.accumulation = accumulation
        ds_config = deepspeed_config(config, env, accumulation)
        self.stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
        factor = lr_factor_fn(config.schedule, config.batch.steps)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=param_groups(model, config.optim.weight_decay),
            config=ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor),
        )
        self.module = self.engine.module
        self._unsynced = False
        # DeepSpeed averages over processes too; the accumulation scaling is switched off in backward.
        self.loss_multiplier = float(env.world_size)

    @contextlib.contextmanager
    def micro_step(self, last: bool | None = None) -> Iterator[torch.nn.Module]:
        if last is not None:
            # overrides DeepSpeed's own count: its reduction and optimizer step follow the caller
            self.engine.set_gradient_accumulation_boundary(last)
        yield self.engine
        self._unsynced = last is False

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()  # an optimizer step only at the accumulation boundary

    def step(self) -> float:
        if self._unsynced:
            raise UnsyncedGradientsError(
                "optimizer step after a micro-step not marked last: DeepSpeed has not stepped"
            )
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        if self.stage == 3:
            # Collective: every rank takes part; rank 0 gets the gathered weights.
            return self.engine._zero3_consolidated_16bit_state_dict()
        return None


def deepspeed_config(config: TrainConfig, env: DistEnv, accumulation: int) -> dict[str, Any]:
    """The DeepSpeed JSON with its "auto" values taken from the training config."""
    path = Path(config.engine.deepspeed_config)
    if not path.is_file():
        raise ConfigError(f"engine.deepspeed_config {path}: no such file")
    ds = json.loads(path.read_text())
    on_gpu = env.device.type == "cuda"
    ds["train_micro_batch_size_per_gpu"] = config.batch.micro_batch_size
    ds["gradient_accumulation_steps"] = accumulation
    ds["train_batch_size"] = config.batch.micro_batch_size * accumulation * env.world_size
    ds["gradient_clipping"] = config.optim.grad_clip
    ds.setdefault("bf16", {})["enabled"] = on_gpu and ds.get("bf16", {}).get("enabled", "auto") in (
        True,
        "auto",
    )
    ds.pop("fp16", None)
    optimizer = ds.setdefault("optimizer", {"type": "AdamW", "params": {}})
    optimizer["params"].update(
        {
            "lr": config.optim.lr,
            "betas": [config.optim.beta1, config.optim.beta2],
            "eps": config.optim.eps,
            "weight_decay": config.optim.weight_decay,
        }
    )
    if not on_gpu:
        # DeepSpeed's fused Adam needs a compiler and a GPU; torch's AdamW is exact and ready.
        optimizer["params"]["torch_adam"] = True
        # Offloading to the CPU is a no-op on a CPU run; let it keep torch's AdamW.
        ds["zero_force_ds_cpu_optimizer"] = False
    ds.setdefault("steps_per_print", 1_000_000_000)
    return ds


def build_engine(config: TrainConfig, model: torch.nn.Module, env: DistEnv) -> TrainEngine:
    """The engine `config.engine.kind` names; `accumulation` is only the default count of micro-steps
    per optimizer step (callers that pass `last` to micro_step decide it per step)."""
    accumulation = config.accumulation_steps(env.world_size)
    if config.engine.kind == "deepspeed":
        return DeepSpeedEngine(config, model, env, accumulation)
    return DDPEngine(config, model, env, accumulation)
