"""Every sampler replica behind one target: a new policy version reaches all of them before any
Generate, a step's calls are spread over them, a replica killed mid-run loses no call and doubles
none, and one that comes back is given the current version before it gets work. Real sampler
servers on loopback (in-process, and as `mathforge serve` children where one must be killed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mathforge.models.checkpoint import load_model
from mathforge.models.transfer import served_tensors, weights_checksum
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.runtime.replicas import resolve_targets
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config, create_service
from mathforge.training.grpo.config import ServicesConfig
from mathforge.training.grpo.services import LoadedModel, ServiceLink, StaleSampleError
from mathforge.v1 import sampler_pb2

from tests.e2e.policies import tiny_policy

REPO = Path(__file__).resolve().parents[2]
GROUP = 3


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    return (
        tiny_policy(root / "v0", seed=0),
        tiny_policy(root / "v1", seed=1),
        tiny_policy(root / "v2", seed=2),
    )


def _config(path: Path) -> Config:
    return Config(port=0, metrics_port=-1, model_path=str(path), max_new_tokens=16, default_max_tokens=6)


def _services_config(target: str) -> ServicesConfig:
    return ServicesConfig(sampler=target, reward=target, retry_budget_s=60, ready_timeout_s=60)


def _params(seed: int) -> sampler_pb2.SamplingParams:
    return sampler_pb2.SamplingParams(n=GROUP, temperature=1.0, max_tokens=12, seed=seed)


def _calls(count: int) -> list[tuple[list[str], sampler_pb2.SamplingParams]]:
    return [
        ([f"Question {i}: what is {i} + {i}?", f"Question {i}b"], _params(1000 + i)) for i in range(count)
    ]


def _prompts_served(server: ServerThread) -> float:
    return server.service.registry.get_sample_value("mathforge_sampler_prompts_total") or 0.0


def test_a_dns_target_names_every_address_and_a_list_names_each():
    assert resolve_targets("dns:///localhost:50054")[0].endswith(":50054")
    assert "127.0.0.1:50054" in resolve_targets("dns:///localhost:50054")
    assert resolve_targets("10.0.0.1:1, 10.0.0.2:1") == ["10.0.0.1:1", "10.0.0.2:1"]
    assert resolve_targets("dns:///no-such-host.invalid:1") == []
    with pytest.raises(ValueError, match="dns:///name:port"):
        resolve_targets("dns:///missing-port")


def test_two_replicas_both_serve_the_new_version_and_share_the_generate_calls(policies):
    with (
        ServerThread(create_service(_config(policies[0]))) as a,
        ServerThread(create_service(_config(policies[0]))) as b,
    ):
        link = ServiceLink(_services_config(f"{a.target},{b.target}"))
        try:
            assert link.served_policy_version() == 0
            link.load_policy(1, str(policies[1]))
            expected = weights_checksum(served_tensors(load_model(str(policies[1]))[0]))
            for server in (a, b):
                served = SamplerClient(server.target).policy()
                assert (served.version, served.checksum) == (1, expected)
            responses = link.generate_many(_calls(8))
            assert len(responses) == 8
            for response in responses:
                assert len(response.results) == 2
                for result in response.results:
                    assert [c.weights_version for c in result.completions] == [1] * GROUP
            assert _prompts_served(a) > 0 and _prompts_served(b) > 0
            assert _prompts_served(a) + _prompts_served(b) == 16  # each prompt sampled exactly once
        finally:
            link.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """A `mathforge serve sampler` process on a fixed port (so a restart comes back there)."""

    def __init__(self, model: Path, log_dir: Path, name: str):
        self.model, self.log_dir, self.name = model, log_dir, name
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "services")}
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mathforge", "serve", "sampler", "--port", str(self.port)),
                *("--metrics-port", "-1", "--grace-s", "1", "--model-path", str(self.model)),
                *("--max-new-tokens", "16", "--default-max-tokens", "6"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.mark.slow
def test_a_replica_killed_mid_run_loses_no_call_doubles_none_and_is_reloaded_when_back(policies, tmp_path):
    children = [Child(policies[0], tmp_path, "a"), Child(policies[0], tmp_path, "b")]
    for child in children:
        child.start()
    link = ServiceLink(_services_config(",".join(c.target for c in children)))
    try:
        for child in children:
            SamplerClient(child.target).wait_ready(180)
        link.load_policy(1, str(policies[1]))
        calls = _calls(24)
        # the reference: the same calls on one replica alone (samples depend on seed and weights only)
        reference = [SamplerClient(children[1].target).send(_request(p, s)) for p, s in calls]

        doomed = link.samplers.replicas[children[0].target]

        def kill_under_load() -> None:
            while doomed.in_flight == 0:
                time.sleep(0.001)
            children[0].kill()

        killer = threading.Thread(target=kill_under_load)
        killer.start()
        responses = link.generate_many(calls)
        killer.join()
        assert children[0].process is not None and children[0].process.returncode == -signal.SIGKILL
        assert doomed.failures >= 1  # it did die under a call
        assert [_texts(r) for r in responses] == [_texts(r) for r in reference]  # none lost, none doubled
        assert all(c.weights_version == 1 for r in responses for x in r.results for c in x.completions)

        children[0].start()  # back on its port, serving its start-up weights (version 0)
        SamplerClient(children[0].target).wait_ready(180)
        link.load_policy(2, str(policies[2]))  # it is up again: it takes v2 with the other
        assert SamplerClient(children[0].target).policy().version == 2
        before = doomed.calls
        responses = link.generate_many(_calls(12))
        assert all(c.weights_version == 2 for r in responses for x in r.results for c in x.completions)
        assert doomed.calls > before  # back in the rotation
    finally:
        link.close()
        for child in children:
            child.kill()


def _request(prompts: list[str], params: sampler_pb2.SamplingParams) -> sampler_pb2.GenerateRequest:
    return sampler_pb2.GenerateRequest(prompts=[sampler_pb2.Prompt(text=p) for p in prompts], params=params)


def _texts(response: sampler_pb2.GenerateResponse) -> list[list[tuple[int, ...]]]:
    return [[tuple(c.token_ids) for c in result.completions] for result in response.results]


def test_a_replica_behind_the_current_version_is_reloaded_before_it_gets_work(policies):
    """A replica that missed a publish (down at the time, or restarted) gets the current version
    before its first Generate, and samples from it; one ahead of the trainer is refused."""
    with (
        ServerThread(create_service(_config(policies[0]))) as a,
        ServerThread(create_service(_config(policies[0]))) as b,
    ):
        link = ServiceLink(_services_config(f"{a.target},{b.target}"))
        try:
            SamplerClient(a.target).load_weights(1, str(policies[1]))  # a serves v1, b still v0
            link.policy = LoadedModel(1, str(policies[1]))  # what a resumed trainer knows
            responses = link.generate_many(_calls(6))
            assert all(c.weights_version == 1 for r in responses for x in r.results for c in x.completions)
            assert SamplerClient(b.target).policy().version == 1
            assert link.recoveries == 1 and _prompts_served(b) > 0

            # a replica out of the rotation (it failed a call) is probed in the background and
            # rejoins on its own once it answers and serves the current version
            link.samplers.mark_unprepared(b.target)
            served_before = _prompts_served(b)
            for _ in range(20):
                link.generate_many(_calls(2))
                if _prompts_served(b) > served_before:
                    break
                time.sleep(0.2)
            assert _prompts_served(b) > served_before

            SamplerClient(b.target).load_weights(2, str(policies[2]))  # b moves ahead of this trainer
            link.samplers.mark_unprepared(b.target)
            with pytest.raises(StaleSampleError, match="newer than this trainer"):
                link.samplers.prepare_all()
        finally:
            link.close()
