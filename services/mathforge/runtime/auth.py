"""Who may call a service: bearer tokens in two roles, checked by a server interceptor, and sent
by every typed client.

Callers (the trainer, the evaluator, data jobs) may use the work methods: Score, Check,
CheckAndInsert, Grade, Generate, Extract, Evaluate, Info... Administrators may also change what a
service serves: the methods in ADMIN_METHODS (Reload, LoadModel, LoadWeights, LoadBenchmarks) and
those a service's `admin_methods` adds (e.g. the evaluator's RunProgram). Health checks need no
token (kubelet probes cannot send one); reflection needs the caller token.

Modes (`--auth`): token (tokens required), local (no tokens, allowed only on a loopback address:
one developer's machine, `mathforge up`, the demo, tests), off (no tokens on any address: an
explicit choice, never for a shared network), auto (token when a token file is set, else local).
docs/security.md has the threat model.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from google.protobuf import descriptor_pool

from mathforge.runtime.errors import RequestError
from mathforge.runtime.handlers import HandlerInterceptor

log = logging.getLogger(__name__)

AUTH_MODES = ("auto", "token", "local", "off")
CALLER, ADMIN = "caller", "admin"

#: Methods that change what a service serves; every other method of a service is a caller method.
ADMIN_METHODS: dict[str, frozenset[str]] = {
    "mathforge.v1.Classifier": frozenset({"Reload"}),
    "mathforge.v1.Dedup": frozenset({"LoadBenchmarks"}),
    "mathforge.v1.Reward": frozenset({"LoadModel"}),
    "mathforge.v1.Sampler": frozenset({"LoadWeights"}),
    "mathforge.v1.Evaluator": frozenset(),
}
#: Services any pod may call without a token: the kubelet's gRPC probes cannot send one.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
METADATA_KEY = "authorization"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def effective_mode(mode: str, host: str, caller_token_file: str, admin_token_file: str) -> str:
    """token, local or off for a config's `auth`; ValueError for a combination that would leave a
    network-facing service open without saying so."""
    if mode not in AUTH_MODES:
        raise ValueError(f"auth {mode!r} is not one of {', '.join(AUTH_MODES)}")
    has_tokens = bool(caller_token_file or admin_token_file)
    if mode == "auto":
        mode = "token" if has_tokens else "local"
    if mode == "token" and not caller_token_file:
        raise ValueError("auth token needs caller_token_file (and admin_token_file for admin methods)")
    if mode == "local" and not is_loopback(host):
        raise ValueError(
            f"host {host} is not a loopback address, so the service needs tokens: set "
            "caller_token_file and admin_token_file (auth token), or auth off to serve every caller "
            "on that network knowingly"
        )
    return mode


class TokenFile:
    """The tokens in a file, one a line (two during a rotation), re-read when the file changes
    (a Secret's mounted files are replaced in place by the kubelet)."""

    def __init__(self, path: str):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self.tokens()  # fail at start, not at the first call, on an unreadable or empty file

    def tokens(self) -> tuple[bytes, ...]:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_ino)
            if stamp != self._stamp:
                lines = self.path.read_text().split()
                if not lines:
                    raise ValueError(f"token file {self.path} is empty")
                self._tokens = tuple(line.encode() for line in lines)
                self._stamp = stamp
        except OSError as exc:
            if not self._tokens:
                raise ValueError(f"cannot read token file {self.path}: {exc.strerror}") from None
            log.warning("token file %s unreadable (%s); keeping the tokens read before", self.path, exc)
        return self._tokens

    def matches(self, token: bytes) -> bool:
        # compare_digest against every token, so the time taken does not depend on which matched
        return any([hmac.compare_digest(token, known) for known in self.tokens()])


def _method_names(service: str) -> set[str]:
    try:
        return {m.name for m in descriptor_pool.Default().FindServiceByName(service).methods}
    except KeyError:
        return set()


class AuthInterceptor(HandlerInterceptor):
    """Refuses calls without a valid bearer token (UNAUTHENTICATED) and caller-token calls to
    admin methods (PERMISSION_DENIED)."""

    def __init__(
        self,
        service: str,
        caller: TokenFile,
        admin: TokenFile | None,
        extra_admin_methods: Iterable[str] = (),
    ):
        self.service = service
        self.caller = caller
        self.admin = admin
        self.admin_methods = ADMIN_METHODS.get(service, frozenset()) | frozenset(extra_admin_methods)
        known = _method_names(service)
        unknown = sorted(self.admin_methods - known) if known else []
        if unknown:
            raise ValueError(f"admin_methods {unknown} are not methods of {service}; it has {sorted(known)}")

    def role_needed(self, method: str) -> str | None:
        """None (open), CALLER or ADMIN for a full method name like /mathforge.v1.Sampler/Generate."""
        service, _, name = method.lstrip("/").partition("/")
        if service in OPEN_SERVICES:
            return None
        if service == self.service and name in self.admin_methods:
            return ADMIN
        return CALLER

    def role_of(self, context: grpc.aio.ServicerContext) -> str | None:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == METADATA_KEY:
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                token = token.strip() if scheme.lower() == "bearer" else None
                break
        if not token:
            return None
        raw = token.encode()
        if self.admin is not None and self.admin.matches(raw):
            return ADMIN
        return CALLER if self.caller.matches(raw) else None

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        needed = self.role_needed(method)
        if needed is not None:
            role = self.role_of(context)
            if role is None:
                raise RequestError(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{method} needs a valid bearer token: send metadata "
                    f"'{METADATA_KEY}: Bearer <token>' (MATHFORGE_TOKEN_FILE for the typed clients)",
                )
            if needed == ADMIN and role != ADMIN:
                raise RequestError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} changes what the service serves and needs the administrator token; "
                    "the caller token may not call it",
                )
        yield


def build_auth_interceptor(config: Any, service: str) -> AuthInterceptor | None:
    """The interceptor for a ServiceConfig's auth settings, or None in local and off modes."""
    mode = effective_mode(config.auth, config.host, config.caller_token_file, config.admin_token_file)
    log.info("auth", extra={"fields": {"service": service, "mode": mode}})
    if mode != "token":
        return None
    admin = TokenFile(config.admin_token_file) if config.admin_token_file else None
    return AuthInterceptor(service, TokenFile(config.caller_token_file), admin, config.admin_methods)


# ---- the client side --------------------------------------------------------------------------
def client_token(env: dict[str, str] | None = None) -> str:
    """The token typed clients send by default: MATHFORGE_TOKEN, else MATHFORGE_TOKEN_FILE's first
    line, else none."""
    env = dict(os.environ) if env is None else env
    if env.get("MATHFORGE_TOKEN"):
        return env["MATHFORGE_TOKEN"].strip()
    path = env.get("MATHFORGE_TOKEN_FILE", "")
    if not path:
        return ""
    try:
        lines = Path(path).read_text().split()
    except OSError as exc:
        raise ValueError(f"cannot read MATHFORGE_TOKEN_FILE {path}: {exc.strerror}") from None
    return lines[0] if lines else ""


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str):
        self._entry = (METADATA_KEY, f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._entry]
        return _CallDetails(  # type: ignore[return-value]
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def with_token(channel: grpc.Channel, token: str) -> grpc.Channel:
    """The channel, sending `token` on every call (unchanged when the token is empty)."""
    return grpc.intercept_channel(channel, BearerToken(token)) if token else channel
