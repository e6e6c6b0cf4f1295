"""k8s/training: every object validates (core objects strictly against Kubernetes 1.30, PyTorchJobs
against the kubeflow-training SDK models), jobs have the shape the training operator needs, and
`mathforge submit --dry-run` prints exactly the checked-in manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from mathforge.cli import main as mathforge_main
from mathforge.training.config import config_from_mapping
from mathforge.training.jobs import job_manifests
from mathforge.training.pretrain import PretrainConfig
from mathforge.training.sft import SftConfig
from mathforge.training.submit import render

from tests.k8s.pytorchjob import KUBE_VERSION, load_objects, validated_pod_templates

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "k8s" / "training"
CONFIGS = {"pretrain": PretrainConfig, "sft": SftConfig}


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    """Config paths in the recipes are relative to the repository root."""
    monkeypatch.chdir(REPO)


def check_pytorchjob(job: dict[str, Any], config_maps: dict[str, dict[str, Any]]) -> None:
    """Fails unless `job` round-trips through the SDK model unchanged and each pod is a valid Pod."""
    templates = validated_pod_templates(job)
    spec = job["spec"]
    assert int(spec["nprocPerNode"]) >= 1
    assert spec["runPolicy"]["backoffLimit"] >= 1 and spec["runPolicy"]["ttlSecondsAfterFinished"] > 0
    assert spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    for role, replica in spec["pytorchReplicaSpecs"].items():
        assert role in ("Master", "Worker")
        assert replica["restartPolicy"] == "OnFailure"
        template = templates[role]
        (container,) = template["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert [p["name"] for p in container["ports"]] == ["pytorchjob-port"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert "persistentVolumeClaim" in volumes[mounts["/data"]]
        assert "persistentVolumeClaim" in volumes[mounts["/checkpoints"]]
        config_map = config_maps[volumes[mounts["/etc/mathforge"]]["configMap"]["name"]]
        config_file = container["command"][container["command"].index("--config") + 1]
        assert config_file == "/etc/mathforge/config.yaml" and "config.yaml" in config_map["data"]
        stage = container["command"][container["command"].index("-m") + 1].rsplit(".", 1)[-1]
        config = config_from_mapping(CONFIGS[stage], yaml.safe_load(config_map["data"]["config.yaml"]))
        if config.engine.kind == "deepspeed":
            assert config.engine.deepspeed_config == "/etc/mathforge/deepspeed.json"
            assert "deepspeed.json" in config_map["data"]
        gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert gpus == config.job.gpus_per_node


def check_objects(objects: list[dict[str, Any]]) -> None:
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    jobs = [o for o in objects if o["kind"] == "PyTorchJob"]
    assert jobs
    for obj in objects:
        if obj["kind"] == "PyTorchJob":
            check_pytorchjob(obj, config_maps)
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_checked_in_manifest_validates_and_runs_on_gpus(stage):
    objects = load_objects((TRAINING / f"{stage}.yaml").read_text())
    check_objects(objects)
    job = objects[-1]
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
    container = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_submit_dry_run_prints_the_checked_in_manifest(stage, capsys):
    code = mathforge_main(["submit", stage, "--config", f"configs/paper-7b/{stage}.yaml", "--dry-run"])
    assert code == 0
    assert capsys.readouterr().out == (TRAINING / f"{stage}.yaml").read_text()


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_tiny_recipe_job_is_a_valid_single_pod_cpu_job(stage):
    objects, _ = render(stage, f"configs/tiny/{stage}.yaml", [])
    check_objects(objects)
    replicas = objects[-1]["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master"}
    assert (
        "nvidia.com/gpu" not in replicas["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    in_job = yaml.safe_load(objects[0]["data"]["config.yaml"])
    assert in_job["out_dir"] == f"/checkpoints/runs/tiny/{stage}"  # relative run paths go to the PVC


def test_overrides_reach_the_job_and_bad_values_are_refused(capsys):
    objects, _ = render("sft", "configs/tiny/sft.yaml", ["job.nodes=3", "job.gpus_per_node=4"])
    check_objects(objects)
    assert objects[-1]["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    assert (
        mathforge_main(["submit", "sft", "--config", "configs/tiny/sft.yaml", "job.nodes=0", "--dry-run"])
        == 2
    )
    assert "job.nodes" in capsys.readouterr().err


def test_submit_without_a_cluster_fails_with_a_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert mathforge_main(["submit", "sft", "--config", "configs/tiny/sft.yaml"]) == 1
    assert "could not create the job" in capsys.readouterr().err


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((TRAINING / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in TRAINING.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_job_builder_is_reusable_for_other_stages():
    config = config_from_mapping(SftConfig, {"data": {"synthetic_problems": 10}, "stage": "reward"})
    objects = job_manifests("reward", config, module="mathforge.reward.train")
    kubernetes_validate.validate(objects[0], KUBE_VERSION, strict=True)
    command = objects[1]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert command[:3] == ["torchrun", "-m", "mathforge.reward.train"]
    assert objects[1]["metadata"]["name"] == "mathforge-reward"
