"""k8s/training/grpo.yaml: the GRPO trainer's PyTorchJob validates (core objects strictly against
Kubernetes 1.30, the PyTorchJob against the kubeflow-training SDK models), reaches the Helm release's
sampler and reward Services, carries the label the chart's NetworkPolicy admits, and is exactly what
`mathforge submit grpo --dry-run` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from mathforge.cli import main as mathforge_main
from mathforge.training.config import ConfigError, config_from_mapping
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.submit import render

from tests.k8s.pytorchjob import KUBE_VERSION, load_objects, validated_pod_templates

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "k8s" / "training" / "grpo.yaml"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def _check(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], GrpoConfig]:
    """Validates every object; returns the PyTorchJob and the config its ConfigMap carries."""
    config_map, job = objects
    kubernetes_validate.validate(config_map, KUBE_VERSION, strict=True)
    for template in validated_pod_templates(job).values():
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "grpo-trainer"
        (container,) = template["spec"]["containers"]
        assert container["command"][:3] == ["torchrun", "-m", "mathforge.training.grpo"]
    config = config_from_mapping(GrpoConfig, yaml.safe_load(config_map["data"]["config.yaml"]))
    return job, config


def test_checked_in_manifest_validates_and_reaches_the_release_services():
    job, config = _check(load_objects(MANIFEST.read_text()))
    assert config.services.sampler == "dns:///mathforge-sampler:50054"
    assert config.services.reward == "dns:///mathforge-reward:50053"
    assert config.services.publish_dir.startswith("/checkpoints/")  # the sampler mounts this PVC
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert str(master["resources"]["limits"]["nvidia.com/gpu"]) == "8"


def test_paper_config_carries_the_paper_numbers():
    _, config = _check(load_objects(MANIFEST.read_text()))
    assert config.optim.lr == 1e-6 and config.objective.beta == 0.04
    assert config.rollout.group_size == 64 and config.rollout.max_new_tokens == 1024
    assert config.outputs_per_step == 1024 and config.objective.mu == 1 and config.objective.clip_eps == 0.2
    assert config.iterative.reward_model_lr == 2e-5 and config.iterative.replay_fraction == 0.1


def test_network_policy_admits_the_trainer_pods():
    values = yaml.safe_load((REPO / "helm" / "mathforge" / "values.yaml").read_text())
    admitted = values["networkPolicy"]["trainerPodLabels"]
    job, _ = _check(load_objects(MANIFEST.read_text()))
    labels = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    assert admitted.items() <= labels.items()


def test_submit_dry_run_prints_the_checked_in_manifest(capsys):
    code = mathforge_main(["submit", "grpo", "--config", "configs/paper-7b/grpo.yaml", "--dry-run"])
    assert code == 0
    assert capsys.readouterr().out == MANIFEST.read_text()


def test_tiny_recipe_is_a_single_pod_cpu_job():
    objects, _ = render("configs/tiny/grpo.yaml", [])
    job, config = _check(objects)
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert config.engine.device == "cpu"


def test_bad_override_is_refused_with_the_key(capsys):
    code = mathforge_main(
        ["submit", "grpo", "--config", "configs/tiny/grpo.yaml", "rollout.group_size=1", "--dry-run"]
    )
    assert code == 2
    assert "rollout.group_size" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"objective\.supervision=process"):
        render("configs/tiny/grpo.yaml", ["objective.supervision=process"])
