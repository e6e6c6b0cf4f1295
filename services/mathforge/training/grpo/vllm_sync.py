"""The trainer's side of streaming weights into vLLM samplers through vLLM's own weight-transfer API
(NCCL, GPU only): used by weight_sync.py when every sampler replica runs the vllm backend.

    send_to_vllm(streamer, module, version, zero3, plans, ranges, replicas)   # rank 0; others gather

vLLM forms its group with its StatelessProcessGroup and PyNccl communicator, so the trainer joins it
with `NCCLWeightTransferEngine.trainer_init` (rank 0) and sends with `trainer_send_weights` (packed
buffers), not with the torch process group the transformers samplers use. Each replica's engine
spans its tensor-parallel workers: replica i takes ranks rank_offset .. rank_offset + tp - 1. vLLM
loads tensors into its fused layout, so the replicas cannot checksum what they receive: the
trainer's checksum is computed first (one more pass over the weights, bucket by bucket) and sent in
the request; a replica reports it once vLLM confirmed the update. Needs vLLM importable on the
trainer (the GPU image has it).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import grpc
import torch

from mathforge.models.transfer import Checksum, TensorPlan, TransferError, torch_dtype
from mathforge.v1 import common_pb2, sampler_pb2

if TYPE_CHECKING:
    from mathforge.training.grpo.weight_sync import WeightStreamer

VLLM_STREAM_BACKEND = "vllm-nccl"


def tensor_parallel_size(info: common_pb2.ServiceInfo) -> int:
    return int(info.details.get("tensor_parallel_size", "1") or 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def cast_buckets(
    params: Sequence[torch.nn.Parameter],
    names: Sequence[str],
    ranges: Sequence[tuple[int, int]],
    dtype: str,
    zero3: bool,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor in the wire dtype), gathering one bucket at a time under ZeRO-3."""
    from mathforge.training.grpo.weight_sync import gathered

    for first, end in ranges:
        with gathered(params[first:end], zero3), torch.no_grad():
            for name, param in zip(names[first:end], params[first:end], strict=True):
                yield name, param.data.to(torch_dtype(dtype))


def send_to_vllm(
    streamer: WeightStreamer,
    module: torch.nn.Module,
    version: int,
    zero3: bool,
    plans: list[TensorPlan],
    ranges: list[tuple[int, int]],
    infos: dict[str, common_pb2.ServiceInfo],
) -> tuple[str, int]:
    """Streams `module` as `version` into every vLLM replica in `infos`; returns (checksum, bytes)."""
    from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

    names = [p.name for p in plans]
    params = [p for _, p in module.named_parameters()]
    checksum = Checksum()
    for _, tensor in cast_buckets(params, names, ranges, plans[0].dtype, zero3):
        checksum.update(tensor)
    digest = checksum.hexdigest()

    members = sorted(infos)
    offsets, world = {}, 1
    for address in members:
        offsets[address] = world
        world += tensor_parallel_size(infos[address])
    fresh = streamer.group is None or members != streamer.members
    if fresh:
        streamer.group_id = f"v{version}-{uuid.uuid4().hex[:12]}"
        streamer.members = members
        streamer.vllm_port = free_port()
    host = streamer.store_address.rpartition(":")[0]
    stream = sampler_pb2.WeightStream(
        store_address=f"{host}:{streamer.vllm_port}",
        group_id=streamer.group_id,
        world_size=world,
        backend=VLLM_STREAM_BACKEND,
        tensors=[sampler_pb2.TensorSpec(name=p.name, dtype=p.dtype, shape=list(p.shape)) for p in plans],
        bucket_starts=[first for first, _ in ranges],
        timeout_s=streamer.config.weight_sync_timeout_s,
        checksum=digest,
    )
    calls: dict[str, grpc.Future] = {}
    for address in members:
        stream.rank = offsets[address]
        client = streamer.link.samplers.replicas[address].client
        calls[address] = client.load_weights_stream(version, stream, streamer.config.load_timeout_s)
    if fresh:
        streamer.group = NCCLWeightTransferEngine.trainer_init(
            {"master_address": host, "master_port": streamer.vllm_port, "world_size": world}
        )
    NCCLWeightTransferEngine.trainer_send_weights(
        cast_buckets(params, names, ranges, plans[0].dtype, zero3), {"group": streamer.group, "packed": True}
    )
    answers = streamer._answers(calls)
    for address, response in answers.items():
        if response.version != version or response.checksum != digest:
            raise TransferError(f"vLLM sampler {address} answered {response.version} {response.checksum}")
    return digest, sum(p.nbytes for p in plans)


def gather_passes(
    params: Sequence[torch.nn.Parameter], ranges: Sequence[tuple[int, int]], zero3: bool
) -> None:
    """What a rank other than 0 does while rank 0 streams to vLLM: the same two gather passes."""
    from mathforge.training.grpo.weight_sync import gathered

    for _ in range(2):
        for first, end in ranges:
            with gathered(params[first:end], zero3):
                pass
