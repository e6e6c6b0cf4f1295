"""`mathforge up`: the services as local child processes on their ports, started together, checked
for readiness, and stopped together (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mathforge.runtime.registry import SERVICES, ServiceSpec

log = logging.getLogger(__name__)


@dataclass
class ChildService:
    spec: ServiceSpec
    port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def status(self, timeout_s: float = 1.0) -> str:
        return probe(self.target, self.spec.proto_name, timeout_s)


def probe(target: str, service: str, timeout_s: float = 1.0) -> str:
    """Readiness of `service` at `target`: SERVING, NOT_SERVING, or UNAVAILABLE."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return "UNAVAILABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class PortInUse(RuntimeError):
    """A port the group would listen on is already taken."""


def require_free_ports(ports: Mapping[int, str], host: str = "127.0.0.1") -> None:
    """Raises PortInUse naming the first port something already listens on. Checked before any child
    starts, so readiness can never be answered by another process on the same ports."""
    for port, what in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PortInUse(
                    f"port {port} ({what}) is in use (another `mathforge up`? use --port-offset, "
                    "or `mathforge status` to see what serves there)"
                ) from None


@dataclass
class ServiceGroup:
    """Starts services as `python -m mathforge serve NAME` children; use as a context manager.

    overrides: per service, config fields (e.g. {"sampler": {"model_path": "runs/x/sft"}}).
    """

    names: list[str]
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log_dir: Path = Path(".cache/logs")
    port_offset: int = 0
    grace_s: float = 10.0
    children: dict[str, ChildService] = field(default_factory=dict)

    def start(self, ready_timeout_s: float = 180.0) -> None:
        ports: dict[int, str] = {}
        for name in self.names:
            spec = SERVICES[name]
            ports[spec.port + self.port_offset] = f"{name} gRPC"
            ports[spec.metrics_port + self.port_offset] = f"{name} metrics"
        require_free_ports(ports)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            spec = SERVICES[name]
            port, metrics_port = spec.port + self.port_offset, spec.metrics_port + self.port_offset
            args = [
                sys.executable,
                "-m",
                "mathforge",
                "serve",
                name,
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
                "--grace-s",
                str(self.grace_s),
                # One machine, loopback ports: no tokens (docs/security.md); overrides may say otherwise.
                "--auth",
                "local",
            ]
            for key, value in self.overrides.get(name, {}).items():
                args += ["--" + key.replace("_", "-"), str(value)]
            log_path = self.log_dir / f"{name}.log"
            env = {**os.environ, "MATHFORGE_LOG_FORMAT": "json"}
            with open(log_path, "ab") as out:
                process = subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            self.children[name] = ChildService(spec, port, metrics_port, process, log_path)
        self.wait_ready(ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = dict(self.children)
        while pending and time.monotonic() < deadline:
            for name, child in list(pending.items()):
                if child.process.poll() is not None:
                    tail = child.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} exited with status {child.process.returncode}:\n{tail}")
                if child.status() == "SERVING":
                    del pending[name]
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"not ready after {timeout_s}s: {', '.join(pending)} (logs in {self.log_dir})")

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every child, wait the grace period (+5 s), SIGKILL what is left; exit codes."""
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + 5
        codes: dict[str, int | None] = {}
        for name, child in self.children.items():
            try:
                codes[name] = child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within the grace period; killing it", name)
                child.process.kill()
                codes[name] = child.process.wait()
        self.children.clear()
        return codes

    def __enter__(self) -> ServiceGroup:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def available_services() -> list[str]:
    return [name for name, spec in SERVICES.items() if spec.available()]
