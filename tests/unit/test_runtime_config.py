"""Service config: precedence of defaults, file, environment and flags; strict parsing."""

from __future__ import annotations

import dataclasses

import pytest
from mathforge.runtime.config import ConfigError, ServiceConfig, option


@dataclasses.dataclass
class DemoConfig(ServiceConfig):
    port: int = option(50051, "gRPC port")
    model_path: str = option("", "model file")
    max_items: int = option(1024, "documents per request")
    reload_on_change: bool = option(False, "watch the model file")
    stop: list[str] = option([], "stop strings")


def test_defaults_then_file_then_env_then_flags(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model_path: /from/file\nmax_items: 10\nport: 1\n")
    env = {"MATHFORGE_CONFIG": str(config_file), "MATHFORGE_MAX_ITEMS": "20", "MATHFORGE_PORT": "2"}
    config = DemoConfig.from_args(["--port", "3", "--reload-on-change"], env=env)
    assert (config.model_path, config.max_items, config.port, config.reload_on_change) == (
        "/from/file",
        20,
        3,
        True,
    )
    assert DemoConfig.from_args([], env={}).port == 50051


def test_unknown_key_and_wrong_type_are_named():
    with pytest.raises(ConfigError, match="unknown config field 'max_itmes'"):
        DemoConfig.from_mapping({"max_itmes": 3})
    with pytest.raises(ConfigError, match="'max_items': not an integer"):
        DemoConfig.from_mapping({"max_items": "many"})
    with pytest.raises(ConfigError, match="'reload_on_change': not a boolean"):
        DemoConfig.from_mapping({"reload_on_change": "maybe"})
    with pytest.raises(ConfigError, match="port 70000 is outside"):
        DemoConfig.from_mapping({"port": 70000})


def test_lists_parse_from_yaml_env_and_flags():
    assert DemoConfig.from_mapping({"stop": ["a", "b"]}).stop == ["a", "b"]
    assert DemoConfig.from_args([], env={"MATHFORGE_STOP": "x,y"}).stop == ["x", "y"]


def test_tls_pairs_must_be_complete():
    with pytest.raises(ConfigError, match="tls_cert and tls_key must be set together"):
        DemoConfig.from_mapping({"tls_cert": "a.crt"})
    with pytest.raises(ConfigError, match="mTLS"):
        DemoConfig.from_mapping({"tls_client_ca": "ca.crt"})
