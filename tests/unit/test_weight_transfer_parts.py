"""The pieces of a weight transfer that need no peer: bucket plans, packing, the checksum (the same
bucket by bucket as whole), the receiver's checks of a plan, and the vLLM backend's refusal of a
stream that does not fit (checked before vLLM is needed)."""

from __future__ import annotations

import asyncio

import pytest
import torch
from mathforge.models.transfer import (
    Checksum,
    TensorPlan,
    bucket_ranges,
    pack,
    plan_buckets,
    unpacked,
    weights_checksum,
)
from mathforge.sampler.backend import WeightsError
from mathforge.sampler.vllm_backend import VllmBackend
from mathforge.sampler.weight_stream import StreamReceiver
from mathforge.v1 import sampler_pb2


def test_buckets_hold_whole_tensors_up_to_the_limit_and_a_big_tensor_alone():
    assert plan_buckets([40, 40, 40, 200, 10], 100) == [0, 2, 3, 4]
    assert bucket_ranges([0, 2, 3, 4], 5) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert plan_buckets([1, 1, 1], 1 << 20) == [0]
    with pytest.raises(ValueError, match="bucket_bytes"):
        plan_buckets([1], 0)


def test_packing_round_trips_mixed_dtypes_bit_for_bit():
    tensors = [torch.randn(3, 5), torch.randn(7).to(torch.bfloat16), torch.arange(4, dtype=torch.int64)]
    plans = [
        TensorPlan(f"t{i}", str(t.dtype).removeprefix("torch."), tuple(t.shape))
        for i, t in enumerate(tensors)
    ]
    buffer = torch.empty(sum(p.nbytes for p in plans) + 16, dtype=torch.uint8)
    part = pack(tensors, buffer)
    assert part.numel() == sum(p.nbytes for p in plans)
    for original, view in zip(tensors, unpacked(part, plans), strict=True):
        assert view.dtype == original.dtype and torch.equal(view, original)


def test_the_checksum_depends_on_every_byte_and_order_not_on_buckets():
    tensors = [("a", torch.randn(64)), ("b", torch.randn(8, 8))]
    whole = weights_checksum(tensors)
    piecewise = Checksum()
    for _, tensor in tensors:
        piecewise.update(tensor)
    assert piecewise.hexdigest() == whole and whole.startswith("crc32:")
    flipped = [("a", tensors[0][1].clone()), tensors[1]]
    flipped[0][1].view(torch.int32)[5] ^= 1  # one bit of one float
    assert weights_checksum(flipped) != whole
    assert weights_checksum(list(reversed(tensors))) != whole


def _stream(**fields) -> sampler_pb2.WeightStream:
    stream = sampler_pb2.WeightStream(
        store_address="127.0.0.1:29600",
        group_id="v1-test",
        world_size=2,
        rank=1,
        backend="gloo",
        bucket_starts=[0],
        tensors=[sampler_pb2.TensorSpec(name="w", dtype="float32", shape=[2, 3])],
    )
    for key, value in fields.items():
        if key == "tensors":
            del stream.tensors[:]
            stream.tensors.extend(value)
        elif key == "bucket_starts":
            del stream.bucket_starts[:]
            stream.bucket_starts.extend(value)
        else:
            setattr(stream, key, value)
    return stream


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "mpi"}, "not one of gloo, nccl"),
        ({"rank": 0}, "outside 1..1"),
        ({"store_address": ""}, "store_address"),
        ({"tensors": [sampler_pb2.TensorSpec(name="w", dtype="float32", shape=[3, 2])]}, "does not fit"),
        ({"tensors": [sampler_pb2.TensorSpec(name="w", dtype="bfloat16", shape=[2, 3])]}, "does not fit"),
        ({"bucket_starts": [1]}, "bucket_starts"),
    ],
)
def test_a_plan_that_does_not_fit_is_refused_before_joining_any_group(fields, message):
    targets = [("w", torch.zeros(2, 3))]
    with pytest.raises(WeightsError, match=message):
        StreamReceiver().check(_stream(**fields), targets)
    assert StreamReceiver().check(_stream(), targets)[0].shape == (2, 3)


def test_the_vllm_backend_refuses_streams_it_was_not_started_for_or_that_do_not_fit():
    backend = VllmBackend("/models/none")
    backend._shapes = {"w": ("F32", (2, 3))}
    stream = _stream(backend="vllm-nccl")
    with pytest.raises(WeightsError, match="--weight-transfer"):
        asyncio.run(backend.stage_stream(stream, None))
    backend.weight_transfer = True
    with pytest.raises(WeightsError, match="receives stream backend 'vllm-nccl', not 'gloo'"):
        asyncio.run(backend.stage_stream(_stream(), None))
    misfit = _stream(
        backend="vllm-nccl", tensors=[sampler_pb2.TensorSpec(name="w", dtype="float32", shape=[3, 3])]
    )
    with pytest.raises(WeightsError, match="different shapes: \\['w'\\]"):
        asyncio.run(backend.stage_stream(misfit, None))
