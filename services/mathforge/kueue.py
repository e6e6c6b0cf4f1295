"""Marks a job for Kueue: the queue-name and priority-class labels, and created suspended.

    queue_for_kueue(job, queue="team-a", priority_class="high")   # edits the dict in place

Kueue admits a job by unsuspending it once its ClusterQueue has quota; a job created unsuspended
would start before admission (and Kueue's webhook would refuse it in a managed namespace). Where
`suspend` lives depends on the kind: spec.suspend for batch/v1 Jobs, JobSets and Trainer v2
TrainJobs; spec.runPolicy.suspend for training operator v1 jobs (PyTorchJob).
"""

from __future__ import annotations

from typing import Any

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# Kinds whose suspend flag sits in spec.runPolicy (kubeflow.org/v1).
RUN_POLICY_KINDS = {"PyTorchJob"}
SPEC_KINDS = {"Job", "JobSet", "TrainJob"}


def queue_for_kueue(job: dict[str, Any], queue: str, priority_class: str = "") -> dict[str, Any]:
    """Labels `job` for the LocalQueue `queue` and suspends it; no queue leaves it untouched.

    A priority class without a queue is refused: Kueue ignores it on a job it does not manage.
    """
    if not queue:
        if priority_class:
            raise ValueError(f"priority class {priority_class!r} needs a queue name (job.queue / --queue)")
        return job
    kind = job.get("kind", "")
    if kind not in RUN_POLICY_KINDS | SPEC_KINDS:
        raise ValueError(f"{kind or 'an object without kind'} is not a job kind Kueue admits here")
    labels = job.setdefault("metadata", {}).setdefault("labels", {})
    labels[QUEUE_LABEL] = queue
    if priority_class:
        labels[PRIORITY_LABEL] = priority_class
    spec = job.setdefault("spec", {})
    if kind in RUN_POLICY_KINDS:
        spec.setdefault("runPolicy", {})["suspend"] = True
    else:
        spec["suspend"] = True
    return job
