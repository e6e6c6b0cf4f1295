"""Prometheus metrics for a gRPC server: an aio interceptor that counts calls by method and status
code, times them and tracks calls in flight, and turns `RequestError` into the call's status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mathforge.runtime.errors import RequestError

log = logging.getLogger(__name__)

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


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT."""

    def __init__(self, error: Exception):
        self.error = error


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf raises DecodeError, among others, e.g. for invalid UTF-8
            return _Undecodable(exc)

    return parse


def _check_decoded(request: Any, method: str) -> Any:
    if isinstance(request, _Undecodable):
        raise RequestError.invalid(
            f"the {method} request could not be parsed ({request.error}); "
            "string fields must be valid UTF-8 (send binary data as bytes)"
        )
    return request


async def _checked_stream(requests: AsyncIterator[Any], method: str) -> AsyncIterator[Any]:
    async for request in requests:
        yield _check_decoded(request, method)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler: metrics, RequestError -> status, unparseable requests -> INVALID_ARGUMENT."""

    def __init__(self, metrics: RpcMetrics):
        self.metrics = metrics

    @contextlib.asynccontextmanager
    async def _observed(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        start = time.perf_counter()
        self.metrics.in_flight.labels(method).inc()
        code = grpc.StatusCode.OK
        try:
            yield
            code = _context_code(context) or grpc.StatusCode.OK
        except RequestError as exc:
            code = exc.code
            await context.abort(exc.code, exc.message)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = _context_code(context) or grpc.StatusCode.UNKNOWN
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            log.exception("unhandled error in %s", method)
            raise
        finally:
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.latency.labels(method).observe(time.perf_counter() - start)
            self.metrics.in_flight.labels(method).dec()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        observed = self._observed
        kwargs = {
            "request_deserializer": _safe_deserializer(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with observed(method, context):
                    return await inner_uu(_check_decoded(request, method), context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with observed(method, context):
                    async for response in inner_us(_check_decoded(request, method), context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                async with observed(method, context):
                    return await inner_su(_checked_stream(requests, method), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        inner_ss = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async with observed(method, context):
                async for response in inner_ss(_checked_stream(requests, method), context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


def _context_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> tuple[Any, int]:
    """Starts the /metrics HTTP server in a thread; returns (server, bound port)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_port
