"""objective.method through the GRPO trainer against real sampler and reward services: SFT on the
task's worked solutions, RFT and DPO on samples drawn once from the starting policy (kept on disk,
reused by a resumed run), Online RFT on the current policy's; all with the same update, checkpoints
and metrics (DeepSeekMath §5.2.1)."""

from __future__ import annotations

import pytest

from tests.e2e.test_grpo_faults import policy_dir as policy_dir  # the tiny policy fixture
from tests.e2e.test_grpo_faults import run_trainer, trainer_command
from tests.e2e.test_grpo_faults import services as services  # its sampler and reward services

pytestmark = pytest.mark.slow


def _command(policy_dir, out_dir, services, method: str, steps: int) -> list[str]:
    command = trainer_command(policy_dir, out_dir, services)
    dropped = ("batch.steps=", "objective.supervision=", "reward.kind=", "iterative.every=")
    command = [arg for arg in command if not arg.startswith(dropped)]
    return [*command, f"batch.steps={steps}", f"objective.method={method}", "reward.kind=rule"]


@pytest.mark.parametrize("method", ["sft", "online_rft", "dpo"])
def test_each_method_trains_through_the_grpo_loop(policy_dir, services, tmp_path, method):
    code, found = run_trainer(_command(policy_dir, tmp_path / method, services, method, steps=2))
    assert code == 0
    steps = [e for e in found if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(e["kl"] == 0 for e in steps)  # only GRPO's coefficient has the KL part
    assert (tmp_path / method / "final" / "config.json").is_file()
    assert (tmp_path / method / "offline").is_dir() == (method == "dpo")
    if method == "sft":  # worked solutions: every output is right and none is cut
        assert all(e["accuracy"] == 1.0 and e["truncated_fraction"] == 0.0 for e in steps)


def test_rft_samples_once_and_a_killed_run_resumes_on_the_same_samples(policy_dir, services, tmp_path):
    out = tmp_path / "rft"
    command = _command(policy_dir, out, services, "rft", steps=3)
    code, _ = run_trainer(command, stop_after=r'"event": "checkpoint".*"step": 2')
    assert code != 0
    cache = sorted((out / "offline" / "rank-0").glob("batch-*.pkl"))
    assert len(cache) == 3  # every batch was drawn before the first update
    stamps = [path.stat().st_mtime_ns for path in cache]
    code, found = run_trainer(command)
    assert code == 0
    assert [e["step"] for e in found if e["event"] == "step"] == [3]
    assert [path.stat().st_mtime_ns for path in cache] == stamps  # not sampled again
