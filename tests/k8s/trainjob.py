"""Shared check of Trainer v2 objects: a TrainJob or ClusterTrainingRuntime round-trips through the
Trainer 2.3 API models (kubeflow-trainer-api) unchanged, so every field is one the API defines
with the type it defines, and the runtime's pod template is a valid Pod and its job a valid Job,
strictly, against the Kubernetes 1.30 schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
from kubeflow_trainer_api.models import TrainerV1alpha1ClusterTrainingRuntime, TrainerV1alpha1TrainJob

from tests.k8s.pytorchjob import KUBE_VERSION

MODELS = {
    "TrainJob": TrainerV1alpha1TrainJob,
    "ClusterTrainingRuntime": TrainerV1alpha1ClusterTrainingRuntime,
}


def check_against_trainer_models(obj: dict[str, Any]) -> None:
    """Fails on a field the Trainer models do not know (dropped on the round trip) or a wrong type
    (the models' strict types raise)."""
    model = MODELS[obj["kind"]].from_dict(obj)
    assert model.to_dict() == obj, f"{obj['kind']} has fields the Trainer v2 API does not define"


def validated_node_job(runtime: dict[str, Any]) -> dict[str, Any]:
    """The runtime's `node` Job template, after checking it as a batch/v1 Job and its pod as a Pod."""
    (replicated,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"
    template = replicated["template"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "check", **template["metadata"]}}
    kubernetes_validate.validate({**job, "spec": template["spec"]}, KUBE_VERSION, strict=True)
    pod = template["spec"]["template"]
    kubernetes_validate.validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "check", **pod["metadata"]},
            "spec": pod["spec"],
        },
        KUBE_VERSION,
        strict=True,
    )
    return template
