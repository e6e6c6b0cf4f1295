"""Overlapped GRPO (rollout.max_staleness = 1) against real sampler and reward services as processes:
batches sampled ahead from a policy at most one version old, each sample tagged with its version and
reweighted; and a trainer SIGKILLed with a batch in flight resumes training on every question
exactly once, in the order an undisturbed run trains on them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.policies import digit_writer
from tests.e2e.test_grpo_faults import Service, run_trainer, trainer_command

pytestmark = pytest.mark.slow
STEPS = 5


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    return digit_writer(tmp_path_factory.mktemp("policy") / "digits")


@pytest.fixture(scope="module")
def services(policy_dir: Path, tmp_path_factory) -> Iterator[dict[str, Service]]:
    logs = tmp_path_factory.mktemp("service-logs")
    started = {
        "sampler": Service("sampler", ["--model-path", str(policy_dir)], logs),
        "reward": Service("reward", ["--random-model-preset", "tiny", "--symbolic-workers", "1"], logs),
    }
    for service in started.values():
        service.start()
    yield started
    for service in started.values():
        service.stop()


def overlapped_command(policy_dir: Path, out_dir: Path, services: dict[str, Service]) -> list[str]:
    command = trainer_command(policy_dir, out_dir, services)
    command = [arg for arg in command if not arg.startswith(("batch.steps=", "iterative.every="))]
    return [*command, f"batch.steps={STEPS}", "rollout.max_staleness=1", "objective.importance_cap=1.5"]


def batches(found: list[dict]) -> dict[int, list[str]]:
    return {e["step"]: e["questions"] for e in found if e["event"] == "batch"}


@pytest.fixture(scope="module")
def undisturbed(policy_dir, services, tmp_path_factory) -> list[dict]:
    code, found = run_trainer(overlapped_command(policy_dir, tmp_path_factory.mktemp("clean"), services))
    assert code == 0
    return found


def test_overlapped_run_trains_on_samples_at_most_one_version_old_and_reweights_them(undisturbed):
    steps = [e for e in undisturbed if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    versions = [int(e["weights_version"]) for e in steps]
    assert versions == list(range(versions[0], versions[0] + STEPS))  # one publish per update
    assert all(e["staleness_max"] <= 1 for e in steps)
    assert any(e["staleness_mean"] > 0 for e in steps)  # sampled while the trainer updated
    stale = [e for e in steps if e["staleness_mean"] > 0]
    assert all(e["importance_weight_mean"] != 1.0 for e in stale)  # the correction is applied
    assert all(0 <= e["importance_capped_fraction"] < 1 for e in steps)
    for batch in (e for e in undisturbed if e["event"] == "batch"):
        low = batch["versions"][0]
        assert versions[batch["step"] - 1] - 1 - low <= 1  # the trainer's version before its update


def test_trainer_killed_with_samples_in_flight_resumes_using_each_question_exactly_once(
    policy_dir,
    services,
    undisturbed,
    tmp_path,
):
    command = overlapped_command(policy_dir, tmp_path / "run", services)
    code, first = run_trainer(command, stop_after=r'"event": "checkpoint".*"step": 2,')
    assert code == -signal.SIGKILL
    (at_checkpoint,) = [e for e in first if e["event"] == "step" and e["step"] == 2]
    assert at_checkpoint["rollouts_pending"] >= 1  # a batch was sampled or being sampled when killed
    code, second = run_trainer(command)
    assert code == 0
    assert [e["step"] for e in second if e["event"] == "resume"] == [2]
    committed = {step: questions for step, questions in batches(first).items() if step <= 2}
    resumed = batches(second)
    assert sorted(resumed) == list(range(3, STEPS + 1))
    trained = {**committed, **resumed}
    assert trained == batches(undisturbed)  # the same questions, step for step
    every = [q for step in sorted(trained) for q in trained[step]]
    assert len(every) == len(set(every)) == STEPS * 3  # none twice, none lost


def test_two_trainer_processes_sample_ahead_each_with_its_own_share(policy_dir, services, tmp_path):
    """Under torchrun each process samples its half of every batch in its own background thread;
    rank 0 publishes, every rank waits at the barrier, and all train on samples at most one version old."""
    command = overlapped_command(policy_dir, tmp_path / "ddp", services)
    module = command.index("-m")
    command[module : module + 2] = [
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "-m",
        "mathforge.training.grpo",
    ]
    command = [arg for arg in command if not arg.startswith("rollout.questions_per_step=")]
    code, found = run_trainer([*command, "rollout.questions_per_step=4"], timeout_s=400)
    assert code == 0
    steps = [e for e in found if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    versions = [int(e["weights_version"]) for e in steps]
    assert versions == list(range(versions[0], versions[0] + STEPS))
    assert all(e["outputs"] == 16 and e["batch_groups"] == 4 for e in steps)  # both processes' halves
    assert all(e["staleness_max"] <= 1 for e in steps) and any(e["staleness_mean"] > 0 for e in steps)
