"""The one handler wrapper every server interceptor shares, and the two interceptors that shape
requests and errors: `RequestDecoding` (unparseable bytes and non-finite numbers are
INVALID_ARGUMENT) and `ErrorMapping` (`RequestError` becomes the call's status).

An interceptor subclasses `HandlerInterceptor` and gives `around(method, context)`, an async
context manager entered before the handler runs and left after its last response; the wrapper
does the same for all four call shapes (unary/stream in and out). The server chains them in the
order of `Service.interceptors()`: the first one's `around` is the outermost.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mathforge.runtime.errors import RequestError

log = logging.getLogger(__name__)

Around = Callable[[str, grpc.aio.ServicerContext], contextlib.AbstractAsyncContextManager[None]]
Deserializer = Callable[[bytes], Any] | None


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    method: str,
    around: Around,
    *,
    deserializer: Deserializer = None,
    check_request: Callable[[Any, str], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The handler with `around` entered for the whole call; `check_request` sees (and may replace
    or refuse) each request first, and `deserializer` replaces the handler's own."""
    check = check_request or (lambda request, _method: request)
    kwargs = {
        "request_deserializer": deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }

    async def checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield check(request, method)

    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(method, context):
                return await inner_uu(check(request, method), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(method, context):
                async for response in inner_us(check(request, method), context):
                    yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            async with around(method, context):
                return await inner_su(checked_stream(requests), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_ss = handler.stream_stream

    async def stream_stream(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async with around(method, context):
            async for response in inner_ss(checked_stream(requests), context):
                yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


class HandlerInterceptor(grpc.aio.ServerInterceptor, abc.ABC):
    """A server interceptor that runs `around` about every handler."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        return self.wrap(handler, details.method)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return wrap_handler(handler, method, self.around)

    @abc.abstractmethod
    def around(
        self, method: str, context: grpc.aio.ServicerContext
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Entered before the handler runs, left after it finished (or failed)."""


class ErrorMapping(HandlerInterceptor):
    """`RequestError` -> its status and message; any other exception is logged and is UNKNOWN."""

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except RequestError as exc:
            await context.abort(exc.code, exc.message)
        except Exception as exc:
            if not isinstance(exc, grpc.aio.AbortError):
                log.exception("unhandled error in %s", method)
            raise


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT."""

    def __init__(self, error: Exception):
        self.error = error


def _safe_deserializer(deserialize: Deserializer) -> Deserializer:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf raises DecodeError, among others, e.g. for invalid UTF-8
            return _Undecodable(exc)

    return parse


_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


@functools.cache
def _holds_floats(descriptor: Descriptor) -> bool:
    """Whether a message type has a float or double field anywhere inside (recursion-safe)."""
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        for field in current.fields:
            if field.type in _FLOATS:
                return True
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                pending.append(field.message_type)
    return False


def non_finite_field(message: Message, prefix: str = "") -> str | None:
    """The path of the first float or double field holding NaN or an infinity, or None."""
    if not _holds_floats(message.DESCRIPTOR):
        return None
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type in _FLOATS:
            values = value if field.is_repeated else (value,)
            if not all(math.isfinite(v) for v in values):
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                entry_value = field.message_type.fields_by_name["value"]
                if entry_value.type in _FLOATS:
                    if not all(math.isfinite(v) for v in value.values()):
                        return name
                    continue
                items = [v for v in value.values() if isinstance(v, Message)]
            elif field.is_repeated:
                items = list(value)
            else:
                items = [value]
            for i, item in enumerate(items):
                found = non_finite_field(item, f"{name}[{i}]." if len(items) > 1 else f"{name}.")
                if found:
                    return found
    return None


class RequestDecoding(HandlerInterceptor):
    """Unparseable requests and NaN or infinite numbers are INVALID_ARGUMENT before any handler
    code runs (the handlers can then compare numbers against limits safely)."""

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        yield

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return wrap_handler(
            handler,
            method,
            self.around,
            deserializer=_safe_deserializer(handler.request_deserializer),
            check_request=check_decoded,
        )


def check_decoded(request: Any, method: str) -> Any:
    """The request, or INVALID_ARGUMENT when it did not parse or holds a non-finite number."""
    if isinstance(request, _Undecodable):
        raise RequestError.invalid(
            f"the {method} request could not be parsed ({request.error}); "
            "string fields must be valid UTF-8 (send binary data as bytes)"
        )
    if isinstance(request, Message):
        bad = non_finite_field(request)
        if bad is not None:
            raise RequestError.invalid(f"field {bad} of the {method} request is not a finite number")
    return request
