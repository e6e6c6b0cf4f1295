"""`mathforge submit grpo --config FILE [key=value ...] [--dry-run]`: the GRPO trainer as a PyTorchJob.

The objects come from the training stages' job builder (training/jobs.py) with the GRPO entrypoint;
the pods are labelled `app.kubernetes.io/component: grpo-trainer`, the label the Helm chart's
NetworkPolicy admits to the sampler and reward services, and mount the chart's administrator token
(docs/security.md). The trainer finds every sampler and reward replica itself, from the `dns:///`
targets in services.sampler / services.reward (the chart's headless Services). With
services.weight_sync=collective the pods also open the rendezvous store's port (named weight-sync);
rank 0 advertises its pod name, which the training operator's Service for the master replica
resolves, and which the chart's samplers allow (weightTransfer.trainerStores).
k8s/training/grpo.yaml is the --dry-run output for configs/paper-7b/grpo.yaml (a test keeps them
equal).
"""

from __future__ import annotations

import argparse
from typing import Any

from mathforge.training.config import load_config
from mathforge.training.jobs import job_manifests, manifests_yaml
from mathforge.training.submit import add_stage_parser, dry_run_header

STAGE = "grpo"
MODULE = "mathforge.training.grpo"
COMPONENT = "grpo-trainer"
TOKEN_DIR = "/etc/mathforge/auth"
TOKEN_FILE = f"{TOKEN_DIR}/admin-token"
TOKEN_SECRET = {"secretName": "mathforge-auth", "items": [{"key": "admin-token", "path": "admin-token"}]}


def _label_component(node: Any) -> None:
    """Sets every `app.kubernetes.io/component` label in the objects to the trainer's component."""
    if isinstance(node, dict):
        labels = node.get("labels")
        if isinstance(labels, dict) and "app.kubernetes.io/component" in labels:
            labels["app.kubernetes.io/component"] = COMPONENT
        for value in node.values():
            _label_component(value)
    elif isinstance(node, list):
        for value in node:
            _label_component(value)


def _mount_admin_token(node: Any) -> None:
    """Gives every trainer pod the chart's administrator token (Secret mathforge-auth): it loads
    the policy and reward models it publishes (LoadWeights, LoadModel) and scores with them."""
    if isinstance(node, dict):
        if "containers" in node and "volumes" in node:
            node["volumes"].append({"name": "auth", "secret": {**TOKEN_SECRET, "defaultMode": 0o440}})
            for container in node["containers"]:
                container.setdefault("env", []).append({"name": "MATHFORGE_TOKEN_FILE", "value": TOKEN_FILE})
                container.setdefault("volumeMounts", []).append(
                    {"name": "auth", "mountPath": TOKEN_DIR, "readOnly": True}
                )
        for value in node.values():
            _mount_admin_token(value)
    elif isinstance(node, list):
        for value in node:
            _mount_admin_token(value)


def _open_weight_sync(node: Any, port: int) -> None:
    """Opens the weight-sync store port on every trainer container."""
    if isinstance(node, dict):
        if node.get("name") == "pytorch" and "image" in node:
            port_spec = {"containerPort": port, "name": "weight-sync", "protocol": "TCP"}
            node.setdefault("ports", []).append(port_spec)
        for value in node.values():
            _open_weight_sync(value, port)
    elif isinstance(node, list):
        for value in node:
            _open_weight_sync(value, port)


def render(config_path: str, overrides: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The ConfigMap and PyTorchJob for a GRPO config, and their YAML as --dry-run prints it."""
    from mathforge.training.grpo.config import GrpoConfig  # imports torch: only when submitting

    config = load_config(GrpoConfig, ["--config", config_path, *overrides])
    objects = job_manifests(STAGE, config, module=MODULE)
    _label_component(objects)
    _mount_admin_token(objects)
    if config.services.weight_sync == "collective":
        if not config.services.weight_sync_port:
            raise ValueError("services.weight_sync_port must be a fixed port in a cluster (0 picks any)")
        _open_weight_sync(objects, config.services.weight_sync_port)
    return objects, manifests_yaml(objects, dry_run_header(STAGE, config_path, overrides))


def register(sub: argparse._SubParsersAction) -> None:
    add_stage_parser(
        sub, STAGE, render, "run the GRPO trainer as a Kubeflow PyTorchJob", "rollout.group_size=16"
    )
