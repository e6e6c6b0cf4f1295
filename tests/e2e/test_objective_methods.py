"""objective.method through the GRPO trainer against real sampler and reward services: SFT on the
task's worked solutions, RFT and DPO on samples drawn once from the starting policy (kept on disk as
global batches, reused by a resumed run on any number of processes), Online RFT on the current
policy's; all with the same update, checkpoints and metrics (DeepSeekMath §5.2.1)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
from mathforge.training.grpo.rollout import Rollout

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


def _global_batch(path: Path) -> Rollout:
    with open(path, "rb") as handle:
        return pickle.load(handle)  # the run's own cache


def test_rft_samples_once_and_a_killed_run_resumes_on_one_process_on_the_same_global_batches(
    policy_dir, services, tmp_path
):
    """RFT on 2 processes samples every global batch once (each process its share, one file per
    batch) and is killed after its step-2 checkpoint; the run resumes on 1 process and trains steps
    3-4 on the same cached global batches: each step's questions and sampled numbers are its batch
    file's, on either world size, and no batch is sampled again."""
    out = tmp_path / "rft"
    command = _command(policy_dir, out, services, "rft", steps=4)
    command += ["rollout.questions_per_step=4", "rollout.prompts_per_call=2", "checkpoint.every=2"]
    module = command.index("-m")
    two = [*command[:module], "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *command[module:]]  # fmt: skip
    # SIGKILL to torchrun: its workers die with it (die_with_parent), as on a lost node.
    code, first = run_trainer(two, stop_after=r'"event": "checkpoint".*"step": 2')
    assert code != 0
    cache = sorted((out / "offline").glob("batch-*.pkl"))
    assert len(cache) == 4  # every global batch was drawn before the first update
    stamps = [path.stat().st_mtime_ns for path in cache]
    code, second = run_trainer(command)
    assert code == 0
    (resume,) = [e for e in second if e["event"] == "resume"]
    assert resume["step"] == 2 and resume["from_world_size"] == 2
    assert [path.stat().st_mtime_ns for path in cache] == stamps  # not sampled again
    batches = {e["step"]: e for e in first + second if e["event"] == "batch"}
    trained = {e["step"]: e for e in first + second if e["event"] == "step"}
    assert sorted(batches) == sorted(trained) == [1, 2, 3, 4]
    for step, path in enumerate(cache, start=1):
        whole = _global_batch(path)
        assert whole.batch == step - 1 and len(whole.questions) == 4
        digests = [hashlib.sha1(q.question.encode()).hexdigest()[:10] for q in whole.questions]
        assert batches[step]["questions"] == digests, step
        assert trained[step]["outputs"] == whole.size == 16
        assert trained[step]["reward_mean"] == pytest.approx(float(whole.rewards.double().mean()), abs=1e-9)
        assert trained[step]["accuracy"] == pytest.approx(sum(whole.correct) / whole.size, abs=1e-9)
    assert len({q for e in batches.values() for q in e["questions"]}) == 16  # each question once
