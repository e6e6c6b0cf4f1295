"""Ctrl-C on a 2-process torchrun: both ranks stop together within seconds, say in one line where a
rerun resumes, leave the last checkpoint intact and no process behind; the rerun resumes there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def _torchrun(out_dir: Path, steps: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "services"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "mathforge.training.pretrain",
            "--config",
            "configs/tiny/pretrain.yaml",
            f"out_dir={out_dir}",
            f"batch.steps={steps}",
            "checkpoint.every=2",
            "metrics.progress_bar=off",
        ],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job is
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_stops_both_ranks_within_seconds_and_the_rerun_resumes(tmp_path):
    run = _torchrun(tmp_path, steps=10_000)
    assert run.stdout is not None
    checkpoints = []
    for line in run.stdout:
        if line.startswith('{"event": "checkpoint"'):
            checkpoints.append(json.loads(line)["step"])
            if checkpoints[-1] >= 4:
                break
    else:
        pytest.fail(f"no checkpoint reached:\n{run.stderr.read() if run.stderr else ''}")
    workers = psutil.Process(run.pid).children(recursive=True)
    interrupted_at = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = run.communicate(timeout=60)
    took = time.monotonic() - interrupted_at
    assert took < 10, f"took {took:.1f}s to stop"
    assert run.returncode != 0
    ours = [line for line in err.splitlines() if "interrupted at step" in line]
    assert len(ours) == 1, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    stop = next(e for e in events if e["event"] == "interrupted")
    assert ours[0].endswith(
        f"interrupted at step {stop['step']}; rerun the same command to resume from step "
        f"{stop['resume_step']}"
    )
    assert stop["resume_step"] >= 4 and (tmp_path / "latest").exists()
    time.sleep(1)
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    rerun = _torchrun(tmp_path, steps=stop["resume_step"] + 2)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    resumed = [json.loads(line) for line in out.splitlines() if line.startswith('{"event": "resume"')]
    assert resumed and resumed[0]["step"] == stop["resume_step"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_die_with_a_killed_launcher(tmp_path):
    run = _torchrun(tmp_path, steps=10_000)
    assert run.stdout is not None
    for line in run.stdout:
        if line.startswith('{"event": "checkpoint"'):
            break
    workers = psutil.Process(run.pid).children(recursive=True)
    assert len(workers) >= 2
    run.kill()  # SIGKILL the launcher alone: it cannot forward anything
    run.wait(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers
    ):
        time.sleep(0.2)
    left = [p.pid for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived their launcher"
