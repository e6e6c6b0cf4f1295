"""Bearer-token auth on a real loopback server: no token, a wrong token and a caller token on an
admin method are refused; health stays open for probes; NaN numbers never reach a handler."""

from __future__ import annotations

import math
import urllib.request

import grpc
import pytest
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.config import ConfigError
from mathforge.runtime.server import ServerThread
from mathforge.v1 import classifier_pb2, evaluator_pb2, evaluator_pb2_grpc

from tests.services.echo_service import EchoConfig, EchoService
from tests.services.test_runtime_server import EchoClient

CALLER, ADMIN = "caller-token-0123456789", "admin-token-9876543210"


@pytest.fixture
def tokens(tmp_path):
    caller, admin = tmp_path / "caller", tmp_path / "admin"
    caller.write_text(CALLER + "\n")
    admin.write_text(ADMIN + "\n")
    return caller, admin


@pytest.fixture
def secured(tokens):
    caller, admin = tokens
    config = EchoConfig(
        port=0, metrics_port=0, auth="token", caller_token_file=str(caller), admin_token_file=str(admin)
    )
    with ServerThread(EchoService(config)) as server:
        yield server


def _code(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value.code()


def _reload(client: EchoClient) -> None:
    client.call("Reload", classifier_pb2.ReloadRequest(), retry=NO_RETRY)


def test_call_without_token_or_with_a_wrong_one_is_unauthenticated(secured):
    anonymous = EchoClient(secured.target, token="", retry=NO_RETRY)
    assert _code(lambda: anonymous.score(["a"])) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: _reload(anonymous)) == grpc.StatusCode.UNAUTHENTICATED
    forged = EchoClient(secured.target, token=CALLER + "x", retry=NO_RETRY)
    with pytest.raises(grpc.RpcError) as err:
        forged.score(["a"])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bearer token" in err.value.details()
    # Probes carry no token: health answers anyway.
    assert anonymous.health() == "SERVING"


def test_caller_token_calls_work_methods_but_not_admin_methods(secured):
    caller = EchoClient(secured.target, token=CALLER, retry=NO_RETRY)
    assert caller.score(["abc"]) == [3.0]
    with pytest.raises(grpc.RpcError) as err:
        _reload(caller)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "administrator token" in err.value.details()


def test_admin_token_reaches_admin_and_caller_methods(secured):
    admin = EchoClient(secured.target, token=ADMIN, retry=NO_RETRY)
    assert admin.score(["ab"]) == [2.0]
    # Past auth: the echo service has no Reload of its own, so the servicer answers UNIMPLEMENTED.
    assert _code(lambda: _reload(admin)) == grpc.StatusCode.UNIMPLEMENTED


def test_clients_take_the_token_from_mathforge_token_file(secured, tokens, monkeypatch):
    monkeypatch.setenv("MATHFORGE_TOKEN_FILE", str(tokens[0]))
    monkeypatch.delenv("MATHFORGE_TOKEN", raising=False)
    assert EchoClient(secured.target).score(["abcd"]) == [4.0]


def test_a_rotated_token_file_takes_effect_without_restart(secured, tokens):
    caller_file, _ = tokens
    caller_file.write_text("rotated-token-aaaaaaaaaaaa\n" + CALLER + "\n")
    assert EchoClient(secured.target, token="rotated-token-aaaaaaaaaaaa").score(["a"]) == [1.0]
    caller_file.write_text("rotated-token-aaaaaaaaaaaa\n")
    old = EchoClient(secured.target, token=CALLER, retry=NO_RETRY)
    assert _code(lambda: old.score(["a"])) == grpc.StatusCode.UNAUTHENTICATED


def test_reflection_needs_a_token(secured):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(secured.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        assert _code(lambda: next(stub.ServerReflectionInfo(iter([request]), timeout=5))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        reply = next(
            stub.ServerReflectionInfo(
                iter([request]), timeout=5, metadata=[("authorization", f"Bearer {CALLER}")]
            )
        )
    assert "mathforge.v1.Classifier" in {s.name for s in reply.list_services_response.service}


def test_refused_calls_are_counted_in_the_metrics(secured):
    EchoClient(secured.target, token="", retry=NO_RETRY)
    with pytest.raises(grpc.RpcError):
        EchoClient(secured.target, token="", retry=NO_RETRY).score(["a"])
    body = urllib.request.urlopen(f"http://127.0.0.1:{secured.metrics_port}/metrics", timeout=5).read()
    assert (
        b'mathforge_rpc_requests_total{code="UNAUTHENTICATED",method="/mathforge.v1.Classifier/Score"} 1.0'
        in body
    )


def test_a_network_address_without_tokens_is_refused_unless_auth_is_off():
    with pytest.raises(ConfigError, match="not a loopback address"):
        EchoConfig(host="0.0.0.0", auth="auto").validate()
    with pytest.raises(ConfigError, match="caller_token_file"):
        EchoConfig(auth="token").validate()
    EchoConfig(host="0.0.0.0", auth="off").validate()
    EchoConfig(host="127.0.0.1", auth="local").validate()
    EchoConfig(host="::1", auth="auto").validate()


def test_an_unknown_admin_method_fails_at_start(tokens):
    caller, admin = tokens
    config = EchoConfig(
        port=0,
        metrics_port=-1,
        caller_token_file=str(caller),
        admin_token_file=str(admin),
        admin_methods=["Relaod"],
    )
    with pytest.raises(ValueError, match="Relaod"):
        ServerThread(EchoService(config)).start()


class _NumbersService(EchoService, evaluator_pb2_grpc.EvaluatorServicer):
    """Answers RunProgram by echoing the time limit back, to show what reaches a handler."""

    def register(self, server: grpc.aio.Server) -> None:
        super().register(server)
        evaluator_pb2_grpc.add_EvaluatorServicer_to_server(self, server)

    async def RunProgram(self, request, context):
        return evaluator_pb2.RunProgramResponse(wall_seconds=request.wall_time_s)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_invalid_argument_before_any_handler(value):
    with (
        ServerThread(_NumbersService(EchoConfig(port=0, metrics_port=-1))) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)
        ok = stub.RunProgram(evaluator_pb2.RunProgramRequest(code="1", wall_time_s=2.5))
        assert ok.wall_seconds == 2.5
        with pytest.raises(grpc.RpcError) as err:
            stub.RunProgram(evaluator_pb2.RunProgramRequest(code="1", wall_time_s=value), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "wall_time_s" in err.value.details() and "finite" in err.value.details()
