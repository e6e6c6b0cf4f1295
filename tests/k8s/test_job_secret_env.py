"""job.secret_env: an API key for a training pod (W&B's) comes from a Kubernetes Secret through a
secretKeyRef, never as a value in the job spec or the ConfigMap; a malformed reference is one clear
error before anything is rendered."""

from __future__ import annotations

import pytest
from mathforge.cli import main as mathforge_main

from tests.k8s.pytorchjob import load_objects, validated_pod_templates

SECRET = "job.secret_env={WANDB_API_KEY: wandb-credentials/api-key}"


def test_secret_env_reads_the_secret_and_makes_valid_pods(capsys):
    argv = ["submit", "sft", "--config", "configs/tiny/sft.yaml", SECRET, "metrics.wandb_project=math"]
    assert mathforge_main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    job = next(o for o in load_objects(text) if o["kind"] == "PyTorchJob")
    for template in validated_pod_templates(job).values():
        (container,) = template["spec"]["containers"]
        wanted = [e for e in container["env"] if e["name"] == "WANDB_API_KEY"]
        assert wanted == [
            {
                "name": "WANDB_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": "wandb-credentials", "key": "api-key"}},
            }
        ]
    # the ConfigMap names the Secret, and no plain-value entry carries the variable
    assert "wandb-credentials/api-key" in text
    assert all("value" not in e for e in container["env"] if e["name"] == "WANDB_API_KEY")
    # the Trainer v2 runtime's pod is built by the same code
    assert mathforge_main([*argv, "--api", "trainjob", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("secretKeyRef") == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("job.secret_env={WANDB_API_KEY: Wandb}", "is not <secret>/<key>"),
        ("job.secret_env={WANDB_API_KEY: wandb/}", "is not <secret>/<key>"),
        ("job.secret_env={9KEY: wandb/api-key}", "is not an environment variable name"),
    ],
)
def test_malformed_secret_env_is_one_line(capsys, override, message):
    assert mathforge_main(["submit", "sft", "--config", "configs/tiny/sft.yaml", override, "--dry-run"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "job.secret_env" in err[0]


def test_secret_env_and_env_cannot_both_set_a_variable(capsys):
    both = [SECRET, "job.env={WANDB_API_KEY: plain}"]
    assert mathforge_main(["submit", "sft", "--config", "configs/tiny/sft.yaml", *both, "--dry-run"]) != 0
    assert "also set in job.env" in capsys.readouterr().err
