"""Where the map tasks of a recall round run: a local process pool, or a Kubernetes Indexed Job.

    executor = LocalExecutor(workers=4)
    executor.run(Path("runs/r/round-1/score"), tasks=16)     # returns when every task is done

Both run `recall_map.run_task(phase_dir, index)` for each task whose done file is missing, so a
phase that was interrupted (the command killed, a pod evicted) redoes only its unfinished shards.
The Kubernetes executor creates one Indexed Job per phase (completions = shards; each pod runs
`mathforge data recall-map --task .../task.json --index $(JOB_COMPLETION_INDEX)`), waits for it
through the Kubernetes API, and reads the results from the volume the pods wrote them to, which the
command must see at the same path (e.g. it runs in a pod with the same PersistentVolumeClaim).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mathforge.classifier.recall_map import done_path, run_task
from mathforge.kueue import queue_for_kueue


class MapExecutor(Protocol):
    def run(self, phase_dir: Path, tasks: int) -> None:
        """Runs tasks 0..tasks-1 of `phase_dir` that are not done yet; returns when all are done."""


def unfinished(phase_dir: Path, tasks: int) -> list[int]:
    return [i for i in range(tasks) if not done_path(phase_dir, i).exists()]


def _run_one(phase_dir: str, index: int) -> int:
    run_task(Path(phase_dir), index)
    return index


@dataclass
class InlineExecutor:
    """Runs the tasks one after another in this process (tests, and a web of one shard)."""

    def run(self, phase_dir: Path, tasks: int) -> None:
        for index in unfinished(phase_dir, tasks):
            run_task(phase_dir, index)


@dataclass
class LocalExecutor:
    """Runs the tasks in a pool of `workers` processes, kept for every phase until `close()` (fresh
    interpreters: the command may hold threads, which a forked child would inherit mid-state)."""

    workers: int = 2
    _pool: ProcessPoolExecutor | None = field(default=None, init=False, repr=False)

    def run(self, phase_dir: Path, tasks: int) -> None:
        pending = unfinished(phase_dir, tasks)
        if not pending:
            return
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        futures = {self._pool.submit(_run_one, str(phase_dir), i): i for i in pending}
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                index = futures[future]
                self.close()
                raise RuntimeError(
                    f"{phase_dir.name} task {index} (shard {index}) failed: {future.exception()}"
                ) from future.exception()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- Kubernetes ------------------------------------------------------------------------------
@dataclass
class K8sSettings:
    """The Indexed Job a phase runs as; defaults match k8s/data/recall-map-indexed-job.yaml."""

    namespace: str = "default"
    image: str = "ghcr.io/mathforge/mathforge-services:0.1.0"
    claim: str = "mathforge-corpus"  # the PersistentVolumeClaim holding the web and the run
    mount: str = "/data"  # where pods mount it (the command must see the run at the same path)
    parallelism: int = 16
    cpu: str = "1"
    memory: str = "4Gi"
    backoff_per_index: int = 3
    poll_seconds: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    queue: str = ""  # Kueue LocalQueue: the Job is created suspended until Kueue admits it
    priority_class: str = ""  # Kueue WorkloadPriorityClass (needs queue)


def job_name(phase_dir: Path) -> str:
    """A DNS-1123 Job name for a phase, unique per run directory: mathforge-recall-<run>-r<N>-<phase>."""
    round_name, phase = phase_dir.parent.name, phase_dir.name
    run = phase_dir.parent.parent.resolve()
    digest = hashlib.blake2b(str(run).encode(), digest_size=3).hexdigest()
    stem = re.sub(r"[^a-z0-9-]+", "-", run.name.lower()).strip("-")[:20] or "run"
    number = round_name.removeprefix("round-")
    return f"mathforge-recall-{stem}-{digest}-r{number}-{phase}"


def build_job(phase_dir: Path, tasks: int, settings: K8sSettings) -> dict[str, Any]:
    """The Indexed Job manifest (a dict, ready for the API or YAML) that maps phase_dir's tasks."""
    labels = {
        "app.kubernetes.io/name": "mathforge",
        "app.kubernetes.io/component": "recall-map",
        "app.kubernetes.io/part-of": "mathforge",
        **settings.labels,
    }
    task = str(phase_dir / "task.json")
    container = {
        "name": "recall-map",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["mathforge", "data", "recall-map"],
        "args": [f"--task={task}", "--index=$(JOB_COMPLETION_INDEX)"],
        "env": [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {
                    "fieldRef": {
                        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                    }
                },
            },
            {"name": "OMP_NUM_THREADS", "value": "1"},
        ],
        "resources": {
            "requests": {"cpu": settings.cpu, "memory": settings.memory},
            "limits": {"cpu": settings.cpu, "memory": settings.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": settings.mount},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(phase_dir), "namespace": settings.namespace, "labels": dict(labels)},
        "spec": {
            "completionMode": "Indexed",
            "completions": tasks,
            "parallelism": min(settings.parallelism, tasks),
            "backoffLimitPerIndex": settings.backoff_per_index,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": settings.claim}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }
    return queue_for_kueue(job, settings.queue, settings.priority_class)


def check_mounted(path: Path, settings: K8sSettings) -> None:
    """ValueError unless `path` lies under the mount path the pods see the claim at."""
    mount = Path(settings.mount)
    if not path.resolve().is_relative_to(mount):
        raise ValueError(
            f"{path} is not under {mount}, where the pods mount claim {settings.claim}: run the command "
            "where the claim is mounted at that same path, or set --k8s-mount"
        )


@dataclass
class K8sExecutor:
    """Runs each phase as an Indexed Job and waits for it through the Kubernetes API."""

    settings: K8sSettings = field(default_factory=K8sSettings)

    def run(self, phase_dir: Path, tasks: int) -> None:
        if not unfinished(phase_dir, tasks):
            return
        check_mounted(phase_dir, self.settings)
        from kubernetes import client, config  # only this executor needs the client

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        batch = client.BatchV1Api()
        manifest = build_job(phase_dir, tasks, self.settings)
        name, namespace = manifest["metadata"]["name"], self.settings.namespace
        try:
            batch.create_namespaced_job(namespace, manifest)
        except client.ApiException as exc:
            if exc.status != 409:  # 409: the Job of an interrupted run exists already; wait for it
                raise
        while True:
            status = batch.read_namespaced_job_status(name, namespace).status
            for condition in status.conditions or []:
                if condition.type == "Failed" and condition.status == "True":
                    raise RuntimeError(
                        f"Job {namespace}/{name} failed: {condition.reason}: {condition.message}"
                    )
            if not unfinished(phase_dir, tasks):
                return
            time.sleep(self.settings.poll_seconds)
