"""Shared checks of the PyTorchJob manifests under k8s/training/: the job round-trips through the
kubeflow-training SDK model unchanged and every replica's pod template is a valid Pod, strictly,
against the Kubernetes 1.30 schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml
from kubeflow.training.api_client import ApiClient

KUBE_VERSION = "1.30.0"


def load_objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validated_pod_templates(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod template of each replica role (Master, Worker), after failing unless the job is one
    the kubeflow SDK knows field for field and each template makes a valid Pod."""
    client = ApiClient()
    model = client._ApiClient__deserialize(job, "KubeflowOrgV1PyTorchJob")
    assert client.sanitize_for_serialization(model) == job, "fields the kubeflow SDK does not know"
    templates = {}
    for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
        template = replica["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "check", **template.get("metadata", {})},
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
        templates[role] = template
    return templates
