"""Prometheus metrics for a gRPC server: an interceptor that counts calls by method and status
code, times them and tracks calls in flight; and the /metrics HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mathforge.runtime.errors import RequestError
from mathforge.runtime.handlers import HandlerInterceptor

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RpcMetrics:
    """The per-method request metrics every service exports."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "mathforge_rpc_requests",
            "Finished gRPC calls by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "mathforge_rpc_latency_seconds",
            "gRPC call latency by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "mathforge_rpc_in_flight",
            "gRPC calls being served, by method",
            ["method"],
            registry=registry,
        )


class MetricsInterceptor(HandlerInterceptor):
    """Counts every call by method and final status code, with its latency; the outermost
    interceptor, so calls refused by the others (auth, limits) are counted too."""

    def __init__(self, metrics: RpcMetrics):
        self.metrics = metrics

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        start = time.perf_counter()
        self.metrics.in_flight.labels(method).inc()
        code = grpc.StatusCode.OK
        try:
            yield
            code = _context_code(context) or grpc.StatusCode.OK
        except RequestError as exc:  # only when no ErrorMapping runs inside this interceptor
            code = exc.code
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = _context_code(context) or grpc.StatusCode.UNKNOWN
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.latency.labels(method).observe(time.perf_counter() - start)
            self.metrics.in_flight.labels(method).dec()


def _context_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> tuple[Any, int]:
    """Starts the /metrics HTTP server in a thread; returns (server, bound port)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_port
