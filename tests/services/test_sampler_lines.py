"""Policy lines of one sampler over real gRPC on loopback: two lines loaded with different weights
sample differently while the default line keeps its own, versions and version checks per line, the
least recently used idle line evicted at --max-lines, and a malformed or unsupported line refused."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config, SamplerService, create_service
from mathforge.sampler.transformers_backend import TransformersBackend
from mathforge.sampler.vllm_backend import VllmBackend
from prometheus_client import generate_latest

from tests.e2e.policies import tiny_policy

PROMPTS = ["What is 2+2? Answer:", "Solve x + 3 = 5."]


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("policies")
    return {name: tiny_policy(root / name, seed) for name, seed in (("start", 0), ("a", 1), ("b", 2))}


def _config(policies, **overrides) -> Config:
    values = dict(port=0, metrics_port=-1, model_path=str(policies["start"]), default_max_tokens=8)
    return Config(**{**values, **overrides})


def _client(server: ServerThread, line: str = "") -> SamplerClient:
    return SamplerClient(server.target, timeout_s=60, retry=NO_RETRY, line=line)


def _greedy(client: SamplerClient, **kwargs) -> list[list[int]]:
    response = client.generate(PROMPTS, n=1, temperature=0.0, max_tokens=8, **kwargs)
    return [list(r.completions[0].token_ids) for r in response.results]


def _fails(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_two_lines_serve_their_own_weights_and_versions_beside_the_default(policies):
    with ServerThread(create_service(_config(policies))) as server:
        default, a, b = _client(server), _client(server, "run-a"), _client(server, "run-b")
        with default, a, b:
            before = _greedy(default)
            code, details = _fails(lambda: a.generate(PROMPTS))
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "'run-a' is not loaded" in details
            assert a.policy().version == 0 and not a.policy().path

            a.load_weights(1, str(policies["a"]))
            b.load_weights(1, str(policies["b"]))
            b.load_weights(2, str(policies["a"]))  # b's versions move on their own
            on_a = _greedy(a)
            assert _greedy(default) == before  # the default line is untouched
            assert on_a != before
            assert _greedy(b) == on_a  # b serves a's weights now, as its version 2
            with _client(server, "run-c") as c:
                c.load_weights(1, str(policies["b"]))
                assert _greedy(c) not in (on_a, before)

            response = a.generate(PROMPTS, n=2, temperature=1.0, max_tokens=4, seed=3, min_version=1)
            assert {c.weights_version for r in response.results for c in r.completions} == {1}
            code, details = _fails(lambda: a.generate(PROMPTS, min_version=2))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert "weights version 1 is serving on line 'run-a'" in details
            assert b.generate(PROMPTS, require_version=2).weights_version == 2
            streamed = list(b.generate_stream(PROMPTS, n=2, temperature=1.0, max_tokens=4, seed=5))
            assert len(streamed) == 4 and {c.weights_version for c in streamed} == {2}
            code, _ = _fails(lambda: a.load_weights(1, str(policies["b"])))
            assert code == grpc.StatusCode.INVALID_ARGUMENT  # versions only grow, per line
            assert default.generate(PROMPTS, require_version=0).weights_version == 0

            models = {m.line: m for m in default.info().models}
            assert list(models) == ["", "run-a", "run-b", "run-c"]
            assert (models["run-a"].version, models["run-b"].version) == (1, 2)
            assert models["run-a"].path == str(policies["a"]) and models["run-a"].bytes > 0
            assert default.info().model_version == 0 and default.policy().version == 0
            assert b.policy().version == 2 and b.policy().checksum == a.policy().checksum


def test_a_line_past_the_limit_evicts_the_least_recently_used_one(policies):
    service = create_service(_config(policies, max_lines=2, metrics_port=0))
    with ServerThread(service) as server:
        clients = {name: _client(server, name) for name in ("", "one", "two", "three")}
        try:
            clients["one"].load_weights(1, str(policies["a"]))
            clients["two"].load_weights(1, str(policies["b"]))
            _greedy(clients["one"])  # "two" is now the least recently used
            clients["three"].load_weights(4, str(policies["b"]))
            assert [m.line for m in clients[""].info().models] == ["", "one", "three"]
            code, details = _fails(lambda: _greedy(clients["two"]))
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "evicted" in details
            assert "--max-lines" in details
            assert _greedy(clients["three"]) != _greedy(clients["one"])  # "three" now the oldest
            # an evicted line is loaded again like a new one, from any version
            clients["two"].load_weights(1, str(policies["b"]))
            assert [m.line for m in clients[""].info().models] == ["", "one", "two"]  # "three" went
            metrics = generate_latest(service.registry).decode()
            assert "mathforge_sampler_line_evictions_total 2.0" in metrics
            assert 'mathforge_sampler_line_weights_version{line="two"} 1.0' in metrics
            assert 'line="three"' not in metrics
            assert "mathforge_sampler_lines 2.0" in metrics
        finally:
            for client in clients.values():
                client.close()


def test_a_line_with_a_call_in_flight_is_never_evicted(policies):
    service = create_service(_config(policies, max_lines=1))
    with ServerThread(service) as server, _client(server, "busy") as busy, _client(server, "new") as new:
        busy.load_weights(1, str(policies["a"]))
        with ThreadPoolExecutor(1) as pool:
            long_call = pool.submit(busy.generate, PROMPTS, n=8, temperature=1.0, max_tokens=256, seed=1)
            deadline = time.monotonic() + 30
            while service.lines.get("busy").gate.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            code, details = _fails(lambda: new.load_weights(1, str(policies["b"])))
            assert service.lines.get("busy").gate.in_flight == 1, "the long call ended too soon to check"
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "the 1 limit (--max-lines)" in details and "calls in flight" in details
            assert long_call.result().weights_version == 1
        assert [m.line for m in busy.info().models] == ["", "busy"]  # the refusal changed nothing
        new.load_weights(1, str(policies["b"]))  # idle now: "busy" goes
        assert [m.line for m in busy.info().models] == ["", "new"]


def test_malformed_lines_and_a_disabled_table_are_refused(policies):
    with ServerThread(create_service(_config(policies, max_lines=0))) as server, _client(server) as client:
        for bad in ("-lead", "a/b", "x" * 65, "new line"):
            with _client(server, bad) as named:
                code, details = _fails(lambda named=named: named.generate(PROMPTS))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "line" in details
        with _client(server, "extra") as extra:
            code, details = _fails(lambda: extra.load_weights(1, str(policies["a"])))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-lines 0" in details
        assert [m.line for m in client.info().models] == [""]


class OneLineBackend(TransformersBackend):
    """The transformers backend declaring what the vllm one declares: one set of weights."""

    supports_lines = False


def test_a_backend_with_one_set_of_weights_refuses_named_lines(policies):
    assert VllmBackend.supports_lines is False
    config = _config(policies)
    service = SamplerService(config, OneLineBackend(config.model_path))
    with ServerThread(service) as server, _client(server, "run-a") as client:
        for call in (lambda: client.load_weights(1, str(policies["a"])), lambda: client.generate(PROMPTS)):
            code, details = _fails(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert "serves only the default policy line" in details and "'run-a'" in details
