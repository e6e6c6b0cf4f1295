"""The Evaluator reports the sandbox layers that hold (Info) and refuses RunProgram, with the
reason, when a layer its configuration requires is missing on this machine; grading still works."""

from __future__ import annotations

import grpc
import pytest
from mathforge.evaluator.sandbox import SandboxSettings, probe
from mathforge.evaluator.service import Config, create_service
from mathforge.runtime.clients.evaluator import EvaluatorClient
from mathforge.runtime.config import ConfigError
from mathforge.runtime.server import ServerThread


def _serve(**overrides: object) -> tuple[ServerThread, EvaluatorClient]:
    config = Config(port=0, metrics_port=-1, symbolic_workers=1, **overrides)  # type: ignore[arg-type]
    server = ServerThread(create_service(config)).start()
    client = EvaluatorClient(server.target, timeout_s=60)
    client.wait_ready(60)
    return server, client


def test_info_reports_the_layers_that_hold_and_programs_run() -> None:
    server, client = _serve()
    try:
        details = client.info().details
        layers = details["sandbox_layers"].split(",")
        assert {"rlimits", "capabilities", "no_new_privs", "seccomp"} <= {
            layer.split("=")[0] for layer in layers
        }
        assert any(layer.startswith("landlock=abi ") for layer in layers)
        assert details["sandbox_refusal"] == ""
        assert details["sandbox_evaluator_dumpable"] == "false"  # its /proc files are root's
        assert client.run_program("import math\nprint(math.factorial(5))").stdout == "120\n"
    finally:
        client.close()
        server.stop()


def test_a_missing_required_layer_refuses_programs_with_the_reason() -> None:
    unavailable = probe(SandboxSettings()).unavailable
    if not unavailable:
        pytest.skip("every sandbox layer holds on this machine, so none can be missing")
    layer, reason = next(iter(unavailable.items()))
    server, client = _serve(sandbox_required_layers=["landlock", layer])
    try:
        assert layer in client.info().details["sandbox_refusal"]
        with pytest.raises(grpc.RpcError) as refused:
            client.run_program("print(1)")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert layer in refused.value.details() and reason in refused.value.details()
        assert "sandbox_required_layers" in refused.value.details()
        assert client.grade("2", "2").equivalent and client.health() == "SERVING"
    finally:
        client.close()
        server.stop()


def test_unknown_layer_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown sandbox layers"):
        Config(sandbox_required_layers=["landlok"]).validate()
