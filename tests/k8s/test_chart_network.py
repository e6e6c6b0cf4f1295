"""The NetworkPolicies, evaluated with Kubernetes' ingress semantics over the rendered objects: the
GRPO trainer reaches sampler and reward, dedup reaches Redis, and nothing else gets in by default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from mathforge.runtime.registry import SERVICES

from tests.k8s.test_chart import NAMESPACE, RELEASE, by_kind, render, values_of

TRAINER_LABELS = {"app.kubernetes.io/component": "grpo-trainer", "training.kubeflow.org/job-name": "grpo"}


@dataclass(frozen=True)
class Client:
    name: str
    labels: dict[str, str]
    namespace: str = NAMESPACE
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.namespace_labels.setdefault("kubernetes.io/metadata.name", self.namespace)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_admits(peer: dict[str, Any], client: Client) -> bool:
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], client.namespace_labels)
    else:
        namespace_ok = client.namespace == NAMESPACE  # a bare podSelector means the policy's namespace
    return namespace_ok and _selects(peer.get("podSelector", {}), client.labels)


def admitted(policies: list[dict[str, Any]], pod_labels: dict[str, str], client: Client, port: int) -> bool:
    """Whether ingress from `client` to a pod with `pod_labels` on `port` is allowed."""
    isolating = [
        p
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"]["ingress"]:
            ports = rule.get("ports") or [{"port": port}]
            peers = rule.get("from") or [{"namespaceSelector": {}}]
            if any(p["port"] == port for p in ports) and any(_peer_admits(peer, client) for peer in peers):
                return True
    return False


def _pods(objects: list[dict[str, Any]]) -> dict[str, tuple[dict[str, str], dict[str, int]]]:
    """Component -> (pod labels, {port name: number}) for the services and Redis."""
    pods = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            template = obj["spec"]["template"]
            ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
            pods[template["metadata"]["labels"]["app.kubernetes.io/component"]] = (
                template["metadata"]["labels"],
                ports,
            )
    return pods


def _allowed_pairs(values: dict[str, Any], clients: list[Client]) -> set[tuple[str, str, str]]:
    objects = render(values)
    policies = list(by_kind(objects, "NetworkPolicy").values())
    pairs = set()
    for target, (labels, ports) in _pods(objects).items():
        for port_name, port in ports.items():
            for client in clients:
                if admitted(policies, labels, client, port):
                    pairs.add((client.name, target, port_name))
    return pairs


def _clients(objects: list[dict[str, Any]]) -> list[Client]:
    clients = [
        Client("trainer", TRAINER_LABELS),
        Client("trainer-elsewhere", TRAINER_LABELS, namespace="research"),
        Client("stranger", {"app": "curl"}),
        Client("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring"),
    ]
    for component, (labels, _) in _pods(objects).items():
        clients.append(Client(component, labels))
    for pod in by_kind(objects, "Pod").values():
        clients.append(
            Client(pod["metadata"]["labels"]["app.kubernetes.io/component"], pod["metadata"]["labels"])
        )
    return clients


def test_every_pod_is_isolated_by_a_policy() -> None:
    objects = render({"networkPolicy": {"enabled": True}})
    policies = list(by_kind(objects, "NetworkPolicy").values())
    for component, (labels, _) in _pods(objects).items():
        selecting = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
        ingress = [p for p in selecting if p["spec"]["policyTypes"] == ["Ingress"]]
        assert len(ingress) == 1, component
        # Besides, the evaluator's egress is limited (tests/k8s/test_chart_sandbox.py).
        assert len(selecting) == 1 + (component == "evaluator"), component


def test_only_the_trainer_reaches_sampler_and_reward_by_default() -> None:
    values = {"networkPolicy": {"enabled": True}}
    pairs = _allowed_pairs(values, _clients(render(values)))
    grpc = {(client, target) for client, target, port in pairs if port == "grpc"}
    assert {("trainer", "sampler"), ("trainer", "reward")} <= grpc
    # Besides the trainer: the evaluator's benchmark runs against the sampler, each `helm test`
    # pod reaches its own service, and dedup reaches Redis. Nothing else, and no metrics port.
    expected = {
        ("trainer", "sampler", "grpc"),
        ("trainer", "reward", "grpc"),
        ("evaluator", "sampler", "grpc"),
        ("dedup", "redis", "redis"),
        ("test-redis", "redis", "redis"),
    }
    expected |= {(f"test-{name}", name, "grpc") for name in SERVICES}
    assert pairs == expected


def test_with_the_internal_allowances_off_only_the_trainer_and_dedup_get_in() -> None:
    values = {
        "networkPolicy": {"enabled": True, "allowEvaluatorToSampler": False, "allowHelmTestPods": False}
    }
    pairs = _allowed_pairs(values, _clients(render(values)))
    assert pairs == {
        ("trainer", "sampler", "grpc"),
        ("trainer", "reward", "grpc"),
        ("dedup", "redis", "redis"),
    }


def test_trainer_in_another_namespace_needs_its_namespace_labels() -> None:
    elsewhere = Client("trainer-elsewhere", TRAINER_LABELS, namespace="research")
    closed = _allowed_pairs({"networkPolicy": {"enabled": True}}, [elsewhere])
    assert not closed
    opened = _allowed_pairs(
        {
            "networkPolicy": {
                "enabled": True,
                "trainerNamespaceLabels": {"kubernetes.io/metadata.name": "research"},
            }
        },
        [elsewhere],
    )
    assert opened == {("trainer-elsewhere", "sampler", "grpc"), ("trainer-elsewhere", "reward", "grpc")}


def test_metrics_scrapers_reach_only_metrics_ports() -> None:
    values = values_of("ci/all-features-values.yaml")
    scraper = Client("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
    pairs = _allowed_pairs(values, [scraper])
    assert pairs == {("prometheus", name, "metrics") for name in SERVICES}
    values["metrics"] = {"enabled": False}
    assert not _allowed_pairs(values, [scraper])


@pytest.mark.parametrize("component", ["sampler", "reward"])
def test_policy_ports_match_the_registry(component: str) -> None:
    objects = render({"networkPolicy": {"enabled": True}})
    policy = by_kind(objects, "NetworkPolicy")[f"{RELEASE}-{component}"]
    trainer_rule = next(
        r
        for r in policy["spec"]["ingress"]
        if r["from"][0].get("podSelector", {}).get("matchLabels")
        == {"app.kubernetes.io/component": "grpo-trainer"}
    )
    assert trainer_rule["ports"] == [{"port": SERVICES[component].port, "protocol": "TCP"}]
