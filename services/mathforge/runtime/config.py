"""Service configuration: one dataclass per service, filled from defaults, an optional YAML file,
MATHFORGE_* environment variables and command-line flags, in that order of precedence.

A field is declared with `option(default, help)`; its flag is `--field-name`, its variable
`MATHFORGE_FIELD_NAME`. The same dataclass parses the Helm chart's ConfigMap (`from_mapping`), so a
value a service would reject fails the chart test instead of the pod.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Self

import yaml

from mathforge.runtime.auth import effective_mode

log = logging.getLogger(__name__)

ENV_PREFIX = "MATHFORGE_"


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class _FlagParser(argparse.ArgumentParser):
    """A service's flags: a bad one is a ConfigError (one line from the caller), not argparse's usage
    block of every flag (50 lines for the evaluator) ahead of the message."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (`{self.prog} --help` lists the flags)")


def option(default: Any, help: str, **metadata: Any) -> Any:
    """Declares a config field with its help text (shown by --help and in the docs)."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"help": help, **metadata}
        )
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _base_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Converts a value from YAML, an env variable or a flag to the field's type."""
    base = _base_type(tp)
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"not an integer: {value!r}")
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"not an integer: {value!r}") from None
        if base is float:
            if isinstance(value, bool):
                raise ValueError(f"not a number: {value!r}")
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"not a number: {value!r}") from None
        if base is str:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(f"not a string: {value!r}")
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = (
                    [v.strip() for v in value.split(",") if v.strip()]
                    if not value.startswith("[")
                    else json.loads(value)
                )
            if not isinstance(value, list):
                raise ValueError(f"not a list: {value!r}")
            (item_tp,) = typing.get_args(base) or (str,)
            return [_coerce(name, item_tp, v) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = json.loads(value) if value.strip() else {}
            if not isinstance(value, dict):
                raise ValueError(f"not a mapping: {value!r}")
            _, val_tp = typing.get_args(base) or (str, str)
            return {str(k): _coerce(name, val_tp, v) for k, v in value.items()}
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config field {name!r}: {exc}") from None
    return value


@dataclasses.dataclass
class ServiceConfig:
    """Settings every service has. Subclasses set the port defaults and add their own fields."""

    host: str = option("127.0.0.1", "address to bind; 0.0.0.0 or [::] in a cluster")
    port: int = option(0, "gRPC port (0 = any free port, printed at start)")
    metrics_port: int = option(0, "Prometheus /metrics port (0 = any free port, -1 = off)")
    max_message_bytes: int = option(64 * 1024 * 1024, "largest gRPC message accepted or sent, bytes")
    grace_s: float = option(10.0, "on SIGTERM, seconds in-flight calls get to finish")
    drain_s: float = option(0.0, "on SIGTERM, seconds to stay up NOT_SERVING before the grace period")
    max_concurrent_rpcs: int = option(0, "calls served at once before new ones queue (0 = no cap)")
    keepalive_time_s: float = option(30.0, "server keepalive ping interval, seconds")
    keepalive_timeout_s: float = option(10.0, "keepalive ping ack timeout, seconds")
    max_connection_age_s: float = option(
        0.0, "close connections after this age so clients rebalance (0 = never)"
    )
    max_connection_age_grace_s: float = option(30.0, "time a closing connection gets for its calls")
    tls_cert: str = option("", "PEM server certificate; with tls_key enables TLS")
    tls_key: str = option("", "PEM private key for tls_cert")
    tls_client_ca: str = option(
        "", "PEM CA bundle; when set, clients must present a certificate it signed (mTLS)"
    )
    auth: str = option(
        "auto",
        "who may call: token (bearer tokens required), local (no tokens; loopback host only), off (no "
        "tokens on any address, knowingly), auto (token when a token file is set, else local)",
    )
    caller_token_file: str = option(
        "", "file holding the callers' bearer token(s), one a line (a mounted Secret)"
    )
    admin_token_file: str = option(
        "", "file holding the administrators' bearer token(s); they may call every method"
    )
    admin_methods: list[str] = option(
        [], "more methods of this service that need the administrator token (e.g. RunProgram)"
    )
    reflection: bool = option(True, "serve gRPC reflection (it needs the caller token when auth is on)")
    path_roots: dict[str, list[str]] = option(
        {},
        "directories each kind of file a request names must resolve under, symlinks followed, e.g. "
        '{"model": ["/checkpoints"], "benchmark": ["/data/benchmarks"]}; a kind with no root '
        "refuses every path unless auth is local or off",
    )
    allowed_targets: dict[str, list[str]] = option(
        {},
        "endpoints a request may make the service call, by kind, e.g. "
        '{"sampler": ["mathforge-sampler:50054"]}; a kind with none refuses every target unless '
        "auth is local or off",
    )
    log_level: str = option("INFO", "DEBUG, INFO, WARNING or ERROR")
    log_format: str = option("auto", "json, text, or auto (json when stderr is not a terminal)")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Builds a config from a mapping (YAML / ConfigMap); unknown keys are an error."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown config field {key!r} for {cls.__name__}; known: {sorted(known)}")
            kwargs[name] = _coerce(name, hints[name], value)
        config = cls(**kwargs)
        config.validate()
        return config

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, prog: str | None = None
    ) -> Self:
        """Defaults < --config FILE (or MATHFORGE_CONFIG) < MATHFORGE_* variables < flags."""
        env = os.environ if env is None else env
        hints = typing.get_type_hints(cls)
        parser = _FlagParser(prog=prog, description=(cls.__doc__ or "").strip().splitlines()[0])
        parser.add_argument(
            "--config",
            default=env.get(ENV_PREFIX + "CONFIG", ""),
            help="YAML file of config fields (env MATHFORGE_CONFIG)",
        )
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            help_text = f"{f.metadata.get('help', '')} (env {ENV_PREFIX}{f.name.upper()})"
            if _base_type(hints[f.name]) is bool:
                parser.add_argument(flag, dest=f.name, default=None, nargs="?", const="true", help=help_text)
            else:
                parser.add_argument(flag, dest=f.name, default=None, help=help_text)
        args = parser.parse_args(argv)
        values: dict[str, Any] = {}
        if args.config:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{args.config}: expected a mapping of config fields")
            values.update(loaded)
        for f in dataclasses.fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        for f in dataclasses.fields(cls):
            flag_value = getattr(args, f.name)
            if flag_value is not None:
                values[f.name] = flag_value
        return cls.from_mapping(values)

    # ---- checks and views ---------------------------------------------------------------
    def validate(self) -> None:
        """Raises ConfigError for values the service cannot run with. Subclasses extend it."""
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not -1 <= value <= 65535:
                raise ConfigError(f"{name} {value} is outside 0..65535")
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max_message_bytes {self.max_message_bytes} is below 1024")
        if self.grace_s < 0 or self.drain_s < 0:
            raise ConfigError("grace_s and drain_s must be >= 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca (mTLS) needs tls_cert and tls_key")
        try:
            effective_mode(self.auth, self.host, self.caller_token_file, self.admin_token_file)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError(f"log_format {self.log_format!r} is not auto, json or text")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def log_effective(self, service: str) -> None:
        """Logs the effective config at start, with secrets' paths but never their contents (nor a
        password written into a URL)."""
        shown = {k: redact_url(v) if isinstance(v, str) else v for k, v in self.as_dict().items()}
        log.info("config", extra={"fields": {"service": service, "config": shown}})


def redact_url(text: str) -> str:
    """`text` with the password of a URL's user info (redis://:secret@host) replaced by ***."""
    scheme, sep, rest = text.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return text
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
