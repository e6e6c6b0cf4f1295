"""k8s/training/reward.yaml: reward-model training as a PyTorchJob. Core objects validate strictly
against Kubernetes 1.30, the PyTorchJob against the kubeflow-training SDK models; its ConfigMap holds
a valid reward config with the paper's numbers; it is exactly what `mathforge submit reward --dry-run`
prints, and the kustomization lists it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from mathforge.cli import main as mathforge_main
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.training.config import config_from_mapping

from tests.k8s.pytorchjob import KUBE_VERSION, load_objects, validated_pod_templates

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "k8s" / "training" / "reward.yaml"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def _validated(text: str) -> tuple[dict[str, Any], RewardTrainConfig]:
    config_map, job = load_objects(text)
    kubernetes_validate.validate(config_map, KUBE_VERSION, strict=True)
    for template in validated_pod_templates(job).values():
        (container,) = template["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["ports"][0]["name"] == "pytorchjob-port"
        assert container["command"] == [
            "torchrun",
            "-m",
            "mathforge.reward.train",
            "--config",
            "/etc/mathforge/config.yaml",
        ]
    return job, config_from_mapping(RewardTrainConfig, yaml.safe_load(config_map["data"]["config.yaml"]))


def test_checked_in_manifest_validates_and_carries_the_paper_numbers():
    job, config = _validated(MANIFEST.read_text())
    assert config.optim.lr == 2e-5 and config.data.replay_share == 0.1
    assert config.reward.kind == "prm" and config.reward.step_separator == "\n"
    assert config.model.init_from.startswith("/checkpoints/") and config.out_dir.startswith("/checkpoints/")
    assert config.engine.deepspeed_config == "/etc/mathforge/deepspeed.json"
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]
    assert master["restartPolicy"] == "OnFailure"
    assert master["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert job["spec"]["runPolicy"]["backoffLimit"] >= 1


def test_submit_dry_run_prints_the_checked_in_manifest(capsys):
    assert mathforge_main(["submit", "reward", "--config", "configs/paper-7b/reward.yaml", "--dry-run"]) == 0
    assert capsys.readouterr().out == MANIFEST.read_text()


@pytest.mark.parametrize("recipe", ["configs/tiny/reward-orm.yaml", "configs/tiny/reward-prm.yaml"])
def test_tiny_recipes_are_cpu_jobs(capsys, recipe):
    assert mathforge_main(["submit", "reward", "--config", recipe, "--dry-run"]) == 0
    job, config = _validated(capsys.readouterr().out)
    assert config.engine.device == "cpu" and set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert job["spec"]["nprocPerNode"] == "2"


def test_bad_override_is_refused_naming_the_key(capsys):
    code = mathforge_main(
        ["submit", "reward", "--config", "configs/tiny/reward-orm.yaml", "data.replay_share=2", "--dry-run"]
    )
    assert code == 2
    assert "data.replay_share" in capsys.readouterr().err


def test_kustomization_lists_the_reward_job():
    kustomization = yaml.safe_load((REPO / "k8s" / "training" / "kustomization.yaml").read_text())
    assert "reward.yaml" in kustomization["resources"]
