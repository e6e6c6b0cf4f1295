"""Request errors with the status code and a message that names the limit and how to change it.

A servicer raises `RequestError`; the runtime's interceptor turns it into the gRPC status, so no
handler needs to touch `context.abort`. Counts and sizes over a configured limit are
RESOURCE_EXHAUSTED; malformed input is INVALID_ARGUMENT.
"""

from __future__ import annotations

import math

import grpc


class RequestError(Exception):
    """An error answered to the caller with a gRPC status code (the server carries on)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def invalid(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def exhausted(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    @classmethod
    def precondition(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.FAILED_PRECONDITION, message)

    @classmethod
    def unavailable(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.UNAVAILABLE, message)


def _human_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if not value.is_integer() else f"{int(value)} {unit}"
    return f"{n} bytes"


def check_count(count: int, limit: int, what: str, flag: str) -> None:
    """RESOURCE_EXHAUSTED when a request carries more items than `limit` (0 = no limit)."""
    if limit and count > limit:
        raise RequestError.exhausted(f"request has {count} {what}, over the {limit} limit (--{flag})")


def check_bytes(index: int, size: int, limit: int, what: str, flag: str) -> None:
    """RESOURCE_EXHAUSTED when item `index` is larger than `limit` bytes (0 = no limit)."""
    if limit and size > limit:
        raise RequestError.exhausted(
            f"{what} {index} is {_human_bytes(size)}, over the {_human_bytes(limit)} limit (--{flag})"
        )


def check_range(value: float, low: float, high: float, what: str, flag: str | None = None) -> None:
    """INVALID_ARGUMENT (below low, NaN or infinite) or RESOURCE_EXHAUSTED (above high) for a
    numeric request field."""
    hint = f" (--{flag})" if flag else ""
    if not math.isfinite(value):
        raise RequestError.invalid(f"{what} is {value}, not a finite number")
    if value < low:
        raise RequestError.invalid(f"{what} is {value}, below the minimum {low}")
    if value > high:
        raise RequestError.exhausted(f"{what} is {value}, over the {high} limit{hint}")


def require(condition: bool, message: str) -> None:
    """INVALID_ARGUMENT with `message` unless `condition` holds."""
    if not condition:
        raise RequestError.invalid(message)


#: How far above the serving version a load may jump. Versions count published policies, so
#: this leaves any run room while a caller cannot pin a service at 2**63-1 and lock out the trainer.
MAX_VERSION_STEP = 1 << 20


def check_version(version: int, serving: int, component: str = "") -> None:
    """INVALID_ARGUMENT unless serving < version <= serving + MAX_VERSION_STEP (versions only grow,
    by bounded steps)."""
    label = f"{component} " if component else ""
    if version <= serving:
        raise RequestError.invalid(
            f"version {version} is not greater than the serving {label}version {serving}"
        )
    if version > serving + MAX_VERSION_STEP:
        raise RequestError.invalid(
            f"version {version} is more than {MAX_VERSION_STEP} above the serving {label}version "
            f"{serving}; versions grow by bounded steps"
        )
