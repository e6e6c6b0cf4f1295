"""The sampler's end of LoadWeights over the collective: join the trainer's group, receive the
weights bucket by bucket straight into a backend's tensors, and check them against the trainer's
checksum.

    receiver = StreamReceiver()
    plans = receiver.check(request.stream, backend_tensors)      # WeightsError before joining
    received = receiver.receive(request.stream, backend_tensors)  # Received(bytes, checksum)

A group is kept while the trainer keeps its id (the replica set did not change), so a run pays for
forming it once; a new id drops the old group and joins the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mathforge.models.transfer import (
    BACKENDS,
    Checksum,
    TensorPlan,
    TransferError,
    TransferGroup,
    bucket_ranges,
    connect_store,
    dtype_name,
    join_group,
    receive_checksum,
    start_broadcast,
    unpacked,
)
from mathforge.sampler.backend import WeightsError
from mathforge.v1 import sampler_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    bytes: int
    checksum: str


def stream_plans(stream: sampler_pb2.WeightStream) -> list[TensorPlan]:
    return [TensorPlan(t.name, t.dtype, tuple(int(s) for s in t.shape)) for t in stream.tensors]


class StreamReceiver:
    """Receives policy versions over the trainer's weight-transfer group."""

    def __init__(self) -> None:
        self.group_id = ""
        self.group: TransferGroup | None = None
        self.store: dist.Store | None = None  # kept open while the group lives

    def check(
        self, stream: sampler_pb2.WeightStream, targets: Sequence[tuple[str, torch.Tensor]]
    ) -> list[TensorPlan]:
        """The stream's plan, after checking it fits `targets` tensor for tensor; WeightsError naming
        the first difference otherwise (nothing has been received yet)."""
        if stream.backend not in BACKENDS:
            raise WeightsError(f"stream backend {stream.backend!r} is not one of {', '.join(BACKENDS)}")
        if not 1 <= stream.rank < stream.world_size:
            raise WeightsError(f"stream rank {stream.rank} is outside 1..{stream.world_size - 1}")
        if not stream.store_address or not stream.group_id:
            raise WeightsError("stream needs store_address and group_id")
        plans = stream_plans(stream)
        if len(plans) != len(targets):
            raise WeightsError(
                f"the trainer sends {len(plans)} tensors and the serving model has {len(targets)}: "
                "they do not fit the serving model"
            )
        for plan, (name, tensor) in zip(plans, targets, strict=True):
            if (
                plan.name != name
                or plan.shape != tuple(tensor.shape)
                or plan.dtype != dtype_name(tensor.dtype)
            ):
                raise WeightsError(
                    f"tensor {plan.name} {plan.dtype}{list(plan.shape)} does not fit the serving model's "
                    f"{name} {dtype_name(tensor.dtype)}{list(tensor.shape)}"
                )
        starts = list(stream.bucket_starts)
        if not starts or starts[0] != 0 or starts != sorted(set(starts)) or starts[-1] >= len(plans):
            raise WeightsError(f"bucket_starts {starts[:8]} do not split {len(plans)} tensors")
        return plans

    def _group(self, stream: sampler_pb2.WeightStream, device: torch.device):
        if self.group is not None and self.group_id == stream.group_id:
            return self.group
        self.group = None
        timeout = stream.timeout_s or 300.0
        self.store = connect_store(stream.store_address, timeout)
        self.group = join_group(
            self.store, stream.group_id, stream.rank, stream.world_size, stream.backend, timeout
        )
        self.group_id = stream.group_id
        log.info(
            "joined weight transfer group",
            extra={"fields": {"group": stream.group_id, "rank": stream.rank, "world": stream.world_size}},
        )
        return self.group

    def receive(
        self, stream: sampler_pb2.WeightStream, targets: Sequence[tuple[str, torch.Tensor]]
    ) -> Received:
        """Receives every bucket into `targets` (which no call may be sampling from) and checks the
        checksum. Blocking: run it off the event loop."""
        plans = self.check(stream, targets)
        device = targets[0][1].device
        try:
            group = self._group(stream, device)
            checksum = Checksum()
            ranges = bucket_ranges(list(stream.bucket_starts), len(plans))
            sizes = [sum(p.nbytes for p in plans[a:b]) for a, b in ranges]
            # two buffers: bucket i+1 arrives while bucket i is copied into place and checksummed
            buffers = [torch.empty(max(sizes), dtype=torch.uint8, device=device) for _ in range(2)]
            parts = [buffers[i % 2][:size] for i, size in enumerate(sizes)]
            arriving = start_broadcast(group, parts[0])
            total = 0
            for index, (first, end) in enumerate(ranges):
                size, part = sizes[index], parts[index]
                arriving.wait()
                if index + 1 < len(ranges):
                    arriving = start_broadcast(group, parts[index + 1])
                with torch.no_grad():
                    for view, (_, target) in zip(
                        unpacked(part, plans[first:end]), targets[first:end], strict=True
                    ):
                        target.copy_(view)
                        checksum.update(target)
                total += size
            sent = receive_checksum(group, device)
        except (TransferError, RuntimeError) as exc:
            self.group, self.group_id = None, ""  # a broken group is never reused
            raise WeightsError(f"weight transfer in group {stream.group_id} failed: {exc}") from exc
        digest = checksum.hexdigest()
        if digest != sent:
            raise WeightsError(f"received weights have checksum {digest}, the trainer's are {sent}")
        return Received(total, digest)
