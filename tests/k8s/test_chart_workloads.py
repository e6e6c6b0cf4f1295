"""The chart's workloads agree with the services: ports, probes and Service names match
runtime/registry.py, the ConfigMaps parse into each service's Config dataclass, pods are hardened,
GPU scheduling, TLS, volumes, Redis persistence and the `helm test` pods are wired as documented."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from helm_python.errors import HelmValuesError
from mathforge.runtime.config import ConfigError, ServiceConfig
from mathforge.runtime.registry import SERVICES

from tests.k8s.test_chart import RELEASE, VALUES_FILES, by_kind, render, values_of


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec the chart runs, by '<Kind>/<name>' (Deployments, the StatefulSet, test Pods)."""
    specs = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            specs[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            specs[f"Pod/{obj['metadata']['name']}"] = obj["spec"]
    return specs


def config_class(name: str) -> type[ServiceConfig]:
    """The service's own Config dataclass once its module exists, else the runtime's base."""
    spec = SERVICES[name]
    return spec.load().Config if spec.available() else ServiceConfig


def service_configs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    configs = {}
    for obj in objects:
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        if obj["kind"] == "ConfigMap" and component in SERVICES:
            configs[component] = yaml.safe_load(obj["data"]["config.yaml"])
    return configs


# ---- the services' own defaults -----------------------------------------------------------------
@pytest.mark.parametrize("label", ["values.yaml", "values-gpu.yaml"])
def test_ports_probes_and_service_names_match_the_registry(label: str) -> None:
    objects = render(values_of(label))
    services, deployments = by_kind(objects, "Service"), by_kind(objects, "Deployment")
    configs = service_configs(objects)
    for name, spec in SERVICES.items():
        service = services[f"{RELEASE}-{name}"]
        assert service["spec"]["clusterIP"] == "None", "headless, for client-side round robin"
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        assert ports == {"grpc": spec.port, "metrics": spec.metrics_port}
        assert (configs[name]["port"], configs[name]["metrics_port"]) == (spec.port, spec.metrics_port)
        (container,) = deployments[f"{RELEASE}-{name}"]["spec"]["template"]["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == ports
        assert container["args"] == ["serve", name]
        ready, alive, startup = (
            container["readinessProbe"],
            container["livenessProbe"],
            container["startupProbe"],
        )
        assert ready["grpc"] == {"port": spec.port, "service": spec.proto_name}
        assert startup["grpc"] == {"port": spec.port, "service": spec.proto_name}
        assert alive["grpc"] == {"port": spec.port, "service": ""}
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, (
            "model loading needs a long budget"
        )
        # A Service selects exactly its own Deployment's pods.
        pod_labels = deployments[f"{RELEASE}-{name}"]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == name


@pytest.mark.parametrize("label", sorted(VALUES_FILES))
def test_configmaps_parse_into_the_service_configs(label: str) -> None:
    objects = render(values_of(label))
    deployments = by_kind(objects, "Deployment")
    configs = service_configs(objects)
    assert configs, "at least one service is enabled in every values file"
    for name, fields in configs.items():
        config = config_class(name).from_mapping(fields)
        assert config.host == "0.0.0.0"
        assert config.drain_s > 0, "pods must stay up NOT_SERVING while endpoints update"
        pod = next(
            d for d in deployments.values() if d["metadata"]["labels"]["app.kubernetes.io/component"] == name
        )["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > config.drain_s + config.grace_s
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["MATHFORGE_CONFIG"] == "/etc/mathforge/config.yaml"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config")
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/mathforge/config.yaml", True)


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"services": {"classifier": {"config": {"grace_s": -1}}}}, "grace_s"),
        ({"services": {"evaluator": {"config": {"log_level": "LOUD"}}}}, "log_level"),
        ({"common": {"config": {"max_message_bytes": 10}}}, "max_message_bytes"),
    ],
)
def test_a_value_the_service_rejects_fails_here(override: dict[str, Any], problem: str) -> None:
    configs = service_configs(render(override))
    errors = []
    for name, fields in configs.items():
        try:
            config_class(name).from_mapping(fields)
        except ConfigError as exc:
            errors.append(str(exc))
    assert errors and all(problem in e for e in errors)


def test_an_unknown_service_config_field_fails_at_render() -> None:
    """The values schema is generated from the Config classes: a typo fails `helm install` itself."""
    with pytest.raises(HelmValuesError, match="no_such_field"):
        render({"services": {"sampler": {"config": {"no_such_field": 1}}}})


def test_metrics_off_sets_metrics_port_minus_one() -> None:
    configs = service_configs(render({"metrics": {"enabled": False}}))
    assert {c["metrics_port"] for c in configs.values()} == {-1}


# ---- hardening ----------------------------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(VALUES_FILES))
def test_every_pod_is_hardened(label: str) -> None:
    specs = pod_specs(render(values_of(label)))
    assert specs
    for where, spec in specs.items():
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        # The volume types the "restricted" Pod Security Standard allows.
        allowed = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI"}
        assert all(set(v) - {"name"} <= allowed for v in volumes.values()), where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            # Writable: emptyDirs, and Redis's data claim (a volumeClaimTemplate, not in volumes).
            writable = [m for m in container.get("volumeMounts", []) if not m.get("readOnly")]
            for mount in writable:
                assert mount["name"] == "data" or "emptyDir" in volumes[mount["name"]], f"{where}: {mount}"
            if "volumeMounts" in container:
                tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
                assert "emptyDir" in volumes[tmp["name"]], where
    sa = [o for o in render(values_of(label)) if o["kind"] == "ServiceAccount"]
    assert all(o["automountServiceAccountToken"] is False for o in sa)


# ---- GPU, TLS, volumes --------------------------------------------------------------------------
def test_gpu_values_schedule_sampler_and_reward_on_gpus() -> None:
    deployments = by_kind(render(values_of("values-gpu.yaml")), "Deployment")
    for name in ("sampler", "reward"):
        pod = deployments[f"{RELEASE}-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
        assert container["image"].startswith("ghcr.io/mathforge/mathforge-gpu:")
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["runtimeClassName"] == "nvidia"
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        strategy = deployments[f"{RELEASE}-{name}"]["spec"]["strategy"]["rollingUpdate"]
        assert strategy == {"maxSurge": 0, "maxUnavailable": 1}, "a surge pod would wait for a free GPU"
    for name in ("classifier", "dedup", "evaluator"):
        pod = deployments[f"{RELEASE}-{name}"]["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    cpu = by_kind(render(), "Deployment")
    assert all("runtimeClassName" not in d["spec"]["template"]["spec"] for d in cpu.values())


def test_tls_mounts_the_secret_and_points_the_service_at_it() -> None:
    objects = render(values_of("ci/all-features-values.yaml"))
    for name, deployment in by_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MATHFORGE_TLS_CERT"] == "/etc/mathforge/tls/tls.crt"
        assert env["MATHFORGE_TLS_KEY"] == "/etc/mathforge/tls/tls.key"
        assert env["MATHFORGE_TLS_CLIENT_CA"] == "/etc/mathforge/tls/ca.crt"
        assert {"name": "tls", "mountPath": "/etc/mathforge/tls", "readOnly": True} in container[
            "volumeMounts"
        ]
        assert (
            next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "mathforge-tls"
        )
        # kubelet's gRPC probe cannot speak TLS: the probes run the check script with the pod's pair.
        command = container["readinessProbe"]["exec"]["command"]
        assert command[:3] == ["python", "/opt/mathforge/scripts/grpc_check.py", "health"]
        assert "--cert" in command and command[command.index("--server-name") + 1] == name
    plain = by_kind(render(values_of("ci/tls-values.yaml")), "Deployment")["mathforge-sampler"]
    container = plain["spec"]["template"]["spec"]["containers"][0]
    assert "MATHFORGE_TLS_CLIENT_CA" not in {e["name"] for e in container["env"]}
    assert "--cert" not in container["livenessProbe"]["exec"]["command"]


def test_volumes_use_existing_claims_or_chart_claims() -> None:
    existing = render(values_of("ci/existing-claims-values.yaml"))
    assert not by_kind(existing, "PersistentVolumeClaim")
    claims = {
        name: {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in d["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        for name, d in by_kind(existing, "Deployment").items()
    }
    assert claims["mathforge-sampler"] == {
        "models": "mathforge-models",
        "checkpoints": "mathforge-checkpoints",
    }
    assert claims["mathforge-classifier"] == {"models": "mathforge-models"}
    sampler = by_kind(existing, "Deployment")["mathforge-sampler"]["spec"]["template"]["spec"]
    assert sampler["serviceAccountName"] == "ml-workloads"
    mounts = {m["name"]: m for m in sampler["containers"][0]["volumeMounts"]}
    assert mounts["checkpoints"] == {"name": "checkpoints", "mountPath": "/checkpoints", "readOnly": True}
    created = by_kind(render(values_of("values-gpu.yaml")), "PersistentVolumeClaim")
    assert created["mathforge-checkpoints"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert created["mathforge-models"]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# ---- Redis ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["values.yaml", "values-gpu.yaml", "ci/all-features-values.yaml"])
def test_redis_persists_the_index(label: str) -> None:
    objects = render(values_of(label))
    prefix = "mf" if label.startswith("ci/all") else RELEASE
    statefulset = by_kind(objects, "StatefulSet")[f"{prefix}-redis"]
    service = by_kind(objects, "Service")[f"{prefix}-redis"]
    conf = by_kind(objects, "ConfigMap")[f"{prefix}-redis-config"]["data"]["redis.conf"].splitlines()
    assert service["spec"]["clusterIP"] == "None" and statefulset["spec"]["serviceName"] == f"{prefix}-redis"
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    fsync = next(line.split()[1] for line in conf if line.startswith("appendfsync "))
    assert fsync == ("everysec" if label.startswith("ci/all") else "always")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    pod = statefulset["spec"]["template"]["spec"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in pod["containers"][0]["volumeMounts"]
    assert pod["securityContext"]["runAsUser"] != 0


# ---- helm test pods -------------------------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(VALUES_FILES))
def test_helm_test_pods_call_each_enabled_service(label: str) -> None:
    values = values_of(label)
    objects = render(values)
    enabled = set(service_configs(objects))
    pods = by_kind(objects, "Pod")
    if values.get("tests", {}).get("enabled", True) is False:
        assert not pods
        return
    prefix = values.get("fullnameOverride") or RELEASE
    targets = {}
    for pod in pods.values():
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        command = pod["spec"]["containers"][0]["command"]
        if "--name" in command:
            targets[command[command.index("--name") + 1]] = command[command.index("--target") + 1]
    assert set(targets) == enabled
    for name, target in targets.items():
        assert target == f"dns:///{prefix}-{name}:{SERVICES[name].port}"
    has_redis = any(o["kind"] == "StatefulSet" for o in objects)
    assert (f"{prefix}-test-redis" in pods) == has_redis


def test_derived_config_points_dedup_at_redis_and_sampler_at_its_gpus() -> None:
    configs = service_configs(render(values_of("ci/all-features-values.yaml")))
    assert (configs["dedup"]["store"], configs["dedup"]["redis_url"]) == ("redis", "redis://mf-redis:6379/0")
    no_redis = service_configs(render({"redis": {"enabled": False}}))
    assert "store" not in no_redis["dedup"] and "redis_url" not in no_redis["dedup"]
    own = service_configs(
        render({"services": {"dedup": {"config": {"redis_url": "redis://elsewhere:6380/2"}}}})
    )
    assert own["dedup"]["redis_url"] == "redis://elsewhere:6380/2", "the user's own config wins"
    gpu = service_configs(
        render(
            {
                "services": {
                    "sampler": {
                        "gpu": {"enabled": True, "count": 4},
                        "config": {"backend": "vllm", "model_path": "/m"},
                    }
                }
            }
        )
    )
    assert gpu["sampler"]["tensor_parallel_size"] == 4
    assert "tensor_parallel_size" not in service_configs(render())["sampler"]


def test_redis_config_and_test_pod_script_run_against_a_real_redis(tmp_path: Path) -> None:
    """The rendered redis.conf starts redis-server as written (bar port, dir and bind), and the
    `helm test` pod's shell script passes against it."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.skip("redis-server is not installed (scripts/install-system-deps.sh)")
    objects = render({"redis": {"appendfsync": "everysec"}})
    conf = by_kind(objects, "ConfigMap")[f"{RELEASE}-redis-config"]["data"]["redis.conf"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = conf.replace("port 6379", f"port {port}").replace("dir /data", f"dir {tmp_path}")
    local = local.replace("bind 0.0.0.0", "bind 127.0.0.1")
    secret = by_kind(objects, "Secret")[f"{RELEASE}-redis-auth"]["data"]
    password = base64.b64decode(secret["password"]).decode()
    (tmp_path / "auth.conf").write_bytes(base64.b64decode(secret["auth.conf"]))
    local = local.replace("include /etc/redis-auth/auth.conf", f"include {tmp_path / 'auth.conf'}")
    (tmp_path / "redis.conf").write_text(local)
    server = subprocess.Popen(
        [binary, str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        client = redis.Redis(port=port, decode_responses=True, password=password)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                time.sleep(0.05)
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        with pytest.raises(redis.AuthenticationError):  # no password, no index
            redis.Redis(port=port).ping()
        test_pod = by_kind(objects, "Pod")[f"{RELEASE}-test-redis"]["spec"]["containers"][0]
        script = test_pod["command"][2].replace(f"{RELEASE}-redis", "127.0.0.1").replace("6379", str(port))
        run = subprocess.run(
            ["sh", "-ec", script],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": str(Path(cli).parent), "REDISCLI_AUTH": password},
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "redis ok: PONG, appendonly yes"
        client.set("probe", "1")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "appendonlydir").is_dir(), "the append-only file lives in dir"
