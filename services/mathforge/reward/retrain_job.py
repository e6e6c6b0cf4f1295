"""The reward-model retrain of iterative RL as a job of its own, launched and waited for with a
deadline, so a 7B reward model never trains inside the GPU that holds the policy and pi_ref.

    final = run_reward_job(rm_config, where="local", deadline_s=3600)     # -> <out_dir>/final
    final = run_reward_job(rm_config, where="cluster", deadline_s=3600)

The reward config (fresh samples, replay, init_from, seed: the trainer decides them) is written to
<out_dir>/job-config.yaml first. "local" runs the reward stage under torchrun as a separate process
group (its own session, no variables of the caller's group), its output in <out_dir>/job.log.
"cluster" renders and creates the same ConfigMap and PyTorchJob as `mathforge submit reward`
(through the same code) in the trainer's namespace and polls the job until it succeeds or fails;
the trainer's service account needs only create/get on pytorchjobs and configmaps there (the
chart's trainer Role). Past the deadline the local process group is killed, or the PyTorchJob
deleted, and RewardJobError says so. The reward stage resumes from its own checkpoints, so a
trainer restarted while a job ran resubmits and the job continues where it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mathforge.models.checkpoint import write_text_atomic
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.training.config import dump_config

log = logging.getLogger(__name__)

MODULE = "mathforge.reward.train"
WHERE = ("local", "cluster")
# The job is its own process group: none of the caller's torchrun variables may leak into it.
_DISTRIBUTED_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
)


class RewardJobError(RuntimeError):
    """The reward-model job failed or missed its deadline."""


def write_job_config(config: RewardTrainConfig) -> Path:
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "job-config.yaml"
    write_text_atomic(path, dump_config(config))
    return path


def run_reward_job(
    config: RewardTrainConfig, where: str = "local", deadline_s: float = 0.0, processes: int = 1
) -> Path:
    """Runs the reward stage for `config` as its own job and waits; returns <out_dir>/final."""
    if where not in WHERE:
        raise ValueError(f"reward job placement {where!r} is not one of {', '.join(WHERE)}")
    config_file = write_job_config(config)
    if where == "local":
        _run_local(config_file, processes, deadline_s)
    else:
        _run_in_cluster(config, deadline_s)
    final = Path(config.out_dir) / "final"
    if not (final / "config.json").exists():
        raise RewardJobError(f"the reward job finished but wrote no model at {final}")
    return final


def _run_local(config_file: Path, processes: int, deadline_s: float) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        MODULE,
        "--config",
        str(config_file),
    ]
    env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_VARIABLES}
    log_path = config_file.with_name("job.log")
    log.info("reward job (local, %d process(es)): %s", processes, " ".join(command))
    with open(log_path, "ab") as output:
        proc = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=deadline_s or None)
        except subprocess.TimeoutExpired:
            _kill_job(proc)
            raise RewardJobError(
                f"the reward job did not finish within its deadline of {deadline_s:g} s "
                f"(iterative.reward_job_deadline_s); killed. Log: {log_path}"
            ) from None
        finally:
            if proc.poll() is None:  # interrupted while waiting: take the job down with us
                _kill_job(proc)
    if code != 0:
        tail = log_path.read_bytes()[-4000:].decode(errors="replace")
        raise RewardJobError(f"the reward job failed (exit {code}); log {log_path}:\n{tail}")


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): torchrun starts its workers in sessions of their own,
    so killing its process group does not reach them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _kill_job(proc: subprocess.Popen[bytes], wait_s: float = 10.0) -> None:
    """SIGKILLs the launcher's group and every worker below it, and waits until they are gone."""
    workers = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _run_in_cluster(config: RewardTrainConfig, deadline_s: float, poll_s: float = 10.0) -> None:
    from kubernetes import client

    from mathforge.training.jobs import job_manifests
    from mathforge.training.submit import create_in_cluster

    objects = job_manifests("reward", config, module=MODULE)
    job = objects[-1]
    if job["kind"] != "PyTorchJob":
        raise RewardJobError(f"reward jobs from the trainer run as PyTorchJobs, not {job['kind']} (job.api)")
    name = create_in_cluster(objects, None, None)
    namespace = job["metadata"]["namespace"]
    api = client.CustomObjectsApi()
    began = time.monotonic()
    log.info("reward job: PyTorchJob %s/%s created; waiting", namespace, name)
    while True:
        status = api.get_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", name)
        state = job_state(status)
        if state == "Succeeded":
            return
        if state == "Failed":
            raise RewardJobError(f"PyTorchJob {namespace}/{name} failed: {_message(status)}")
        if deadline_s and time.monotonic() - began > deadline_s:
            api.delete_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", name)
            raise RewardJobError(
                f"PyTorchJob {namespace}/{name} did not finish within its deadline of {deadline_s:g} s; "
                "deleted"
            )
        time.sleep(poll_s)


def job_state(job: dict) -> str:
    """Succeeded, Failed or Running from a PyTorchJob's status conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Succeeded", "Failed"):
            return str(condition["type"])
    return "Running"


def _message(job: dict) -> str:
    conditions = (job.get("status") or {}).get("conditions") or []
    return (
        "; ".join(str(c.get("message", "")) for c in conditions if c.get("type") == "Failed") or "no message"
    )
