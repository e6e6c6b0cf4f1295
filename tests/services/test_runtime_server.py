"""The shared runtime against a real server on loopback: health, limits, metrics, deadlines,
retries, SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from mathforge.runtime.client import RetryPolicy, ServiceClient
from mathforge.runtime.server import ServerThread
from mathforge.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

from tests.services.echo_service import EchoConfig, EchoService

HERE = Path(__file__).parent


class EchoClient(ServiceClient):
    service_name = "mathforge.v1.Classifier"
    stub_class = classifier_pb2_grpc.ClassifierStub

    def score(self, texts: list[str], timeout_s: float | None = None) -> list[float]:
        request = classifier_pb2.ScoreRequest(documents=[common_pb2.Document(text=t) for t in texts])
        return list(self.call("Score", request, timeout_s=timeout_s).scores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def echo():
    with ServerThread(EchoService(EchoConfig(port=0, metrics_port=0, grace_s=1))) as server:
        yield server


def test_readiness_is_not_serving_until_start_returns_then_serving():
    gate_holder: dict[str, asyncio.Event] = {}

    class GatedService(EchoService):
        async def start(self) -> None:
            gate_holder["gate"] = asyncio.Event()
            await gate_holder["gate"].wait()

    server = ServerThread(GatedService(EchoConfig(port=0, metrics_port=-1)))
    starter = threading.Thread(target=server.start)
    starter.start()
    deadline = time.monotonic() + 10
    while "gate" not in gate_holder and time.monotonic() < deadline:
        time.sleep(0.01)
    client = EchoClient(f"127.0.0.1:{server.running.port}")
    assert client.health("") == "SERVING"  # alive
    assert client.health() == "NOT_SERVING"  # not ready
    server._loop.call_soon_threadsafe(gate_holder["gate"].set)
    starter.join(10)
    assert client.health() == "SERVING"
    server.stop()


def test_reflection_lists_the_service(echo):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(echo.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {"mathforge.v1.Classifier", "grpc.health.v1.Health"} <= names


def test_item_limit_is_resource_exhausted_naming_the_limit(echo):
    client = EchoClient(echo.target)
    with pytest.raises(grpc.RpcError) as err:
        client.score(["a"] * 9)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details() == "request has 9 documents, over the 8 limit (--max-items)"
    with pytest.raises(grpc.RpcError) as err:
        client.score(["ok", "x" * 2048])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details() == "document 1 is 2 KB, over the 1 KB limit (--max-doc-bytes)"
    assert client.score(["abc"]) == [3.0]  # the server carries on


def test_oversized_message_is_resource_exhausted():
    config = EchoConfig(port=0, metrics_port=-1, max_message_bytes=4096, max_doc_bytes=0)
    with ServerThread(EchoService(config)) as server:
        client = EchoClient(server.target)
        with pytest.raises(grpc.RpcError) as err:
            client.score(["y" * 10_000])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in err.value.details()


def test_invalid_utf8_is_invalid_argument_and_server_survives(echo):
    # A well-formed protobuf whose string field holds bytes that are not UTF-8, sent raw.
    bad_doc = b"\x12\x03\xff\xfe\xfd"  # Document.text (field 2) = 3 invalid bytes
    payload = b"\x0a" + bytes([len(bad_doc)]) + bad_doc  # ScoreRequest.documents (field 1)
    with grpc.insecure_channel(echo.target) as channel:
        call = channel.unary_unary(
            "/mathforge.v1.Classifier/Score", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as err:
            call(payload, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in err.value.details()
    assert EchoClient(echo.target).score(["ok"]) == [2.0]


def test_client_deadline_gives_deadline_exceeded_not_a_hang(echo):
    client = EchoClient(echo.target)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        client.score(["sleep:5"], timeout_s=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3


def test_metrics_count_calls_by_method_and_code_with_latency(echo):
    client = EchoClient(echo.target)
    client.score(["a", "b"])
    client.score(["c"])
    with pytest.raises(grpc.RpcError):
        client.score(["z"] * 20)
    body = urllib.request.urlopen(f"http://127.0.0.1:{echo.metrics_port}/metrics", timeout=5).read().decode()
    method = "/mathforge.v1.Classifier/Score"

    def sample(name: str, **labels: str) -> float:
        for line in body.splitlines():
            match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
            if (
                match
                and match.group(1) == name
                and dict(re.findall(r'(\w+)="([^"]*)"', match.group(2))) == labels
            ):
                return float(match.group(3))
        raise AssertionError(f"{name}{labels} missing from /metrics")

    assert sample("mathforge_rpc_requests_total", method=method, code="OK") == 2
    assert sample("mathforge_rpc_requests_total", method=method, code="RESOURCE_EXHAUSTED") == 1
    assert sample("mathforge_rpc_latency_seconds_count", method=method) == 3
    assert sample("mathforge_rpc_in_flight", method=method) == 0


def test_client_retries_unavailable_across_a_server_restart():
    port = free_port()
    config = EchoConfig(port=port, metrics_port=-1, grace_s=0)
    first = ServerThread(EchoService(config)).start()
    client = EchoClient(
        f"127.0.0.1:{port}",
        retry=RetryPolicy(attempts=50, initial_backoff_s=0.05, max_backoff_s=0.2, budget_s=30),
    )
    assert client.score(["abc"]) == [3.0]
    first.stop(0)
    result: dict[str, object] = {}

    def call_during_outage() -> None:
        try:
            result["scores"] = client.score(["abcd"], timeout_s=2)
        except grpc.RpcError as exc:
            result["error"] = exc

    caller = threading.Thread(target=call_during_outage)
    caller.start()
    time.sleep(1.0)
    assert caller.is_alive(), "the call should still be retrying while the server is down"
    second = ServerThread(EchoService(config)).start()
    caller.join(30)
    second.stop(0)
    assert result == {"scores": [4.0]}


def _start_echo_process(*flags: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1]), "MATHFORGE_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "echo_service.py"), "--port", "0", "--metrics-port", "-1", *flags],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        entry = json.loads(line)
        if entry.get("msg") == "ready":
            return proc, int(entry["port"])
    proc.kill()
    raise AssertionError("echo service did not become ready")


def test_sigterm_lets_inflight_call_finish_refuses_new_calls_and_exits_within_grace():
    proc, port = _start_echo_process("--grace-s", "5")
    client = EchoClient(f"127.0.0.1:{port}", retry=RetryPolicy(attempts=1))
    outcome: dict[str, object] = {}

    def slow_call() -> None:
        outcome["scores"] = client.score(["sleep:1.5"], timeout_s=10)

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.4)  # the call is in flight
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as err:
        EchoClient(f"127.0.0.1:{port}", retry=RetryPolicy(attempts=1)).score(["new"], timeout_s=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    caller.join(10)
    assert outcome == {"scores": [9.0]}
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - sent < 5 + 2
