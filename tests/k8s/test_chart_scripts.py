"""The chart's check script (helm/mathforge/files/grpc_check.py), which the TLS probes and the
`helm test` pods run, against real servers on loopback: it passes a healthy service, fails a
draining one, a silent port, a wrong answer and a TLS handshake without the client certificate."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import ServerThread

from tests.k8s.test_chart import by_kind, render, values_of
from tests.services.echo_service import EchoConfig, EchoService
from tests.services.test_runtime_tls import pki  # noqa: F401  (the certificates fixture)

SCRIPT = Path(__file__).resolve().parents[2] / "helm" / "mathforge" / "files" / "grpc_check.py"


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cheap_overrides(name: str, tmp_path: Path) -> dict[str, Any]:
    """Settings that keep a service's start small and its files in the test's directory; only the
    fields its Config has are used."""
    wanted: dict[str, dict[str, Any]] = {
        "classifier": {"builtin_model_dir": str(tmp_path / "classifier")},
        "dedup": {"store": "embedded", "store_path": str(tmp_path / "dedup")},
        "evaluator": {"symbolic_workers": 1, "grade_threads": 1},
        "sampler": {"torch_threads": 1},
        "reward": {"torch_threads": 1},
    }
    return wanted.get(name, {})


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_call_mode_passes_each_real_service(
    name: str, tmp_path: Path, check: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = SERVICES[name]
    if not spec.available():
        pytest.skip(f"{spec.module} is not in the tree yet")
    module = spec.load()
    fields = set(module.Config.field_names())
    overrides = {k: v for k, v in _cheap_overrides(name, tmp_path).items() if k in fields}
    config = module.Config(port=0, metrics_port=-1, **overrides)
    with ServerThread(module.create_service(config)) as server:
        status = check.main(["call", "--name", name, "--target", server.target, "--ready-timeout-s", "60"])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert out.out.startswith(f"{name} ok: ")


def test_health_mode_as_a_probe_runs_it(check: ModuleType) -> None:
    """The probe's exact command line, as a subprocess: SERVING, then NOT_SERVING while draining."""
    with ServerThread(EchoService(EchoConfig(port=0, metrics_port=-1))) as server:
        probe = [
            sys.executable,
            str(SCRIPT),
            "health",
            "--target",
            server.target,
            "--service",
            "mathforge.v1.Classifier",
            "--timeout-s",
            "5",
        ]
        ready = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        assert ready.returncode == 0, ready.stderr
        assert server.running is not None
        server.call(server.running.set_ready, False)
        draining = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        assert draining.returncode == 1 and "NOT_SERVING" in draining.stderr
        # The liveness key stays SERVING while the service drains.
        assert check.main(["health", "--target", server.target, "--service", ""]) == 0


def test_health_mode_fails_when_nothing_listens(
    check: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with ServerThread(EchoService(EchoConfig(port=0, metrics_port=-1))) as server:
        target = server.target
    assert check.main(["health", "--target", target, "--timeout-s", "1"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_call_mode_fails_a_wrong_answer(check: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """A server speaking the Classifier API but scoring by length (not a probability) is caught."""
    with ServerThread(EchoService(EchoConfig(port=0, metrics_port=-1, max_doc_bytes=4096))) as server:
        status = check.main(["call", "--name", "classifier", "--target", server.target])
    assert status == 1
    assert "classifier answered wrongly: expected one score in [0, 1]" in capsys.readouterr().err


def test_tls_and_mtls(check: ModuleType, pki: dict[str, str]) -> None:  # noqa: F811
    config = EchoConfig(
        port=0,
        metrics_port=-1,
        tls_cert=pki["server_crt"],
        tls_key=pki["server_key"],
        tls_client_ca=pki["ca"],
    )
    with ServerThread(EchoService(config)) as server:
        target = f"localhost:{server.port}"
        base = [
            "health",
            "--target",
            target,
            "--service",
            "mathforge.v1.Classifier",
            "--timeout-s",
            "5",
            "--ca",
            pki["ca"],
            "--server-name",
            "localhost",
        ]
        assert check.main([*base, "--cert", pki["client_crt"], "--key", pki["client_key"]]) == 0
        assert check.main(base) == 1, "mTLS must refuse a client without a certificate"
        assert check.main([*base, "--cert", pki["stranger_crt"], "--key", pki["stranger_key"]]) == 1


def test_rendered_mtls_probe_command_passes_against_an_mtls_server(pki: dict[str, str]) -> None:  # noqa: F811
    """The readiness probe exactly as the chart renders it under mTLS, with the Secret's files
    mapped to the test's certificates: the pod presents its own certificate as the client."""
    deployment = by_kind(render(values_of("ci/all-features-values.yaml")), "Deployment")["mf-classifier"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    files = {
        "/etc/mathforge/tls/ca.crt": pki["ca"],
        "/etc/mathforge/tls/tls.crt": pki["server_crt"],
        "/etc/mathforge/tls/tls.key": pki["server_key"],
    }
    config = EchoConfig(
        port=0,
        metrics_port=-1,
        tls_cert=pki["server_crt"],
        tls_key=pki["server_key"],
        tls_client_ca=pki["ca"],
    )
    with ServerThread(EchoService(config)) as server:
        local = [files.get(arg, arg) for arg in command]
        local = [f"localhost:{server.port}" if arg == "127.0.0.1:50051" else arg for arg in local]
        local = ["localhost" if arg == "mf-classifier" else arg for arg in local]
        assert local[:2] == ["python", "/opt/mathforge/scripts/grpc_check.py"]
        run = subprocess.run(
            [sys.executable, str(SCRIPT), *local[2:]], capture_output=True, text=True, timeout=60
        )
    assert run.returncode == 0, run.stderr
