"""Kueue on every job kind: the queue-name (and priority-class) labels and a suspended start appear
exactly when a queue is asked for (--queue, job.queue in the config, or the k8s/kueue components),
in the place each kind keeps `suspend`, and the marked objects still validate strictly."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from mathforge.cli import main as mathforge_main
from mathforge.kueue import PRIORITY_LABEL, QUEUE_LABEL, queue_for_kueue
from mathforge.training.submit import render

from tests.k8s.pytorchjob import KUBE_VERSION, load_objects, validated_pod_templates
from tests.k8s.trainjob import check_against_trainer_models

REPO = Path(__file__).resolve().parents[2]
KUEUE = REPO / "k8s" / "kueue"
DATA = REPO / "k8s" / "data"
DATA_JOBS = sorted(DATA.glob("*-indexed-job.yaml"))


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def suspended(job: dict) -> bool | None:
    spec = job["spec"]
    return spec.get("runPolicy", {}).get("suspend") if job["kind"] == "PyTorchJob" else spec.get("suspend")


def kueue_labels(job: dict) -> dict:
    return {k: v for k, v in job["metadata"]["labels"].items() if k.startswith("kueue.x-k8s.io/")}


def check_job(job: dict) -> None:
    if job["kind"] == "PyTorchJob":
        validated_pod_templates(job)
    elif job["kind"] == "TrainJob":
        check_against_trainer_models(job)
    else:
        kubernetes_validate.validate(job, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("api", ["pytorchjob", "trainjob"])
def test_no_queue_means_no_kueue_labels_and_no_suspend(api):
    objects, text = render("sft", "configs/tiny/sft.yaml", [f"job.api={api}"])
    job = objects[-1]
    assert kueue_labels(job) == {} and suspended(job) is None
    assert "kueue" not in text and "suspend" not in text
    check_job(job)


@pytest.mark.parametrize("api", ["pytorchjob", "trainjob"])
def test_queue_flag_labels_the_job_and_suspends_it_where_its_kind_keeps_suspend(api, capsys):
    argv = [
        "submit",
        "sft",
        "--config",
        "configs/tiny/sft.yaml",
        "--api",
        api,
        "--queue",
        "team-a",
        "--dry-run",
    ]
    assert mathforge_main(argv) == 0
    text = capsys.readouterr().out
    assert "--api " + api + " --queue team-a --dry-run" in text.splitlines()[0]
    objects = load_objects(text)
    job = objects[-1]
    assert kueue_labels(job) == {QUEUE_LABEL: "team-a"}
    assert suspended(job) is True
    if api == "pytorchjob":
        assert "suspend" not in job["spec"]
    check_job(job)
    # Only the job is queued: the ConfigMap and the cluster-scoped runtime are not workloads.
    for other in objects[:-1]:
        assert not any(k.startswith("kueue") for k in other["metadata"].get("labels", {}))


@pytest.mark.parametrize("api", ["pytorchjob", "trainjob"])
def test_queue_and_priority_from_the_config_file(api, tmp_path):
    recipe = yaml.safe_load((REPO / "configs" / "tiny" / "pretrain.yaml").read_text())
    recipe.setdefault("job", {}).update(api=api, queue="gpu-queue", priority_class="research-low")
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(recipe))
    objects, _ = render("pretrain", str(path), [])
    job = objects[-1]
    assert kueue_labels(job) == {QUEUE_LABEL: "gpu-queue", PRIORITY_LABEL: "research-low"}
    assert suspended(job) is True
    check_job(job)


def test_priority_class_without_a_queue_is_refused(capsys):
    argv = ["submit", "sft", "--config", "configs/tiny/sft.yaml", "--priority-class", "high", "--dry-run"]
    assert mathforge_main(argv) == 2
    assert "job.priority_class 'high' needs job.queue" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a queue name"):
        queue_for_kueue({"kind": "Job", "spec": {}}, "", "high")


def test_a_kind_kueue_does_not_admit_here_is_refused():
    with pytest.raises(ValueError, match="Deployment is not a job kind"):
        queue_for_kueue({"kind": "Deployment", "spec": {}}, "q")


@pytest.mark.parametrize("path", DATA_JOBS, ids=lambda p: p.name)
def test_data_jobs_run_at_once_without_the_kueue_component(path):
    (job,) = load_objects(path.read_text())
    assert kueue_labels(job) == {} and "suspend" not in job["spec"]


def _apply_component(component: Path, obj: dict) -> dict:
    """Applies a Kustomize Component's JSON-patch `add` operations to `obj` when their target's
    kind (a regular expression, as Kustomize reads it) and group match; for running without kubectl."""
    obj = copy.deepcopy(obj)
    group = obj["apiVersion"].rpartition("/")[0]
    for patch in yaml.safe_load(component.joinpath("kustomization.yaml").read_text())["patches"]:
        target = patch["target"]
        if not re.fullmatch(target["kind"], obj["kind"]) or target.get("group", group) != group:
            continue
        for op in yaml.safe_load(patch["patch"]):
            assert op["op"] == "add"
            *parents, leaf = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            node = obj
            for key in parents:
                node = node[key]
            node[leaf] = op["value"]
    return obj


@pytest.mark.parametrize("path", DATA_JOBS, ids=lambda p: p.name)
def test_kueue_components_mark_a_data_job_and_it_stays_valid(path):
    (job,) = load_objects(path.read_text())
    queued = _apply_component(KUEUE / "priority", _apply_component(KUEUE / "queue", job))
    assert kueue_labels(queued) == {QUEUE_LABEL: "mathforge", PRIORITY_LABEL: "mathforge-batch"}
    assert queued["spec"]["suspend"] is True
    kubernetes_validate.validate(queued, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("api", ["pytorchjob", "trainjob"])
def test_kueue_queue_component_agrees_with_submit_queue(api):
    """The component and `--queue mathforge` put the same labels and suspend on a training job."""
    plain, _ = render("sft", "configs/tiny/sft.yaml", [f"job.api={api}"])
    flagged, _ = render("sft", "configs/tiny/sft.yaml", [f"job.api={api}", "job.queue=mathforge"])
    assert _apply_component(KUEUE / "queue", plain[-1]) == flagged[-1]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("example", ["data", "trainjob"])
def test_kustomize_kueue_examples_queue_every_job_and_nothing_else(example):
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUEUE / example)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    objects = load_objects(built)
    jobs = [o for o in objects if o["kind"] in ("Job", "TrainJob")]
    listed = yaml.safe_load((DATA / "kustomization.yaml").read_text())["resources"]
    assert len(jobs) == {"data": len(listed), "trainjob": 4}[example]
    for job in jobs:
        assert kueue_labels(job) == {QUEUE_LABEL: "mathforge", PRIORITY_LABEL: "mathforge-batch"}
        assert suspended(job) is True
        check_job(job)
    for other in (o for o in objects if o not in jobs):
        assert kueue_labels({"metadata": {"labels": other["metadata"].get("labels", {})}}) == {}


def test_recall_executor_jobs_are_queued_exactly_when_asked(tmp_path) -> None:
    """`mathforge data recall --executor k8s` builds its Indexed Jobs through the same helper."""
    from mathforge.classifier.recall_executor import K8sSettings, build_job

    phase = Path("/data/runs/recall/round-1/score")
    plain = build_job(phase, 4, K8sSettings())
    assert kueue_labels(plain) == {} and "suspend" not in plain["spec"]
    queued = build_job(phase, 4, K8sSettings(queue="corpus", priority_class="batch-low"))
    assert kueue_labels(queued) == {QUEUE_LABEL: "corpus", PRIORITY_LABEL: "batch-low"}
    assert queued["spec"]["suspend"] is True
    kubernetes_validate.validate(queued, KUBE_VERSION, strict=True)


def test_recall_priority_class_without_a_queue_is_refused(capsys) -> None:
    argv = ["data", "recall", "--web", "/data/web", "--out", "/data/runs/r", "--executor", "k8s"]
    assert mathforge_main([*argv, "--priority-class", "x", "--dry-run"]) == 2
    assert "--priority-class x needs --queue" in capsys.readouterr().err
