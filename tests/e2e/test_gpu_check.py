"""The GPU check's CPU rehearsal: scripts/gpu-check.sh runs every section at tiny sizes, so the
script a lent GPU node runs cannot rot between loans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_measures_every_section(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", "scripts/gpu-check.sh", str(tmp_path), "--dry-run", "--budget-s", "400"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    sections = report["sections"]
    assert report["profile"] == "dry"
    assert set(sections) == {"matmul", "sft", "reward", "sampler", "grpo"}
    assert sections["matmul"]["tflops"] > 0
    ddp = sections["sft"]["ddp"]
    assert ddp["tokens_per_s"] > 0 and ddp["peak_memory_mb"] > 0 and ddp["mfu"] > 0
    assert len(ddp["losses"]) == 3 and ddp["losses_finite_and_falling"]
    assert set(sections["reward"]["points"]) == {"1", "8"} and sections["reward"]["ratio"] > 0
    sampler = sections["sampler"]
    assert sampler["logprobs_match"], sampler["logprob_max_abs_gap"]
    assert all(p["tokens_per_s"] > 0 for p in sampler["points"].values())
    grpo = sections["grpo"]
    assert grpo["steps"] == 2 and grpo["losses_finite"]
    assert grpo["split"]["step_seconds"] >= grpo["split"]["time_updating_s"] > 0
    summary = (tmp_path / "gpu-check.md").read_text()
    assert "SFT ddp" in summary and "reward batching" in summary and "FAILED" not in summary
