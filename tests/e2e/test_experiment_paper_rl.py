"""`mathforge experiment paper-rl --profile quick`: the whole experiment on its real code path (SFT,
PRM, five methods through the GRPO trainer, two at a time, all sharing one sampler and one reward
service on a line each; maj@k and pass@k, the report), and a rerun that resumes: finished runs are
not run again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
METHODS = ["rft", "online_rft", "grpo_outcome", "grpo_process", "iterative_grpo"]


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mathforge", "experiment", "paper-rl", "--profile", "quick"]
    command += ["--out", str(out), "--no-progress", "--concurrency", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _log_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_quick_profile_reports_every_view_and_resumes(tmp_path):
    out = tmp_path / "paper-rl"
    done = _run(out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "report" / "report.json").read_text())
    assert sorted(report["methods"]) == sorted(METHODS)
    for method in METHODS:
        assert sorted(report["methods"][method]["by_step"]) == ["0", "1", "2"]  # every eval, each update
    assert report["k"]["ks"] == [1, 2, 4]
    claims = {f["finding"] for f in report["findings"]}
    assert "online sampling beats offline" in claims and "iterative RL helps" in claims
    assert "RL raises maj@4 more than pass@4" in claims
    for name in ("report.md", "fig5-methods.png", "fig6-iterative.png", "fig7-k.png"):
        assert (out / "report" / name).stat().st_size > 0
    lines = (out / "runs" / "iterative_grpo-seed0" / "events.jsonl").read_text().splitlines()
    iterations = [e for e in map(json.loads, lines) if e["event"] == "iteration"]
    assert iterations and iterations[0]["reward_model_version"] >= 1  # the PRM was retrained and reloaded
    assert list((out / "runs" / "rft-seed0" / "offline").glob("batch-*.pkl"))  # the global batches
    # one sampler and one reward service for everything: each run loaded its policy on its own line
    # (versions from 1 on every line), the iterative run its PRM on its own line of the reward service
    loads = [e for e in _log_events(out / "services" / "sampler.log") if e.get("msg") == "weights loaded"]
    assert {e["line"] for e in loads} == {f"{m}-seed0" for m in METHODS} | {"k-rl-seed0"}
    assert all(
        min(e["version"] for e in loads if e["line"] == line) == 1 for line in {e["line"] for e in loads}
    )
    reward_loads = [
        e for e in _log_events(out / "services" / "reward.log") if e.get("msg") == "reward model loaded"
    ]
    assert reward_loads and {e["line"] for e in reward_loads} == {"iterative_grpo-seed0"}
    assert not list((out / "runs").glob("*/services"))

    # a killed experiment: one run lost its final model, the report is gone
    kept = {m: (out / "runs" / f"{m}-seed0" / "events.jsonl").read_text() for m in METHODS}
    shutil.rmtree(out / "runs" / "online_rft-seed0" / "final")
    shutil.rmtree(out / "report")
    again = _run(out)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    for method in METHODS:
        text = (out / "runs" / f"{method}-seed0" / "events.jsonl").read_text()
        assert (text == kept[method]) == (method != "online_rft")  # only the unfinished run ran again
    assert '"event": "resume"' in (out / "runs" / "online_rft-seed0" / "events.jsonl").read_text()
    assert (out / "report" / "report.json").is_file()
