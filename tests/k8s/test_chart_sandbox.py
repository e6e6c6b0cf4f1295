"""The chart's settings around the evaluator's program sandbox: an egress policy that lets the
evaluator pods reach only DNS and the sampler, and a RuntimeClass (gVisor, Kata) with the
sandbox's required layers adjusted in the same values, parsed by the evaluator's own Config."""

from __future__ import annotations

from typing import Any

import yaml
from mathforge.evaluator.service import Config

from tests.k8s.test_chart import RELEASE, by_kind, render, validate_object

EGRESS = f"{RELEASE}-evaluator-egress"


def _labels(objects: list[dict[str, Any]], component: str) -> dict[str, str]:
    deployment = by_kind(objects, "Deployment")[f"{RELEASE}-{component}"]
    return deployment["spec"]["template"]["metadata"]["labels"]


def _allows(policy: dict[str, Any], labels: dict[str, str], port: int, protocol: str = "TCP") -> bool:
    """Whether the policy lets the evaluator open `port` to a pod with these labels."""
    for rule in policy["spec"]["egress"]:
        if not any(p["port"] == port and p["protocol"] == protocol for p in rule["ports"]):
            continue
        for peer in rule["to"]:
            wanted = peer.get("podSelector", {}).get("matchLabels", {})
            if all(labels.get(k) == v for k, v in wanted.items()):
                return True
    return False


def test_evaluator_egress_reaches_only_dns_and_the_sampler() -> None:
    objects = render()
    policy = by_kind(objects, "NetworkPolicy")[EGRESS]
    validate_object(policy)
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= _labels(objects, "evaluator").items()
    sampler = _labels(objects, "sampler")
    assert _allows(policy, sampler, 50054)
    assert _allows(policy, {"k8s-app": "kube-dns"}, 53, "UDP") and _allows(
        policy, {"k8s-app": "kube-dns"}, 53
    )
    for component, port in (("reward", 50053), ("dedup", 50052), ("classifier", 50051)):
        assert not _allows(policy, _labels(objects, component), port), component
    assert not _allows(policy, {"app.kubernetes.io/name": "redis"}, 6379)
    assert not any("ipBlock" in peer for rule in policy["spec"]["egress"] for peer in rule["to"])


def test_evaluator_egress_follows_its_flags() -> None:
    assert EGRESS not in by_kind(
        render({"networkPolicy": {"evaluatorEgress": {"enabled": False}}}), "NetworkPolicy"
    )
    assert EGRESS not in by_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
    no_sampler = by_kind(render({"networkPolicy": {"allowEvaluatorToSampler": False}}), "NetworkPolicy")[
        EGRESS
    ]
    assert [rule["ports"][0]["port"] for rule in no_sampler["spec"]["egress"]] == [53]
    extra = {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 50054, "protocol": "TCP"}]}
    policy = by_kind(
        render({"networkPolicy": {"evaluatorEgress": {"extraRules": [extra]}}}), "NetworkPolicy"
    )[EGRESS]
    validate_object(policy)
    assert policy["spec"]["egress"][-1] == extra


def test_gvisor_runtime_class_with_the_sandbox_layers_it_supports() -> None:
    layers = ["rlimits", "capabilities", "no_new_privs", "seccomp"]
    values = {
        "services": {
            "evaluator": {"runtimeClassName": "gvisor", "config": {"sandbox_required_layers": layers}}
        }
    }
    objects = render(values)
    pod = by_kind(objects, "Deployment")[f"{RELEASE}-evaluator"]["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "gvisor"
    config_map = by_kind(objects, "ConfigMap")[f"{RELEASE}-evaluator-config"]
    config = Config.from_mapping(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert (
        config.sandbox_required_layers == layers
        and "landlock" not in config.sandbox_settings().required_layers
    )
