"""What the chart and the GRPO submit path give a trainer that streams weights over the collective:
the sampler pods admit the trainer on every port (and only the sampler pods) and may connect to its
store (and no other), the GPU samplers accept streamed weights, the trainer pods open the store's
port, and the NOTES name the targets behind which the trainer finds every replica."""

from __future__ import annotations

import yaml
from mathforge.training.grpo.submit import render as render_job

from tests.k8s.pytorchjob import validated_pod_templates
from tests.k8s.test_chart import NAMESPACE, RELEASE, by_kind, render, render_notes, values_of

TRAINER = {"app.kubernetes.io/component": "grpo-trainer"}


def _trainer_rules(objects: list[dict], component: str) -> list[dict]:
    policy = by_kind(objects, "NetworkPolicy")[f"{RELEASE}-{component}"]
    return [
        rule
        for rule in policy["spec"]["ingress"]
        if rule["from"][0].get("podSelector", {}).get("matchLabels") == TRAINER
    ]


def test_weight_transfer_opens_every_sampler_port_to_the_trainer_and_nothing_else():
    closed = render({"networkPolicy": {"enabled": True}})
    assert [r["ports"] for r in _trainer_rules(closed, "sampler")] == [[{"port": 50054, "protocol": "TCP"}]]
    opened = render({"networkPolicy": {"enabled": True}, "weightTransfer": {"enabled": True}})
    (sampler_rule,) = _trainer_rules(opened, "sampler")
    assert "ports" not in sampler_rule  # NCCL and gloo pick their own ports
    assert [r["ports"] for r in _trainer_rules(opened, "reward")] == [[{"port": 50053, "protocol": "TCP"}]]


def test_the_gpu_values_let_the_samplers_take_streamed_weights():
    objects = render(values_of("values-gpu.yaml"))
    config = yaml.safe_load(by_kind(objects, "ConfigMap")[f"{RELEASE}-sampler-config"]["data"]["config.yaml"])
    assert config["backend"] == "vllm" and config["weight_transfer"] is True
    assert config["allowed_targets"] == {"weight_store": ["mathforge-grpo-master-0:29600"]}
    assert "ports" not in _trainer_rules(objects, "sampler")[0]


def test_notes_name_the_replica_targets():
    notes = render_notes({"weightTransfer": {"enabled": True}})
    assert f"services.sampler=dns:///{RELEASE}-sampler.{NAMESPACE}.svc:50054" in notes
    assert f"services.reward=dns:///{RELEASE}-reward.{NAMESPACE}.svc:50053" in notes
    assert "services.weight_sync=collective" in notes


def test_a_collective_trainer_job_opens_its_store_port_under_the_name_the_samplers_allow():
    objects, _ = render_job("configs/paper-7b/grpo.yaml", ["services.weight_sync=collective"])
    job = next(o for o in objects if o["kind"] == "PyTorchJob")
    for template in validated_pod_templates(job).values():
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["weight-sync"] == 29600
    config = yaml.safe_load(next(o for o in objects if o["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert config["services"]["sampler"].startswith("dns:///")  # every replica behind the Service
    # rank 0 advertises its pod name (<job>-master-0), the store the chart's samplers may reach
    store = f"{job['metadata']['name']}-master-0:{config['services']['weight_sync_port']}"
    chart_default = render({"weightTransfer": {"enabled": True}})
    sampler = yaml.safe_load(
        by_kind(chart_default, "ConfigMap")[f"{RELEASE}-sampler-config"]["data"]["config.yaml"]
    )
    assert sampler["allowed_targets"]["weight_store"] == [store]


def test_a_collective_job_needs_a_fixed_store_port():
    import pytest

    with pytest.raises(ValueError, match="weight_sync_port"):
        render_job(
            "configs/paper-7b/grpo.yaml", ["services.weight_sync=collective", "services.weight_sync_port=0"]
        )
