"""Process-group setup from the standard torch variables, and the clean exit.

Reads only RANK, LOCAL_RANK, WORLD_SIZE (and torch reads MASTER_ADDR / MASTER_PORT), so the same
entrypoint runs under plain torchrun, a Kubeflow PyTorchJob or a TrainJob. Without those variables
it runs as a single process without a process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int) -> torch.device:
    """cuda:<local_rank> when asked for (or "auto" and a GPU is present), else cpu."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("engine.device=cuda but no CUDA device is visible; use engine.device=cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto", use_deepspeed: bool = False) -> DistEnv:
    """Joins the process group (nccl on GPU, gloo on CPU) when WORLD_SIZE > 1."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # started by torchrun: never outlive it
        from mathforge.training.interrupt import die_with_parent

        die_with_parent()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_preference, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cpu":
        # Must be set before deepspeed is imported: it picks its accelerator at import time. Set for
        # DDP too: saving a checkpoint imports deepspeed through accelerate when it is installed, and
        # its auto-detection warns on every CPU run.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if use_deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend)
    elif world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistEnv(rank, local_rank, world_size, device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: float | int, device: torch.device) -> float:
    """The sum of `value` over all processes (the value itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def finish_distributed() -> None:
    """Leaves the process group cleanly: a barrier first, so no rank exits while another still
    talks to it (DeepSpeed on CPU has aborted at exit without it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
