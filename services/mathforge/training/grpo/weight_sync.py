"""Streams a policy version to every sampler replica over torch.distributed: the collective mode of
publishing (services.weight_sync=collective).

    streamer = WeightStreamer(link, config.services, env)
    checksum = streamer.publish(engine.module, version=8, zero3=False)   # every training rank calls it

Rank 0 of the trainer hosts a TCPStore and is rank 0 of a transfer group whose other ranks are the
sampler replicas (models/transfer.py). It starts one LoadWeights(stream) per replica, all at once,
then broadcasts the parameters in buckets of whole tensors (cast to the dtype the samplers serve),
then its CRC-32 of them; each replica receives in place into its standby copy, compares checksums,
swaps, and answers. Under ZeRO-3 every training rank gathers one bucket's parameters at a time
(DeepSpeed's GatheredParameters), so no rank ever holds the whole model. The group is kept while
the replicas stay the same; a replica that joined, left or failed makes the next transfer form a new
one, and a transfer that lost a replica mid-way is redone with the others (the lost one is given
the version when it is back, before it gets work).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import torch

from mathforge.models.transfer import (
    Checksum,
    TensorPlan,
    TransferError,
    TransferGroup,
    bucket_ranges,
    dtype_name,
    go_key,
    host_store,
    make_group,
    pack,
    plan_buckets,
    ready_key,
    send_checksum,
    start_broadcast,
    torch_dtype,
)
from mathforge.training.distributed import DistEnv, all_reduce_sum
from mathforge.training.grpo.config import ServicesConfig
from mathforge.training.grpo.services import LoadedModel, ServiceLink, StaleSampleError
from mathforge.training.grpo.vllm_sync import gather_passes, send_to_vllm
from mathforge.v1 import common_pb2, sampler_pb2

log = logging.getLogger(__name__)
ATTEMPTS = 3
REFUSED = -1e9
#: A replica's answer that another attempt would not change (the weights do not fit, say).
PERMANENT = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT})


class RefusedError(StaleSampleError):
    """A sampler replica refused the version itself (not the transfer): retrying cannot help."""


@dataclass
class Transfer:
    """What the last transfer measured (rank 0)."""

    seconds: float = 0.0
    bytes: int = 0
    replicas: int = 0
    checksum: str = ""


def parameter_shape(param: torch.nn.Parameter) -> tuple[int, ...]:
    """The full shape, also of a ZeRO-3 partitioned parameter (whose own shape is empty)."""
    full = getattr(param, "ds_shape", None)
    return tuple(int(s) for s in (full if full is not None else param.shape))


@contextlib.contextmanager
def gathered(params: Sequence[torch.nn.Parameter], zero3: bool) -> Iterator[None]:
    """Under ZeRO-3, the full `params` on every rank for the block (a collective: every rank
    enters it with the same parameters); otherwise nothing to do."""
    if not zero3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(params), modifier_rank=None):
        yield


def advertised_host(config: ServicesConfig) -> str:
    """Where the samplers reach this trainer: the configured host, else the host name (in a
    PyTorchJob the pod's name, which the operator's Service for the master replica resolves, and a
    stable name the samplers' allow-list can hold)."""
    return config.weight_sync_host or socket.gethostname()


class WeightStreamer:
    """The trainer's end of the collective weight transfer."""

    def __init__(self, link: ServiceLink, config: ServicesConfig, env: DistEnv):
        self.link = link
        self.config = config
        self.env = env
        self.store = (
            host_store(config.weight_sync_port, config.weight_sync_timeout_s) if env.is_main else None
        )
        self.group: TransferGroup | None = None
        self.group_id = ""
        self.members: list[str] = []
        self.vllm_port = 0
        self.last = Transfer()
        self.backend = "nccl" if env.device.type == "cuda" else "gloo"
        if env.is_main:
            link.restream = None  # a lost replica waits for the next publish (see services.py)

    @property
    def store_address(self) -> str:
        assert self.store is not None
        return f"{advertised_host(self.config)}:{self.store.port}"

    # ---- the plan ---------------------------------------------------------------------------
    def plans(self, module: torch.nn.Module, dtype: str) -> tuple[list[TensorPlan], list[int]]:
        """Every parameter as sent (in `dtype`) and the bucket starts; the same on every rank."""
        plans = [TensorPlan(name, dtype, parameter_shape(p)) for name, p in module.named_parameters()]
        starts = plan_buckets([p.nbytes for p in plans], self.config.weight_sync_bucket_mb << 20)
        return plans, starts

    # ---- publishing -------------------------------------------------------------------------
    def publish(self, module: torch.nn.Module, version: int, zero3: bool = False) -> Transfer:
        """Makes every reachable sampler replica serve `module`'s weights as `version`. Every
        training rank calls it; rank 0 sends. Returns what rank 0 measured."""
        for attempt in range(ATTEMPTS):
            # every rank learns how rank 0 will send (1 our buckets, 2 vLLM's engine) and how it went
            # (1 sent, 0 a failure worth retrying, REFUSED never)
            infos: dict[str, common_pb2.ServiceInfo] = {}
            how, failure = 0.0, None
            if self.env.is_main:
                try:
                    infos = self.link.samplers.fan_out(lambda c: c.info(self.config.ready_timeout_s))
                    how = 2.0 if {i.backend for i in infos.values()} == {"vllm"} else 1.0
                except (grpc.RpcError, RuntimeError) as exc:
                    how, failure = -1.0, exc
            how = all_reduce_sum(how, self.env.device)
            outcome = 1.0 if how > 0 else 0.0
            if how > 0:
                try:
                    self._attempt(module, version, zero3, infos, to_vllm=how == 2.0)
                except RefusedError as exc:
                    outcome, failure = REFUSED, exc
                except (TransferError, grpc.RpcError, RuntimeError) as exc:
                    outcome, failure = 0.0, exc
            if outcome != 1.0:
                self.group, self.group_id = None, ""  # never reuse a group that failed
            total = all_reduce_sum(outcome, self.env.device)
            if total == self.env.world_size:
                break
            if total < 0:
                raise RefusedError(f"the samplers refused version {version}: {failure}")
            if self.env.is_main:
                log.warning("streaming version %d failed (attempt %d): %s", version, attempt + 1, failure)
            if attempt + 1 == ATTEMPTS:
                raise StaleSampleError(f"could not stream version {version} to the samplers: {failure}")
        self.link.policy = LoadedModel(version, "")
        return self.last

    def _attempt(
        self,
        module: torch.nn.Module,
        version: int,
        zero3: bool,
        infos: dict[str, common_pb2.ServiceInfo],
        to_vllm: bool,
    ) -> None:
        params = [p for _, p in module.named_parameters()]
        # the bucket plan comes from the training dtype's sizes, which every rank knows; rank 0 sends
        # in the samplers' dtype
        plans, starts = self.plans(module, dtype_name(params[0].dtype))
        ranges = bucket_ranges(starts, len(plans))
        if not self.env.is_main:
            if to_vllm:
                gather_passes(params, ranges, zero3)
            else:
                for first, end in ranges:
                    with gathered(params[first:end], zero3):
                        pass
            return
        dtypes = {m.dtype for info in infos.values() for m in info.models if m.kind == "policy" and m.dtype}
        if len(dtypes) > 1:
            raise RefusedError(f"sampler replicas serve different dtypes {sorted(dtypes)}")
        dtype = dtypes.pop() if dtypes else dtype_name(params[0].dtype)
        wire = [TensorPlan(p.name, dtype, p.shape) for p in plans]
        began = time.perf_counter()
        if to_vllm:
            digest, sent = send_to_vllm(self, module, version, zero3, wire, ranges, infos)
            self.last = Transfer(time.perf_counter() - began, sent, len(infos), digest)
            return
        calls, group = self._open(version, wire, starts)
        device = self.env.device
        checksum = Checksum()
        largest = max(sum(p.nbytes for p in wire[a:b]) for a, b in ranges)
        # two buffers: bucket i+1 is gathered, checksummed and packed while bucket i is on the wire
        buffers = [torch.empty(largest, dtype=torch.uint8, device=device) for _ in range(min(2, len(ranges)))]
        sent = 0
        sending = None
        try:
            for index, (first, end) in enumerate(ranges):
                with gathered(params[first:end], zero3), torch.no_grad():
                    tensors = [p.data.to(torch_dtype(dtype)) for p in params[first:end]]
                    for tensor in tensors:
                        checksum.update(tensor)
                    if sending is not None and len(buffers) == 1:
                        sending.wait()
                    part = pack(tensors, buffers[index % len(buffers)])
                if sending is not None:
                    sending.wait()
                sending = start_broadcast(group, part)
                sent += part.numel()
            if sending is not None:
                sending.wait()
            send_checksum(group, checksum.hexdigest(), device)
        finally:
            answers = self._answers(calls)
        for address, response in answers.items():
            if response.version != version or response.checksum != checksum.hexdigest():
                raise TransferError(
                    f"sampler {address} answered version {response.version} checksum {response.checksum}, "
                    f"expected {version} {checksum.hexdigest()}"
                )
        self.last = Transfer(time.perf_counter() - began, sent, len(answers), checksum.hexdigest())

    def _open(
        self, version: int, plans: list[TensorPlan], starts: list[int]
    ) -> tuple[dict[str, grpc.Future], TransferGroup]:
        """Starts LoadWeights on every replica and has the group formed (or reuses it)."""
        self.link.samplers.refresh()
        members = self.link.samplers.addresses
        if not members:
            raise TransferError(f"no sampler replica behind {self.config.sampler}")
        expected = self.link.policy.version if self.link.policy is not None else None
        served = self.link.samplers.fan_out(lambda client: client.policy(self.config.ready_timeout_s).version)
        members = [m for m in members if m in served]
        fresh = members != self.members or any(served[m] != expected for m in members) or self.group is None
        if fresh:
            self.group_id = f"v{version}-{uuid.uuid4().hex[:12]}"
            self.members = members
            self.group = None
        world = len(members) + 1
        stream = sampler_pb2.WeightStream(
            store_address=self.store_address,
            group_id=self.group_id,
            world_size=world,
            backend=self.backend,
            tensors=[sampler_pb2.TensorSpec(name=p.name, dtype=p.dtype, shape=list(p.shape)) for p in plans],
            bucket_starts=starts,
            timeout_s=self.config.weight_sync_timeout_s,
        )
        calls: dict[str, grpc.Future] = {}
        for rank, address in enumerate(members, start=1):
            stream.rank = rank
            replica = self.link.samplers.replicas[address]
            calls[address] = replica.client.load_weights_stream(version, stream, self.config.load_timeout_s)
        if self.group is None:
            try:
                self.group = self._form(calls, world)
            except BaseException:
                self._answers(calls, raise_errors=False)
                raise
        return calls, self.group

    def _form(self, calls: dict[str, grpc.Future], world: int) -> TransferGroup:
        """Waits for every replica to announce itself (or one of their calls to fail), then forms
        the group. An early failure tells the others to give up, so none waits out a timeout."""
        assert self.store is not None
        deadline = time.monotonic() + self.config.weight_sync_timeout_s
        keys = [ready_key(self.group_id, rank) for rank in range(1, world)]
        while not self.store.check(keys):
            failed = [a for a, call in calls.items() if call.done() and call.exception() is not None]
            if failed or time.monotonic() > deadline:
                self.store.set(go_key(self.group_id), "abort")
                if not failed:
                    raise TransferError(f"group {self.group_id} did not form within the timeout")
                error = calls[failed[0]].exception()
                code = error.code() if isinstance(error, grpc.RpcError) else None
                why = error.details() if isinstance(error, grpc.RpcError) else str(error)
                kind = RefusedError if code in PERMANENT else TransferError
                raise kind(f"sampler {failed[0]} did not join group {self.group_id}: {why}")
            time.sleep(0.005)
        self.store.set(go_key(self.group_id), "1")
        return make_group(
            self.store, self.group_id, 0, world, self.backend, self.config.weight_sync_timeout_s
        )

    def _answers(
        self, calls: dict[str, grpc.Future], raise_errors: bool = True
    ) -> dict[str, sampler_pb2.LoadWeightsResponse]:
        answers: dict[str, sampler_pb2.LoadWeightsResponse] = {}
        error: BaseException | None = None
        for address, call in calls.items():
            try:
                answers[address] = call.result()
            except grpc.RpcError as exc:
                self.link.samplers.mark_unprepared(address)
                error = error or exc
        if error is not None and raise_errors:
            raise error
        return answers
