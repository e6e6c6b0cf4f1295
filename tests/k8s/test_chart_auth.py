"""The chart's auth wiring: random tokens in a Secret mounted into every service and test pod, the
service configs in token mode (parsed by the services' own Config classes), Redis behind a
password, reflection off, and the evaluator allowed to call only this release's sampler."""

from __future__ import annotations

import base64
from typing import Any

import yaml
from mathforge.runtime.auth import effective_mode
from mathforge.runtime.registry import SERVICES

from tests.k8s.test_chart import RELEASE, by_kind, render


def _config(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return yaml.safe_load(by_kind(objects, "ConfigMap")[f"{RELEASE}-{name}-config"]["data"]["config.yaml"])


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def test_every_service_requires_tokens_from_the_mounted_secret() -> None:
    objects = render()
    secret = by_kind(objects, "Secret")[f"{RELEASE}-auth"]
    caller, admin = (base64.b64decode(secret["data"][k]).decode() for k in ("caller-token", "admin-token"))
    assert len(caller) == len(admin) == 48 and caller != admin
    for name, spec in SERVICES.items():
        config = _config(objects, name)
        assert config["reflection"] is False
        mode = effective_mode(
            config["auth"], config["host"], config["caller_token_file"], config["admin_token_file"]
        )
        assert mode == "token"
        spec.load().Config.from_mapping(config)  # the service itself accepts it
        pod = by_kind(objects, "Deployment")[f"{RELEASE}-{name}"]["spec"]["template"]["spec"]
        assert _mounts(pod["containers"][0])["auth"] == "/etc/mathforge/auth"
        assert config["caller_token_file"] == "/etc/mathforge/auth/caller-token"
        volume = next(v for v in pod["volumes"] if v["name"] == "auth")
        assert volume["secret"]["secretName"] == f"{RELEASE}-auth"


def test_test_pods_get_only_the_caller_token() -> None:
    objects = render()
    pod = by_kind(objects, "Pod")[f"{RELEASE}-test-sampler"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "auth")
    assert [item["key"] for item in volume["secret"]["items"]] == ["caller-token"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MATHFORGE_TOKEN_FILE"] == "/etc/mathforge/auth/caller-token"


def test_auth_off_is_explicit_in_every_config() -> None:
    objects = render({"auth": {"enabled": False}, "reflection": {"enabled": True}})
    assert f"{RELEASE}-auth" not in by_kind(objects, "Secret")
    for name in SERVICES:
        config = _config(objects, name)
        assert (config["auth"], config["reflection"]) == ("off", True)
        assert "caller_token_file" not in config


def test_an_existing_secret_replaces_the_generated_one() -> None:
    objects = render({"auth": {"existingSecret": "team-tokens"}})
    assert f"{RELEASE}-auth" not in by_kind(objects, "Secret")
    pod = by_kind(objects, "Deployment")[f"{RELEASE}-dedup"]["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "auth")["secret"]["secretName"] == "team-tokens"


def test_evaluator_may_call_only_this_release_sampler_and_run_program_can_need_admin() -> None:
    objects = render({"auth": {"evaluatorAdminMethods": ["RunProgram"]}})
    config = _config(objects, "evaluator")
    assert config["allowed_targets"] == {
        "sampler": [f"{RELEASE}-sampler:50054", f"dns:///{RELEASE}-sampler:50054"]
    }
    assert config["admin_methods"] == ["RunProgram"]
    assert "admin_methods" not in _config(objects, "sampler")


def test_redis_needs_a_password_from_a_secret_and_dedup_reads_it_from_a_file() -> None:
    objects = render()
    conf = by_kind(objects, "ConfigMap")[f"{RELEASE}-redis-config"]["data"]["redis.conf"]
    assert "protected-mode yes" in conf and "include /etc/redis-auth/auth.conf" in conf
    secret = by_kind(objects, "Secret")[f"{RELEASE}-redis-auth"]["data"]
    password = base64.b64decode(secret["password"]).decode()
    assert base64.b64decode(secret["auth.conf"]).decode() == f"requirepass {password}\n"
    assert password not in conf
    assert _config(objects, "dedup")["redis_password_file"] == "/etc/mathforge/redis/password"
    dedup = by_kind(objects, "Deployment")[f"{RELEASE}-dedup"]["spec"]["template"]["spec"]
    assert _mounts(dedup["containers"][0])["redis-auth"] == "/etc/mathforge/redis"
    for other in ("classifier", "sampler", "evaluator"):
        pod = by_kind(objects, "Deployment")[f"{RELEASE}-{other}"]["spec"]["template"]["spec"]
        assert "redis-auth" not in _mounts(pod["containers"][0])
    redis_pod = by_kind(objects, "StatefulSet")[f"{RELEASE}-redis"]["spec"]["template"]["spec"]
    env = redis_pod["containers"][0]["env"]
    assert env[0]["name"] == "REDISCLI_AUTH"  # the redis-cli probes authenticate
