"""The Helm chart renders, lints strict-clean and validates against Kubernetes 1.30 for every values
file (values.yaml, values-gpu.yaml, ci/*.yaml); its values schema rejects wrong types; every value is
documented; optional objects appear only behind their flags.

The rendering helpers here are shared with test_chart_workloads.py and test_chart_network.py.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import mathforge
import pytest
import yaml

from tests.k8s.prometheusrule_schema import STRING_MAP, operator_object_schema

CHART = Path(__file__).resolve().parents[2] / "helm" / "mathforge"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "mathforge", "ml"
SERVICE_NAMES = ("classifier", "dedup", "reward", "sampler", "evaluator")

VALUES_FILES: dict[str, Path | None] = {
    "values.yaml": None,
    "values-gpu.yaml": CHART / "values-gpu.yaml",
    **{f"ci/{p.name}": p for p in sorted((CHART / "ci").glob("*.yaml"))},
}


def values_of(label: str) -> dict[str, Any]:
    """The user-supplied values of a values file (values.yaml itself is the chart default: {})."""
    path = VALUES_FILES[label]
    return {} if path is None else (yaml.safe_load(path.read_text()) or {})


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def _render_cached(values_yaml: str) -> tuple[dict[str, Any], ...]:
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(yaml.safe_load(values_yaml), name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["metadata"]["annotations"]["test/template"] = path
                objects.append(doc)
    return tuple(objects)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders for these values (test hooks included), as fresh copies."""
    return copy.deepcopy(list(_render_cached(yaml.safe_dump(values or {}, sort_keys=True))))


def render_notes(values: dict[str, Any] | None = None) -> str:
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def strip_test_annotation(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"]["annotations"]
    annotations.pop("test/template", None)
    if not annotations:
        del obj["metadata"]["annotations"]
    return obj


# The ServiceMonitor CRD has no schema in kubernetes-validate. This one is written from the
# Prometheus Operator's API reference (monitoring.coreos.com/v1 ServiceMonitorSpec and Endpoint):
# only the fields the chart uses, their types, and the required selector.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA = operator_object_schema(
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector"],
        "additionalProperties": False,
        "properties": {
            "jobLabel": {"type": "string"},
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}},
            },
            "namespaceSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
            },
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": _DURATION},
                        "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                        "honorLabels": {"type": "boolean"},
                    },
                },
            },
        },
    },
)


def validate_object(obj: dict[str, Any]) -> None:
    """Validates strictly against the Kubernetes 1.30 schema, or our ServiceMonitor schema."""
    obj = strip_test_annotation(obj)
    if obj["kind"] == "ServiceMonitor":
        jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
        return
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


# ---- render, lint, validate -------------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(VALUES_FILES))
def test_chart_lints_strict_clean(label: str) -> None:
    report = helm_python.lint(CHART, values_of(label), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("label", sorted(VALUES_FILES))
def test_every_rendered_object_validates_against_kubernetes_1_30(label: str) -> None:
    objects = render(values_of(label))
    assert len(objects) >= 5
    for obj in objects:
        try:
            validate_object(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


def test_service_monitor_schema_catches_a_wrong_field() -> None:
    monitor = next(
        o for o in render(values_of("ci/all-features-values.yaml")) if o["kind"] == "ServiceMonitor"
    )
    validate_object(monitor)
    monitor["spec"]["endpoints"][0]["interval"] = "half a minute"
    with pytest.raises(jsonschema.ValidationError):
        validate_object(monitor)
    del monitor["spec"]["selector"]
    with pytest.raises(jsonschema.ValidationError):
        validate_object(monitor)


def test_object_names_are_unique_per_kind() -> None:
    objects = render(values_of("ci/all-features-values.yaml"))
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))


# ---- values schema ----------------------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(VALUES_FILES))
def test_values_files_satisfy_the_schema(label: str) -> None:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values_of(label))


@pytest.mark.parametrize(
    "bad",
    [
        {"services": {"classifier": {"replicas": "two"}}},
        {"services": {"sampler": {"port": "50054"}}},
        {"services": {"sampler": {"port": 70000}}},
        {"services": {"reward": {"image": "cuda"}}},
        {"services": {"reward": {"gpu": {"count": 0}}}},
        {"services": {"dedup": {"enabled": "yes"}}},
        {"services": {"classifier": {"replica": 2}}},
        {"services": {"vllm": {"enabled": True}}},
        {"common": {"terminationGracePeriodSeconds": "40s"}},
        {"common": {"probes": {"startup": {"failureThreshold": 0}}}},
        {"tls": {"enabled": 1}},
        {"redis": {"appendfsync": "no"}},
        {"networkPolicy": {"trainerPodLabels": {"app": 3}}},
        {"networkPolicy": {"extraFrom": {"trainer": []}}},
        {"persistence": {"models": {"mountPath": "models"}}},
        {"images": {"services": {"digest": "latest"}}},
        {"metrics": {"serviceMonitor": {"interval": 30}}},
    ],
)
def test_values_schema_rejects_wrong_types(bad: dict[str, Any]) -> None:
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(bad)
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)


# ---- documentation ----------------------------------------------------------------------------
# Mappings whose keys are Kubernetes or free-form fields, documented by the comment on the parent.
_FREE_FORM_PARENTS = {
    "podSecurityContext",
    "containerSecurityContext",
    "capabilities",
    "seccompProfile",
    "resources",
    "requests",
    "limits",
    "config",
    "trainerPodLabels",
    "nodeSelector",
    "env",
    "metricsFrom",
    "tolerations",
    "accessModes",
}


@pytest.mark.parametrize("path", [CHART / "values.yaml", CHART / "values-gpu.yaml"], ids=lambda p: p.name)
def test_every_value_is_documented(path: Path) -> None:
    """Each value (a key that is not a section of further keys) has a comment on the lines above,
    or sits directly in a mapping documented as one value ("# -- ..."); fields of Kubernetes
    objects are exempt."""
    lines = path.read_text().splitlines()
    keys = []  # (line number, indent, key, is_section, commented, documented as one value)
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z0-9_.\-/]+):(.*)$", line)
        if not match:
            continue
        following = next((x for x in lines[number + 1 :] if x.strip() and not x.strip().startswith("#")), "")
        deeper = len(following) - len(following.lstrip()) > len(match.group(1))
        is_section = not match.group(3).strip() and deeper and not following.lstrip().startswith("- ")
        block = number
        while block > 0 and lines[block - 1].strip().startswith("#"):
            block -= 1
        commented = block < number
        value_doc = commented and lines[block].strip().startswith("# --")
        keys.append((number, len(match.group(1)), match.group(2), is_section, commented, value_doc))
    undocumented = []
    parents: list[tuple[int, str, bool]] = []
    for number, indent, key, is_section, commented, value_doc in keys:
        parents = [p for p in parents if p[0] < indent]
        free_form = any(name in _FREE_FORM_PARENTS for _, name, _ in parents)
        in_documented_value = bool(parents) and parents[-1][2]
        if not (is_section or free_form or commented or in_documented_value):
            undocumented.append(f"{path.name}:{number + 1}: {key}")
        parents.append((indent, key, value_doc))
    assert not undocumented, "\n".join(undocumented)


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == mathforge.__version__
    objects = render()
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"ghcr.io/mathforge/mathforge-services:{mathforge.__version__}"}


def test_notes_tell_how_to_reach_each_service_and_submit_training() -> None:
    notes = render_notes()
    for name in SERVICE_NAMES:
        assert f"dns:///{RELEASE}-{name}.{NAMESPACE}.svc:" in notes
    assert "kubectl -n ml port-forward deploy/mathforge-evaluator 50055:50055" in notes
    assert "mathforge.v1.Evaluator/Grade" in notes and "k8s/training/grpo.yaml" in notes
    assert "helm test mathforge" in notes
    only = render_notes(values_of("ci/evaluator-only-values.yaml"))
    assert "mathforge-sampler" not in only and "redis" not in only


# ---- optional objects behind flags ------------------------------------------------------------
def test_optional_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in render()}
    assert kinds.isdisjoint(
        {
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "ServiceMonitor",
            "PersistentVolumeClaim",
        }
    )
    # Isolation is not optional: NetworkPolicies and the token and Redis Secrets come by default.
    assert {"Deployment", "Service", "ConfigMap", "StatefulSet", "ServiceAccount", "Pod"} <= kinds
    assert {"NetworkPolicy", "Secret"} <= kinds


def test_each_flag_brings_its_objects() -> None:
    objects = render(values_of("ci/all-features-values.yaml"))
    names = {
        name: set(by_kind(objects, name))
        for name in (
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "ServiceMonitor",
            "NetworkPolicy",
            "PersistentVolumeClaim",
        )
    }
    assert names["PodDisruptionBudget"] == {f"mf-{n}" for n in SERVICE_NAMES}
    assert names["HorizontalPodAutoscaler"] == {"mf-classifier", "mf-evaluator"}
    assert names["ServiceMonitor"] == {f"mf-{n}" for n in SERVICE_NAMES}
    assert names["NetworkPolicy"] == {f"mf-{n}" for n in SERVICE_NAMES} | {"mf-redis", "mf-evaluator-egress"}
    assert names["PersistentVolumeClaim"] == {"mf-models", "mf-checkpoints"}
    deployments = by_kind(objects, "Deployment")
    # An autoscaled Deployment leaves replicas to its HPA; the others keep theirs.
    assert "replicas" not in deployments["mf-classifier"]["spec"]
    assert deployments["mf-dedup"]["spec"]["replicas"] == 3
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["mf-classifier"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mf-classifier"}


def test_disabled_services_render_nothing() -> None:
    objects = render(values_of("ci/evaluator-only-values.yaml"))
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects}
    assert components == {"evaluator", "test-evaluator", "scripts", "serviceaccount", "auth"}
    service = by_kind(objects, "Service")["mathforge-evaluator"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["grpc"]
