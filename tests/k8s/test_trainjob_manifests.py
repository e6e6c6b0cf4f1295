"""k8s/training/trainjob: every TrainJob and ClusterTrainingRuntime round-trips through the
Trainer v2 API models field for field, the runtime runs the same pod the PyTorchJob path runs
(image, command, environment, mounts, hardening), and `mathforge submit --api trainjob --dry-run`
prints exactly the checked-in files."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from mathforge.cli import main as mathforge_main
from mathforge.training.submit import render

from tests.k8s.pytorchjob import KUBE_VERSION, load_objects
from tests.k8s.trainjob import check_against_trainer_models, validated_node_job

REPO = Path(__file__).resolve().parents[2]
TRAINJOB = REPO / "k8s" / "training" / "trainjob"
STAGES = ["pretrain", "sft", "reward", "grpo"]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def check_trainjob_objects(objects: list[dict]) -> tuple[dict, dict, dict]:
    """[ConfigMap, ClusterTrainingRuntime, TrainJob] validated; returns them."""
    config_map, runtime, job = objects
    assert [o["kind"] for o in objects] == ["ConfigMap", "ClusterTrainingRuntime", "TrainJob"]
    kubernetes_validate.validate(config_map, KUBE_VERSION, strict=True)
    check_against_trainer_models(runtime)
    check_against_trainer_models(job)
    validated_node_job(runtime)
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": runtime["metadata"]["name"],
    }
    assert "namespace" not in runtime["metadata"]  # cluster-scoped
    return config_map, runtime, job


@pytest.mark.parametrize("stage", STAGES)
def test_checked_in_trainjob_validates_against_the_trainer_models(stage):
    objects = load_objects((TRAINJOB / f"{stage}.yaml").read_text())
    config_map, runtime, job = check_trainjob_objects(objects)
    pod = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "node" and container["image"].startswith("ghcr.io/mathforge/mathforge-gpu:")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert job["spec"]["trainer"]["numNodes"] == config["job"]["nodes"]
    assert job["spec"]["trainer"]["numProcPerNode"] == config["job"]["nproc_per_node"]
    gpus = job["spec"]["trainer"]["resourcesPerNode"]["limits"].get("nvidia.com/gpu", "0")
    assert int(gpus) == config["job"]["gpus_per_node"] > 0


@pytest.mark.parametrize("stage", STAGES)
def test_trainjob_runs_the_pytorchjob_pod_under_trainer_names(stage):
    """Same image, command, environment, mounts, volumes and security as the PyTorchJob path; only
    the container's name and port (the operators' own conventions) and the sizes' place differ."""
    (v1_job,) = [
        o
        for o in load_objects((REPO / "k8s" / "training" / f"{stage}.yaml").read_text())
        if o["kind"] == "PyTorchJob"
    ]
    v1_pod = v1_job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    _, runtime, job = load_objects((TRAINJOB / f"{stage}.yaml").read_text())
    v2_pod = copy.deepcopy(
        runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    )
    assert v2_pod["spec"].pop("restartPolicy") == "Never"
    (v1_container,) = copy.deepcopy(v1_pod["spec"]["containers"])
    assert v1_container.pop("name") == "pytorch" and v1_container.pop("ports")
    assert v1_container.pop("resources") == job["spec"]["trainer"]["resourcesPerNode"]
    (v2_container,) = v2_pod["spec"]["containers"]
    assert v2_container.pop("name") == "node"
    assert v2_container == v1_container
    assert {k: v for k, v in v2_pod["spec"].items() if k != "containers"} == {
        k: v for k, v in v1_pod["spec"].items() if k != "containers"
    }
    assert v2_pod["metadata"] == v1_pod["metadata"]
    assert v2_pod["spec"]["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("stage", STAGES)
def test_submit_dry_run_api_trainjob_prints_the_checked_in_files(stage, capsys):
    argv = ["submit", stage, "--config", f"configs/paper-7b/{stage}.yaml", "--api", "trainjob", "--dry-run"]
    assert mathforge_main(argv) == 0
    assert capsys.readouterr().out == (TRAINJOB / f"{stage}.yaml").read_text()


def test_api_in_the_config_file_is_the_same_as_the_flag(tmp_path):
    recipe = yaml.safe_load((REPO / "configs" / "tiny" / "sft.yaml").read_text())
    recipe.setdefault("job", {})["api"] = "trainjob"
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe))
    from_file, _ = render("sft", str(path), [])
    from_flag, _ = render("sft", "configs/tiny/sft.yaml", ["job.api=trainjob"])
    assert from_file[1:] == from_flag[1:]
    check_trainjob_objects(from_flag)


def test_tiny_recipe_trainjob_is_a_cpu_job_of_one_node():
    objects, _ = render("pretrain", "configs/tiny/pretrain.yaml", ["job.api=trainjob"])
    _, runtime, job = check_trainjob_objects(objects)
    assert job["spec"]["trainer"]["numNodes"] == 1
    assert "nvidia.com/gpu" not in job["spec"]["trainer"]["resourcesPerNode"]["limits"]
    pod = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert "tolerations" not in pod["spec"]
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in pod["spec"]["containers"][0]["env"]


def test_the_model_check_catches_a_misspelt_field_and_a_wrong_type():
    objects, _ = render("sft", "configs/tiny/sft.yaml", ["job.api=trainjob"])
    job = objects[-1]
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["trainer"]["numProcsPerNode"] = misspelt["spec"]["trainer"].pop("numProcPerNode")
    with pytest.raises(AssertionError, match="does not define"):
        check_against_trainer_models(misspelt)
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(ValueError):
        TrainerV1alpha1TrainJob.from_dict(wrong_type)


def test_unknown_api_is_refused_with_the_choices(capsys):
    code = mathforge_main(
        ["submit", "sft", "--config", "configs/tiny/sft.yaml", "job.api=jobset", "--dry-run"]
    )
    assert code == 2
    assert "job.api 'jobset' is not pytorchjob or trainjob" in capsys.readouterr().err


def test_kustomization_lists_every_trainjob_file():
    kustomization = yaml.safe_load((TRAINJOB / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f"{s}.yaml" for s in STAGES)
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in TRAINJOB.glob("*.yaml") if p.name != "kustomization.yaml"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_builds_every_trainjob_object():
    built = subprocess.run(
        ["kubectl", "kustomize", str(TRAINJOB)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    objects = load_objects(built)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ConfigMap", "ClusterTrainingRuntime", "TrainJob"] * len(STAGES))
    for obj in objects:
        if obj["kind"] != "ConfigMap":
            check_against_trainer_models(obj)
