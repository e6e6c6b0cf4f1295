"""Typed-client base: a deadline on every call, retries with backoff on UNAVAILABLE, health waits,
TLS, and `dns:///name:port` targets balanced round robin across a headless Service's pods.

A typed client calls its stub's own methods (`self.call(self.stub.Generate, request)`), so a renamed
or removed RPC fails where it is used, not by name at run time. A caller that must reach every pod
(load weights into all of them, spread work by load) uses runtime/replicas.py instead of one
round-robin channel."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mathforge.runtime.auth import client_token, with_token
from mathforge.runtime.tls import ClientTLS
from mathforge.v1 import common_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on UNAVAILABLE with exponential backoff and full jitter, within `budget_s` in all."""

    attempts: int = 8
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    budget_s: float = 120.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        return random.uniform(0, ceiling)


NO_RETRY = RetryPolicy(attempts=1)


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    service_config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.service_config", json.dumps(service_config)),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.enable_retries", 0),  # retries are ours, with a budget, so they can be counted and logged
    ]


class ServiceClient:
    """Base of the typed clients. Subclasses set `service_name` and `stub_class` and add methods."""

    service_name: ClassVar[str] = ""
    stub_class: ClassVar[Any]

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        tls: ClientTLS | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
        token: str | None = None,
    ):
        self.target = target
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        options = channel_options(max_message_bytes)
        if tls is not None:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self.channel = grpc.secure_channel(target, tls.credentials(), options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        # Every call carries the bearer token (`token`, default MATHFORGE_TOKEN or MATHFORGE_TOKEN_FILE).
        calls = with_token(self.channel, client_token() if token is None else token)
        self.stub = self.stub_class(calls)
        self._health = health_pb2_grpc.HealthStub(calls)

    # ---- calls ----------------------------------------------------------------------------
    def call(
        self,
        method: Callable[..., Any] | str,
        request: Any,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Calls a unary method of this client's stub (`self.stub.Score`; a method name is still
        taken) with a deadline, retrying UNAVAILABLE within the retry budget."""
        rpc = getattr(self.stub, method) if isinstance(method, str) else method
        name = method if isinstance(method, str) else rpc_name(rpc)
        return self._with_retries(name, lambda t: rpc(request, timeout=t), timeout_s, retry)

    def stream(
        self,
        method: Callable[..., Any] | str,
        request: Any,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Iterator[Any]:
        """Calls a server-streaming method; retried only if it fails before the first message."""
        rpc = getattr(self.stub, method) if isinstance(method, str) else method
        method = method if isinstance(method, str) else rpc_name(rpc)

        def open_stream(timeout: float) -> tuple[Any, Iterator[Any]]:
            responses = rpc(request, timeout=timeout)
            first = next(responses, _END)
            return first, responses

        first, rest = self._with_retries(method, open_stream, timeout_s, retry)
        if first is _END:
            return
        yield first
        yield from rest

    def _with_retries(
        self,
        method: str,
        attempt_fn: Callable[[float], T],
        timeout_s: float | None,
        retry: RetryPolicy | None,
    ) -> T:
        policy = retry or self.retry
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        for attempt in range(policy.attempts):
            try:
                return attempt_fn(timeout)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                elapsed = time.monotonic() - started
                last = attempt + 1 >= policy.attempts
                if code not in RETRYABLE or last or elapsed >= policy.budget_s:
                    raise
                pause = min(policy.backoff(attempt), max(0.0, policy.budget_s - elapsed))
                log.warning(
                    "retrying",
                    extra={
                        "fields": {
                            "target": self.target,
                            "method": method,
                            "code": code.name if code else None,
                            "attempt": attempt + 1,
                            "pause_s": round(pause, 3),
                        }
                    },
                )
                time.sleep(pause)
        raise AssertionError("unreachable")

    # ---- health and info ------------------------------------------------------------------
    def health(self, service: str | None = None, timeout_s: float = 2.0) -> str:
        """SERVING, NOT_SERVING, UNKNOWN or UNAVAILABLE (no answer) for the service's readiness."""
        name = self.service_name if service is None else service
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=name), timeout=timeout_s)
        except grpc.RpcError as exc:
            return "SERVICE_UNKNOWN" if exc.code() == grpc.StatusCode.NOT_FOUND else "UNAVAILABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_ready(self, timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
        """Blocks until the service reports SERVING; TimeoutError naming the last status otherwise."""
        deadline = time.monotonic() + timeout_s
        status = "UNAVAILABLE"
        while time.monotonic() < deadline:
            status = self.health()
            if status == "SERVING":
                return
            time.sleep(poll_s)
        raise TimeoutError(
            f"{self.service_name} at {self.target} not ready after {timeout_s}s (last: {status})"
        )

    def info(self, timeout_s: float | None = None) -> common_pb2.ServiceInfo:
        return self.call(self.stub.Info, common_pb2.InfoRequest(), timeout_s=timeout_s)

    # ---- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()


def rpc_name(rpc: Any) -> str:
    """The method name of a stub's callable, for logs ("/mathforge.v1.Sampler/Generate" -> "Generate")."""
    path = getattr(rpc, "_method", b"")
    path = path.decode() if isinstance(path, bytes) else str(path)
    return path.rsplit("/", 1)[-1] or repr(rpc)
