"""Runs a service: grpc.aio server, health (liveness "" and readiness by service name), reflection,
Prometheus metrics on their own port, limits and keepalive options, TLS, bearer-token auth, and a
SIGTERM drain.

A service subclasses `Service`; `serve_forever` runs it in the foreground (what `mathforge serve`
calls) and `ServerThread` runs it in a background thread (tests, embedding).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

import mathforge
from mathforge.runtime.auth import build_auth_interceptor
from mathforge.runtime.config import ServiceConfig
from mathforge.runtime.handlers import ErrorMapping, RequestDecoding
from mathforge.runtime.logs import configure_logging
from mathforge.runtime.metrics import MetricsInterceptor, RpcMetrics, serve_metrics
from mathforge.runtime.paths import AccessRoots
from mathforge.runtime.tls import server_credentials

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Service(abc.ABC):
    """One gRPC service. Subclasses add their servicer in `register` and load models in `start`."""

    #: Full proto name, e.g. "mathforge.v1.Classifier": the readiness key and the reflection name.
    name: ClassVar[str] = ""

    def __init__(self, config: ServiceConfig):
        self.config = config
        #: The service's own counters go in this registry, beside the runtime's RPC metrics.
        self.registry = CollectorRegistry()
        #: Where requests may point this service (require_path / require_target).
        self.access = AccessRoots.from_config(config)
        self._set_ready: Callable[[bool], Awaitable[None]] | None = None

    def interceptors(self, metrics: RpcMetrics) -> list[grpc.aio.ServerInterceptor]:
        """The server's interceptors, outermost first: metrics (counts every outcome), error
        mapping, auth, request decoding. A service may add its own or drop one."""
        chain: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(metrics), ErrorMapping()]
        auth = build_auth_interceptor(self.config, self.name)
        if auth is not None:
            chain.append(auth)
        chain.append(RequestDecoding())
        return chain

    async def set_serving(self, serving: bool) -> None:
        """Sets the readiness key, e.g. NOT_SERVING when the service can no longer answer right."""
        if self._set_ready is not None:
            await self._set_ready(serving)

    @abc.abstractmethod
    def register(self, server: grpc.aio.Server) -> None:
        """Adds the servicer(s) to the server (e.g. add_ClassifierServicer_to_server(self, server))."""

    async def start(self) -> None:
        """Loads models or indexes. The service is marked ready (SERVING) when this returns."""

    async def stop(self) -> None:
        """Releases resources after the server stopped."""


def _server_options(config: ServiceConfig) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 0),
    ]
    if config.max_connection_age_s > 0:
        options.append(("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)))
        options.append(("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace_s * 1000)))
    return options


class RunningServer:
    """A started server: its ports, health servicer and shutdown."""

    def __init__(self, service: Service):
        self.service = service
        self.config = service.config
        self.health = health.aio.HealthServicer()
        self.rpc_metrics = RpcMetrics(service.registry)
        self.server = grpc.aio.server(
            interceptors=service.interceptors(self.rpc_metrics),
            options=_server_options(self.config),
            maximum_concurrent_rpcs=self.config.max_concurrent_rpcs or None,
        )
        self.port = 0
        self.metrics_port = -1
        self._metrics_http: Any = None
        self._stopped = asyncio.Event()
        service._set_ready = self.set_ready

    async def start(self) -> None:
        config, service = self.config, self.service
        service.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if config.reflection:
            reflection.enable_server_reflection(
                (service.name, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
            )
        address = f"{config.host}:{config.port}"
        if config.tls_cert:
            creds = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            self.port = self.server.add_secure_port(address, creds)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {address}")
        await self.health.set("", SERVING)
        await self.health.set(service.name, NOT_SERVING)
        await self.server.start()
        if config.metrics_port >= 0:
            self._metrics_http, self.metrics_port = serve_metrics(
                service.registry, config.host, config.metrics_port
            )
        log.info(
            "listening",
            extra={
                "fields": {
                    "service": service.name,
                    "port": self.port,
                    "metrics_port": self.metrics_port,
                    "tls": bool(config.tls_cert),
                    "mtls": bool(config.tls_client_ca),
                }
            },
        )
        await service.start()
        await self.set_ready(True)
        log.info(
            "ready",
            extra={"fields": {"service": service.name, "port": self.port, "metrics_port": self.metrics_port}},
        )

    async def set_ready(self, ready: bool) -> None:
        await self.health.set(self.service.name, SERVING if ready else NOT_SERVING)

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Readiness off, optional drain, refuse new calls, let in-flight calls finish, stop."""
        grace = self.config.grace_s if grace_s is None else grace_s
        await self.set_ready(False)
        if self.config.drain_s > 0:
            await asyncio.sleep(self.config.drain_s)
        log.info("stopping", extra={"fields": {"service": self.service.name, "grace_s": grace}})
        await self.server.stop(grace)
        try:
            await self.service.stop()
        finally:
            if self._metrics_http is not None:
                self._metrics_http.shutdown()
                self._metrics_http.server_close()
            self._stopped.set()
        log.info("stopped", extra={"fields": {"service": self.service.name}})

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def _serve_until_signal(service: Service) -> None:
    running = RunningServer(service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await running.start()
    except BaseException:
        await running.server.stop(0)
        raise
    await stop.wait()
    await running.shutdown()


def serve_forever(service: Service) -> int:
    """Runs the service in the foreground until SIGTERM or SIGINT; returns the exit status."""
    config = service.config
    configure_logging(config.log_level, config.log_format)
    log.info("starting", extra={"fields": {"service": service.name, "version": mathforge.__version__}})
    config.log_effective(service.name)
    try:
        asyncio.run(_serve_until_signal(service))
    except Exception:
        log.exception("service %s failed", service.name)
        return 1
    return 0


class ServerThread:
    """Runs a service on its own event loop in a background thread.

    with ServerThread(service) as server:
        client = ClassifierClient(f"127.0.0.1:{server.port}")
    """

    def __init__(self, service: Service, start_timeout_s: float = 120.0):
        self.service = service
        self.start_timeout_s = start_timeout_s
        self.running: RunningServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop_requested: asyncio.Event | None = None

    @property
    def port(self) -> int:
        assert self.running is not None
        return self.running.port

    @property
    def metrics_port(self) -> int:
        assert self.running is not None
        return self.running.metrics_port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name=f"serve-{self.service.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(self.start_timeout_s):
            raise TimeoutError(f"{self.service.name} did not start within {self.start_timeout_s}s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            self.running = RunningServer(self.service)
        except BaseException as exc:  # e.g. an unreadable token file
            self._error = exc
            self._started.set()
            return
        try:
            await self.running.start()
        except BaseException as exc:
            self._error = exc
            await self.running.server.stop(0)
            self._started.set()
            return
        self._started.set()
        await self._stop_requested.wait()

    def call(self, coro_fn: Any, *args: Any, timeout: float = 60.0) -> Any:
        """Runs a coroutine function on the server's loop (e.g. running.set_ready) and returns its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop).result(timeout)

    def stop(self, grace_s: float | None = None) -> None:
        if self._loop is None or self.running is None or self._thread is None:
            return
        if self._error is None and self._loop.is_running():
            self.call(self.running.shutdown, grace_s, timeout=(grace_s or self.service.config.grace_s) + 60)
            self._loop.call_soon_threadsafe(self._stop_requested.set)  # type: ignore[union-attr]
        self._thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
