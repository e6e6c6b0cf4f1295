"""Builds a training config's Kubeflow Trainer v2 objects: a ClusterTrainingRuntime and a TrainJob.

    runtime, job = trainjob_manifests("pretrain", config)   # after jobs.config_map(...)

Trainer v2 (trainer.kubeflow.org/v1alpha1, release 2.3) splits what PyTorchJob kept in one object:
the runtime says how a node runs (image, `torchrun -m <module> --config /etc/mathforge/config.yaml`,
the same environment, PVC and ConfigMap mounts and hardened pod as the PyTorchJob path, see
jobs.pod_template) and the TrainJob says how big the run is (nodes, processes and resources per
node) and which queue admits it. The controller turns the pair into a JobSet whose `node`
replicated job gets one pod per node and the PET_* variables torchrun reads (master address and
port, node rank, node count, processes per node), so the entrypoint is the one the PyTorchJob runs.

Each stage gets its own runtime, named like its job: the runtime mounts the ConfigMap
`<job>-config`, which exists in every namespace the stage is submitted to.
"""

from __future__ import annotations

import copy
from typing import Any

from mathforge.kueue import queue_for_kueue
from mathforge.training.config import TrainConfig
from mathforge.training.jobs import entry_module, job_name, labels, pod_template

API_VERSION = "trainer.kubeflow.org/v1alpha1"
API_GROUP = "trainer.kubeflow.org"
# The replicated job and container names the torch plugin of Trainer v2 looks for.
NODE = "node"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
FRAMEWORK_LABEL = "trainer.kubeflow.org/framework"


def runtime_name(stage: str, config: TrainConfig) -> str:
    return job_name(stage, config)


def cluster_training_runtime(stage: str, config: TrainConfig, module: str | None = None) -> dict[str, Any]:
    """The ClusterTrainingRuntime whose `node` pods run the stage's entrypoint with `config`."""
    template = pod_template(stage, entry_module(stage, module), config, container_name=NODE)
    (container,) = template["spec"]["containers"]
    # Sizes belong to the TrainJob (trainer.resourcesPerNode), so one runtime serves any run size.
    del container["resources"]
    # One failed node fails its Job at once and JobSet restarts every node together: torchrun's
    # static rendezvous cannot take back a single restarted rank.
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterTrainingRuntime",
        "metadata": {
            "name": runtime_name(stage, config),
            "labels": {**labels(stage, config), FRAMEWORK_LABEL: "torch"},
        },
        "spec": {
            "mlPolicy": {"numNodes": config.job.nodes, "torch": {}},
            "template": {
                "spec": {
                    "failurePolicy": {"maxRestarts": config.job.backoff_limit},
                    "replicatedJobs": [
                        {
                            "name": NODE,
                            "replicas": 1,
                            "template": {
                                "metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
                                "spec": {"backoffLimit": 0, "template": template},
                            },
                        }
                    ],
                }
            },
        },
    }


def train_job(stage: str, config: TrainConfig) -> dict[str, Any]:
    """The TrainJob naming the stage's runtime: nodes, processes and resources per node, queue."""
    job = config.job
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": job.cpu, "memory": job.memory},
        "limits": {"cpu": job.cpu, "memory": job.memory},
    }
    if job.gpus_per_node:
        for side in resources.values():
            side["nvidia.com/gpu"] = str(job.gpus_per_node)
    train = {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {
            "name": job_name(stage, config),
            "namespace": job.namespace,
            "labels": labels(stage, config),
        },
        "spec": {
            "runtimeRef": {
                "apiGroup": API_GROUP,
                "kind": "ClusterTrainingRuntime",
                "name": runtime_name(stage, config),
            },
            "trainer": {
                "numNodes": job.nodes,
                "numProcPerNode": job.nproc_per_node,
                "resourcesPerNode": copy.deepcopy(resources),
            },
        },
    }
    return queue_for_kueue(train, job.queue, job.priority_class)


def trainjob_manifests(stage: str, config: TrainConfig, module: str | None = None) -> list[dict[str, Any]]:
    """[ClusterTrainingRuntime, TrainJob]; the runtime must exist before the job names it."""
    return [cluster_training_runtime(stage, config, module), train_job(stage, config)]
