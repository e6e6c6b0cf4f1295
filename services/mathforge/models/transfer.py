"""Policy weights over a torch.distributed group, shared by the trainer (who sends) and the sampler
(who receives): the checksum both sides compute, the bucket plan, and the group's rendezvous.

    checksum = weights_checksum(served_tensors(model))          # "crc32:1a2b3c4d"
    starts = plan_buckets([nbytes(s) for s in specs], 256 << 20)
    group = join_group(store, "v7-1a2b", rank=1, world_size=3, backend="gloo", timeout_s=60)
    broadcast_bytes(group, buffer)                               # rank 0 sends, the others receive

The group is made from a TCPStore the trainer hosts and the backend's own ProcessGroup class, not
torch's global default group: the trainer already has one for its data-parallel ranks, and a
sampler must be able to leave one group and join the next when the replica set changes.

Forming a group is two-phase so that no process waits out a timeout for a peer that will never
come: every receiver writes `<group>/ready/<rank>`, then waits for `<group>/go`; the trainer
writes `go` = "1" once all are ready, or "abort" when one of its LoadWeights calls failed first.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import torch
import torch.distributed as dist

CHECKSUM_ALGORITHM = "crc32"
#: The trainer's checksum travels after the last bucket as this many bytes of zero-padded ASCII.
CHECKSUM_BYTES = 64
BACKENDS = ("gloo", "nccl")


class TransferError(RuntimeError):
    """A weight transfer could not form its group or did not deliver what was planned."""


class TransferGroup(Protocol):
    """A transfer's group: a backend's own process group (ProcessGroupGloo, ProcessGroupNCCL), of
    which a transfer uses the broadcast."""

    def broadcast(self, tensors: list[torch.Tensor], opts: dist.BroadcastOptions) -> dist.Work: ...


def served_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors that make a policy version, in the model's own order: its parameters, tied ones
    once. Both sides of a transfer, and the checksum, use this order."""
    return [(name, param.data) for name, param in model.named_parameters()]


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes as they lie in memory (copied to the host first when on a GPU)."""
    flat = tensor.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    return flat.contiguous().view(torch.uint8).numpy().data


class Checksum:
    """A CRC-32 over tensors' bytes, fed in order; the same tensors in the same order give the same
    value whether they arrive whole or bucket by bucket."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, tensor: torch.Tensor) -> None:
        self.value = zlib.crc32(tensor_bytes(tensor), self.value)

    def hexdigest(self) -> str:
        return f"{CHECKSUM_ALGORITHM}:{self.value:08x}"


def weights_checksum(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    checksum = Checksum()
    for _, tensor in tensors:
        checksum.update(tensor)
    return checksum.hexdigest()


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of a transfer: name, dtype name (as in torch, without "torch.") and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=torch_dtype(self.dtype)).element_size()


def torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise TransferError(f"unknown tensor dtype {name!r}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def plan_buckets(sizes: Sequence[int], bucket_bytes: int) -> list[int]:
    """Start indices of buckets of whole tensors, each at most `bucket_bytes` unless one tensor alone
    is larger (it then travels alone)."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes {bucket_bytes} must be at least 1")
    starts: list[int] = []
    filled = bucket_bytes
    for index, size in enumerate(sizes):
        if filled + size > bucket_bytes and filled > 0:
            starts.append(index)
            filled = 0
        filled += size
    return starts


def bucket_ranges(starts: Sequence[int], count: int) -> list[tuple[int, int]]:
    """[start, end) tensor index ranges of each bucket."""
    bounds = [*starts, count]
    return [(bounds[i], bounds[i + 1]) for i in range(len(starts))]


# ---- the group --------------------------------------------------------------------------------
def host_store(port: int, timeout_s: float) -> dist.TCPStore:
    """The trainer's TCPStore, listening on every interface (port 0 = any free port)."""
    return dist.TCPStore(
        "0.0.0.0",
        port,
        is_master=True,
        timeout=datetime.timedelta(seconds=timeout_s),
        wait_for_workers=False,
    )


def connect_store(address: str, timeout_s: float) -> dist.TCPStore:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TransferError(f"store address {address!r} is not host:port")
    return dist.TCPStore(host, int(port), is_master=False, timeout=datetime.timedelta(seconds=timeout_s))


def make_group(
    store: dist.Store, group_id: str, rank: int, world_size: int, backend: str, timeout_s: float
) -> TransferGroup:
    """The backend's process group over `store` under the group's prefix (every rank must call it)."""
    prefixed = dist.PrefixStore(f"mathforge-weights/{group_id}/pg", store)
    timeout = datetime.timedelta(seconds=timeout_s)
    group: dist.ProcessGroupGloo | dist.ProcessGroupNCCL
    if backend == "gloo":
        group = dist.ProcessGroupGloo(prefixed, rank, world_size, timeout)
    elif backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        group = dist.ProcessGroupNCCL(prefixed, rank, world_size, options)
    else:
        raise TransferError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    # Both bind c10d's Backend.broadcast; torch's type stubs list it only on ProcessGroup.
    return cast(TransferGroup, group)


def ready_key(group_id: str, rank: int) -> str:
    return f"mathforge-weights/{group_id}/ready/{rank}"


def go_key(group_id: str) -> str:
    return f"mathforge-weights/{group_id}/go"


def join_group(
    store: dist.Store, group_id: str, rank: int, world_size: int, backend: str, timeout_s: float
) -> TransferGroup:
    """A receiver's side of forming the group: announce, wait for the trainer's go, then form it."""
    store.set(ready_key(group_id, rank), "1")
    store.wait([go_key(group_id)], datetime.timedelta(seconds=timeout_s))
    if store.get(go_key(group_id)) != b"1":
        raise TransferError(f"the trainer aborted weight transfer group {group_id}")
    return make_group(store, group_id, rank, world_size, backend, timeout_s)


def start_broadcast(group: TransferGroup, buffer: torch.Tensor) -> dist.Work:
    """Starts sending rank 0's `buffer` (uint8) into every other rank's buffer of the same size;
    `.wait()` on the result before touching the buffer again."""
    options = dist.BroadcastOptions()
    options.rootRank = 0
    options.rootTensor = 0
    return group.broadcast([buffer], options)


def broadcast_bytes(group: TransferGroup, buffer: torch.Tensor) -> None:
    start_broadcast(group, buffer).wait()


def send_checksum(group: TransferGroup, checksum: str, device: torch.device) -> None:
    raw = checksum.encode().ljust(CHECKSUM_BYTES, b"\0")
    broadcast_bytes(group, torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(device))


def receive_checksum(group: TransferGroup, device: torch.device) -> str:
    buffer = torch.zeros(CHECKSUM_BYTES, dtype=torch.uint8, device=device)
    broadcast_bytes(group, buffer)
    return bytes(buffer.cpu().tolist()).rstrip(b"\0").decode()


def pack(tensors: Sequence[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Copies tensors' bytes back to back into `out` (uint8); returns the filled prefix."""
    offset = 0
    for tensor in tensors:
        raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
        out[offset : offset + raw.numel()].copy_(raw)
        offset += raw.numel()
    return out[:offset]


def unpacked(buffer: torch.Tensor, plans: Sequence[TensorPlan]) -> list[torch.Tensor]:
    """Views of `buffer` as the planned tensors (no copy, unless one starts misaligned for its type)."""
    views = []
    offset = 0
    for plan in plans:
        raw = buffer[offset : offset + plan.nbytes]
        dtype = torch_dtype(plan.dtype)
        if offset % torch.empty((), dtype=dtype).element_size():
            raw = raw.clone()  # packed after a tensor of a narrower type: copy to an aligned start
        views.append(raw.view(dtype).view(plan.shape))
        offset += plan.nbytes
    if offset != buffer.numel():
        raise TransferError(f"a bucket of {buffer.numel()} bytes does not hold its {offset} planned bytes")
    return views
