"""The reward-model retrain runs as a job of its own: locally a separate torchrun process group that
writes its config and a loadable reward model, killed whole past its deadline; a PyTorchJob's
status conditions are read as the cluster path waits on them."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from mathforge.reward.model import load_reward_model
from mathforge.reward.retrain_job import RewardJobError, job_state, run_reward_job
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.training.config import load_config

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _config(out, steps: int) -> RewardTrainConfig:
    return load_config(
        RewardTrainConfig,
        [
            "--config",
            str(REPO / "configs/tiny/reward-orm.yaml"),
            f"out_dir={out}",
            f"batch.steps={steps}",
            f"checkpoint.every={steps}",
            "data.synthetic_train=64",
            "data.synthetic_eval=0",
            "metrics.progress_bar=off",
        ],
    )


def _job_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_local_reward_job_runs_in_its_own_process_group_and_writes_the_model(tmp_path, monkeypatch):
    # As inside a torchrun trainer: the job must not try to join the trainer's group.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_PORT", "1")
    final = run_reward_job(_config(tmp_path / "rm", steps=2), "local", deadline_s=300, processes=2)
    assert final == tmp_path / "rm" / "final"
    assert (tmp_path / "rm" / "job-config.yaml").is_file()
    assert load_reward_model(str(final), expect_kind="orm").kind == "orm"
    assert '"event": "done"' in (tmp_path / "rm" / "job.log").read_text()


def test_a_reward_job_past_its_deadline_is_killed_with_all_its_processes(tmp_path):
    config = _config(tmp_path / "rm", steps=100_000)
    with pytest.raises(RewardJobError, match="deadline of 3 s"):
        run_reward_job(config, "local", deadline_s=3, processes=2)
    assert _job_processes(str(tmp_path / "rm" / "job-config.yaml")) == []
    assert not (tmp_path / "rm" / "final").exists()


def test_pytorchjob_conditions_decide_success_failure_and_waiting():
    def job(*conditions):
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}

    assert job_state({"status": {}}) == "Running"
    assert job_state(job(("Created", "True"), ("Running", "True"))) == "Running"
    assert job_state(job(("Running", "False"), ("Succeeded", "True"))) == "Succeeded"
    assert job_state(job(("Failed", "True"))) == "Failed"
    assert job_state(job(("Succeeded", "False"))) == "Running"
