"""Policy weights streamed over the collective (gloo) from the trainer into two real sampler servers:
bit-identical to the trainer's afterwards, checked by the checksum each reports in Info, the group
kept across versions, and a version that does not fit the serving model refused with the old
weights still serving."""

from __future__ import annotations

import pytest
import torch
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.models.transfer import plan_buckets, served_tensors, weights_checksum
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config, create_service
from mathforge.training.distributed import DistEnv
from mathforge.training.grpo.config import ServicesConfig
from mathforge.training.grpo.services import ServiceLink, StaleSampleError
from mathforge.training.grpo.weight_sync import WeightStreamer
from mathforge.v1 import sampler_pb2

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def _tiny(seed: int, preset: str = "tiny"):
    tokenizer = default_tokenizer()
    model = build_model(
        preset,
        len(tokenizer),
        seed=seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model, tokenizer


@pytest.fixture(scope="module")
def start_policy(tmp_path_factory):
    model, tokenizer = _tiny(seed=0)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("policy") / "v0")


def _sampler(path, dtype: str = "float32") -> ServerThread:
    config = Config(port=0, metrics_port=-1, model_path=str(path), dtype=dtype, default_max_tokens=4)
    return ServerThread(create_service(config))


def _link_and_streamer(
    targets: str, bucket_mb: int = 1, line: str = ""
) -> tuple[ServiceLink, WeightStreamer]:
    config = ServicesConfig(
        policy_line=line,
        sampler=targets,
        reward=targets,
        weight_sync="collective",
        weight_sync_port=0,
        weight_sync_host="127.0.0.1",
        weight_sync_bucket_mb=bucket_mb,
        weight_sync_timeout_s=30,
        retry_budget_s=30,
        ready_timeout_s=30,
    )
    link = ServiceLink(config)
    return link, WeightStreamer(link, config, ENV)


def _serving_model(server: ServerThread) -> torch.nn.Module:
    return server.service.default.gate.current.handle


def test_a_collective_transfer_leaves_both_replicas_bit_identical_to_the_trainer(start_policy):
    trainer, _ = _tiny(seed=1)
    with _sampler(start_policy) as a, _sampler(start_policy) as b:
        link, streamer = _link_and_streamer(f"{a.target},{b.target}")
        try:
            plans, starts = streamer.plans(trainer, "float32")
            assert len(starts) > 1  # the tiny model spans several 1 MB buckets
            assert starts == plan_buckets([p.nbytes for p in plans], 1 << 20)

            transfer = streamer.publish(trainer, version=1)
            expected = weights_checksum(served_tensors(trainer))
            assert transfer.checksum == expected and transfer.replicas == 2
            assert transfer.bytes == sum(p.nbytes for p in plans)
            for server in (a, b):
                served = SamplerClient(server.target).policy()
                assert (served.version, served.checksum, served.path) == (1, expected, "")
                mine = dict(served_tensors(trainer))
                for name, tensor in served_tensors(_serving_model(server)):
                    assert torch.equal(tensor, mine[name]), name
            first_group = streamer.group_id

            with torch.no_grad():  # an update, then the next version over the same group
                for param in trainer.parameters():
                    param.add_(0.01)
            streamer.publish(trainer, version=2)
            assert streamer.group_id == first_group
            for server in (a, b):
                assert SamplerClient(server.target).policy().checksum == weights_checksum(
                    served_tensors(trainer)
                )
                assert all(
                    torch.equal(x, y)
                    for (_, x), (_, y) in zip(
                        served_tensors(_serving_model(server)), served_tensors(trainer), strict=True
                    )
                )
            responses = link.generate_many(
                [
                    (["1+1="], sampler_pb2.SamplingParams(n=2, temperature=1.0, max_tokens=3, seed=s))
                    for s in range(4)
                ]
            )
            assert {c.weights_version for r in responses for x in r.results for c in x.completions} == {2}
        finally:
            link.close()


def test_two_trainers_stream_into_their_own_lines_each_keeping_its_group(start_policy):
    trainers = {"run-a": _tiny(seed=4)[0], "run-b": _tiny(seed=5)[0]}
    with _sampler(start_policy) as server:
        start = SamplerClient(server.target).policy().checksum
        links = {line: _link_and_streamer(server.target, line=line) for line in trainers}
        try:
            groups = {}
            for line, (_, streamer) in links.items():
                streamer.publish(trainers[line], version=1)
                groups[line] = streamer.group_id
            with torch.no_grad():
                for param in trainers["run-a"].parameters():
                    param.add_(0.01)
            links["run-a"][1].publish(trainers["run-a"], version=2)
            assert links["run-a"][1].group_id == groups["run-a"]  # b's group did not replace a's
            for line, trainer in trainers.items():
                with SamplerClient(server.target, line=line) as client:
                    served = client.policy()
                assert (served.version, served.checksum) == (
                    2 if line == "run-a" else 1,
                    weights_checksum(served_tensors(trainer)),
                )
                held = server.service.lines.get(line).gate.current.handle
                assert all(
                    torch.equal(x, y)
                    for (_, x), (_, y) in zip(served_tensors(held), served_tensors(trainer), strict=True)
                )
            assert SamplerClient(server.target).policy().checksum == start  # the default line untouched
        finally:
            for link, _ in links.values():
                link.close()


def test_weights_cast_to_the_samplers_dtype_on_the_way(start_policy):
    trainer, _ = _tiny(seed=2)
    with _sampler(start_policy, dtype="bfloat16") as a:
        link, streamer = _link_and_streamer(a.target, bucket_mb=4)
        try:
            streamer.publish(trainer, version=1)
            served = SamplerClient(a.target).policy()
            assert served.dtype == "bfloat16"
            as_bf16 = [(n, t.to(torch.bfloat16)) for n, t in served_tensors(trainer)]
            assert served.checksum == weights_checksum(as_bf16)
            for (_, x), (_, y) in zip(served_tensors(_serving_model(a)), as_bf16, strict=True):
                assert torch.equal(x, y)
        finally:
            link.close()


def test_a_model_that_does_not_fit_is_refused_and_the_old_weights_keep_serving(start_policy):
    other, _ = _tiny(seed=3, preset="small")
    with _sampler(start_policy) as a:
        before = SamplerClient(a.target).policy()
        link, streamer = _link_and_streamer(a.target)
        try:
            with pytest.raises(StaleSampleError, match="do not fit the serving model"):
                streamer.publish(other, version=1)
            after = SamplerClient(a.target).policy()
            assert (after.version, after.checksum) == (before.version, before.checksum) == (0, after.checksum)
        finally:
            link.close()
