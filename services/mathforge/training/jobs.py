"""Builds the Kubernetes objects that run a training config: a ConfigMap and a Kubeflow PyTorchJob.

    objects = job_manifests("pretrain", config)     # [ConfigMap, PyTorchJob] as plain dicts
    print(manifests_yaml(objects))

The PyTorchJob (kubeflow.org/v1, training operator 1.9) has a Master and nodes-1 Workers, each a
pod whose container `pytorch` runs `torchrun -m mathforge.training.<stage> --config
/etc/mathforge/config.yaml`; the operator's PET_* variables tell torchrun the node count, rank and
master. The ConfigMap carries the effective config, and the DeepSpeed JSON when the engine uses
one, so a job depends on nothing but its image and two PVCs (data read-only at /data, checkpoints
at /checkpoints; with several nodes the checkpoint PVC must be ReadWriteMany). Relative out_dir,
init_from and tokenizer paths are placed under /checkpoints. The reward and GRPO
trainers build their jobs with the same function.

With job.api=trainjob the same pod runs under Kubeflow Trainer v2 instead (trainjob.py: a TrainJob
and the ClusterTrainingRuntime it names); with job.queue set either kind is labelled for Kueue and
created suspended (mathforge/kueue.py).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from mathforge.kueue import queue_for_kueue
from mathforge.training.config import ConfigError, TrainConfig, dump_config

CONFIG_DIR = "/etc/mathforge"
DATA_DIR = "/data"
CHECKPOINT_DIR = "/checkpoints"
MASTER_PORT = 23456
STAGE_MODULES = {"pretrain": "mathforge.training.pretrain", "sft": "mathforge.training.sft"}
MASTER_PORT_SPEC = {"containerPort": MASTER_PORT, "name": "pytorchjob-port", "protocol": "TCP"}
# The images' user (images/Dockerfile.*): the pods run as it so files on the PVCs keep one owner.
IMAGE_UID = 10001


def job_name(stage: str, config: TrainConfig) -> str:
    return config.job.name or f"mathforge-{stage}"


def config_map(stage: str, config: TrainConfig) -> dict[str, Any]:
    """The ConfigMap with config.yaml (and deepspeed.json) as the pods will read them."""
    effective = copy.deepcopy(config)
    # Relative run paths (the tiny recipes' runs/...) would land in the container's ephemeral
    # filesystem: in a job they live on the checkpoint PVC.
    effective.out_dir = _on_checkpoint_volume(config.out_dir)
    effective.model = dataclasses.replace(
        config.model,
        init_from=_on_checkpoint_volume(config.model.init_from),
        tokenizer=_on_checkpoint_volume(config.model.tokenizer),
    )
    data: dict[str, str] = {}
    if config.engine.kind == "deepspeed":
        source = Path(config.engine.deepspeed_config)
        if not source.is_file():
            raise ConfigError(f"engine.deepspeed_config {source}: no such file")
        data["deepspeed.json"] = source.read_text()
        effective.engine = dataclasses.replace(config.engine, deepspeed_config=f"{CONFIG_DIR}/deepspeed.json")
    data["config.yaml"] = dump_config(effective)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{job_name(stage, config)}-config",
            "namespace": config.job.namespace,
            "labels": labels(stage, config),
        },
        "data": dict(sorted(data.items())),
    }


def _on_checkpoint_volume(path: str) -> str:
    return path if not path or path.startswith("/") else f"{CHECKPOINT_DIR}/{path}"


def labels(stage: str, config: TrainConfig) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "mathforge",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/instance": job_name(stage, config),
        "mathforge.io/stage": stage,
    }


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def secret_env_vars(secret_env: dict[str, str], plain: dict[str, str]) -> list[dict[str, Any]]:
    """job.secret_env as container env entries that read a Secret's key (secretKeyRef): an API key
    (WANDB_API_KEY) then never appears in the job spec or in the ConfigMap of the effective config."""
    entries = []
    for name, ref in secret_env.items():
        secret, _, key = str(ref).partition("/")
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"job.secret_env: {name!r} is not an environment variable name")
        if name in plain:
            raise ConfigError(f"job.secret_env: {name} is also set in job.env; set it in one of them")
        if not (_SECRET_NAME.fullmatch(secret) and len(secret) <= 253 and _SECRET_KEY.fullmatch(key)):
            raise ConfigError(
                f"job.secret_env: {name}: {ref!r} is not <secret>/<key> (a Secret name, lower-case "
                "DNS subdomain of at most 253 characters, then one of its keys)"
            )
        entries.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return entries


def pod_template(
    stage: str, module: str, config: TrainConfig, container_name: str = "pytorch"
) -> dict[str, Any]:
    """The trainer pod: `torchrun -m module` over the mounted config, as the images' user.

    The training operator v1 needs the container named `pytorch` with its `pytorchjob-port`;
    Trainer v2 needs it named `node` and opens its own port, so only v1 gets the port here.
    """
    job = config.job
    resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": job.cpu, "memory": job.memory},
        "limits": {"cpu": job.cpu, "memory": job.memory},
    }
    if job.gpus_per_node:
        resources["requests"]["nvidia.com/gpu"] = str(job.gpus_per_node)
        resources["limits"]["nvidia.com/gpu"] = str(job.gpus_per_node)
    env = {
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TORCH_EXTENSIONS_DIR": "/tmp/torch_extensions",
        **({"OMP_NUM_THREADS": "1"} if not job.gpus_per_node else {}),
        **job.env,
    }
    container: dict[str, Any] = {
        "name": container_name,
        "image": job.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["torchrun", "-m", module, "--config", f"{CONFIG_DIR}/config.yaml"],
        **({"ports": [MASTER_PORT_SPEC]} if container_name == "pytorch" else {}),
        "env": [{"name": k, "value": v} for k, v in env.items()] + secret_env_vars(job.secret_env, env),
        "resources": resources,
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "data", "mountPath": DATA_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": IMAGE_UID,
            "runAsGroup": IMAGE_UID,
            "fsGroup": IMAGE_UID,
        },
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}},
            {"name": "data", "persistentVolumeClaim": {"claimName": job.data_pvc, "readOnly": True}},
            {"name": "checkpoints", "persistentVolumeClaim": {"claimName": job.checkpoint_pvc}},
            {"name": "config", "configMap": {"name": f"{job_name(stage, config)}-config"}},
        ],
    }
    # A training pod talks to the Kubernetes API only to launch iterative RL's reward-model job.
    if job.service_account:
        spec["serviceAccountName"] = job.service_account
    spec["automountServiceAccountToken"] = bool(job.service_account)
    if job.gpus_per_node:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": labels(stage, config)}, "spec": spec}


def entry_module(stage: str, module: str | None) -> str:
    """`module`, or the stage's own entrypoint when none is given."""
    module = module or STAGE_MODULES.get(stage, "")
    if not module:
        raise ConfigError(f"no entrypoint module known for stage {stage!r}; pass module=")
    return module


def pytorch_job(stage: str, config: TrainConfig, module: str | None = None) -> dict[str, Any]:
    """The kubeflow.org/v1 PyTorchJob running `module` (default: the stage's) with `config`."""
    template = pod_template(stage, entry_module(stage, module), config)
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if config.job.nodes > 1:
        replicas["Worker"] = {
            "replicas": config.job.nodes - 1,
            "restartPolicy": "OnFailure",
            "template": copy.deepcopy(template),
        }
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": job_name(stage, config),
            "namespace": config.job.namespace,
            "labels": labels(stage, config),
        },
        "spec": {
            "nprocPerNode": str(config.job.nproc_per_node),
            "runPolicy": {
                "backoffLimit": config.job.backoff_limit,
                "ttlSecondsAfterFinished": config.job.ttl_seconds_after_finished,
                "cleanPodPolicy": "None",
            },
            "pytorchReplicaSpecs": replicas,
        },
    }
    return queue_for_kueue(job, config.job.queue, config.job.priority_class)


def job_manifests(stage: str, config: TrainConfig, module: str | None = None) -> list[dict[str, Any]]:
    """The objects that run `config`, in the order they must be created: [ConfigMap, PyTorchJob], or
    with job.api=trainjob [ConfigMap, ClusterTrainingRuntime, TrainJob]."""
    if config.job.api == "trainjob":
        from mathforge.training.trainjob import trainjob_manifests

        return [config_map(stage, config), *trainjob_manifests(stage, config, module)]
    if config.job.api != "pytorchjob":
        raise ConfigError(f"job.api {config.job.api!r} is not pytorchjob or trainjob")
    return [config_map(stage, config), pytorch_job(stage, config, module)]


class _BlockStringDumper(yaml.SafeDumper):
    """Writes multi-line strings (the files in a ConfigMap) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockStringDumper.add_representer(str, _represent_str)


def manifests_yaml(objects: list[dict[str, Any]], header: str = "") -> str:
    """Objects as one multi-document YAML stream, optionally under a comment header."""
    body = "---\n".join(yaml.dump(o, Dumper=_BlockStringDumper, sort_keys=False, width=110) for o in objects)
    return (header + body) if header else body


def to_kubeflow_model(job: dict[str, Any]) -> Any:
    """The PyTorchJob dict as the kubeflow-training SDK's KubeflowOrgV1PyTorchJob."""
    from kubeflow.training.api_client import ApiClient

    return ApiClient()._ApiClient__deserialize(job, "KubeflowOrgV1PyTorchJob")  # type: ignore[attr-defined]
