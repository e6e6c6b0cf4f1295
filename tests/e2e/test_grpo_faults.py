"""GRPO against real sampler and reward services on loopback, as separate processes, with faults:
the reward service and then the sampler killed with SIGKILL and restarted mid-run, and the trainer
killed with SIGKILL and restarted. Both runs must end with exactly the losses of an undisturbed run,
step for step.

The policy is a tiny model that writes digits and stops (tests/e2e/policies.py; most answers finish,
and a cut one counts as wrong) and the rewards come from the reward service's random ORM and PRM
(process supervision): continuous, different rewards in every group, so every step moves the policy
and a repeated, lost or stale step would change the losses that follow.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.policies import digit_writer

REPO = Path(__file__).resolve().parents[2]
STEPS = 4
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A `mathforge serve` child on a fixed port, restartable on the same port."""

    def __init__(self, name: str, args: list[str], log_dir: Path):
        self.name, self.args, self.log_dir = name, args, log_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        command = [
            sys.executable,
            "-m",
            "mathforge",
            "serve",
            self.name,
            "--port",
            str(self.port),
            "--metrics-port",
            "-1",
            "--grace-s",
            "1",
            *self.args,
        ]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    return digit_writer(tmp_path_factory.mktemp("policy") / "digits")


@pytest.fixture(scope="module")
def services(policy_dir, tmp_path_factory) -> Iterator[dict[str, Service]]:
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


def trainer_command(policy_dir: Path, out_dir: Path, services: dict[str, Service]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mathforge.training.grpo",
        "--config",
        "configs/tiny/grpo.yaml",
        f"model.init_from={policy_dir}",
        f"out_dir={out_dir}",
        f"batch.steps={STEPS}",
        f"services.sampler={services['sampler'].target}",
        f"services.reward={services['reward'].target}",
        "services.ready_timeout_s=120",
        "services.retry_budget_s=120",
        "rollout.questions_per_step=3",
        "rollout.group_size=4",
        "rollout.max_new_tokens=12",
        "rollout.prompts_per_call=3",
        "batch.micro_batch_size=6",
        "optim.lr=5e-4",  # the digit writer shares one hidden state: a larger step collapses it
        "objective.supervision=process",
        "reward.kind=prm",
        "task.synthetic_problems=40",
        "checkpoint.every=1",
        "iterative.every=3",  # pi_ref is reset before step 4: resumed runs cross the boundary
        "eval.every=0",
        "metrics.progress_bar=off",
    ]


def events(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def run_trainer(
    command: list[str], stop_after: str | None = None, timeout_s: float = 240
) -> tuple[int, list[dict]]:
    """Runs the trainer; with `stop_after` (a regex of a stdout line) kills it with SIGKILL right
    after that line. Returns the exit code and its JSON events."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        lines.append(line)
        if stop_after and re.search(stop_after, line):
            process.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"trainer still running after {timeout_s}s; last lines: {lines[-5:]}")
    code = process.wait()
    return code, events(lines)


def step_losses(found: list[dict]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in found if e["event"] == "step"}


@pytest.fixture(scope="module")
def undisturbed(policy_dir, services, tmp_path_factory) -> list[dict]:
    code, found = run_trainer(trainer_command(policy_dir, tmp_path_factory.mktemp("clean"), services))
    assert code == 0
    return found


def test_undisturbed_run_learns_from_process_rewards_and_versions_every_step(undisturbed):
    steps = [e for e in undisturbed if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    versions = [int(e["weights_version"]) for e in steps]
    assert versions == list(range(versions[0], versions[0] + STEPS))  # v+1 after every update
    assert all(e["kl"] >= 0 for e in steps) and steps[1]["kl"] > 0  # the policy left pi_ref
    assert all(e["advantage_abs_mean"] > 0 for e in steps)  # step rewards gave a signal
    (reset,) = [e for e in undisturbed if e["event"] == "iteration"]
    assert reset["step"] == 3 and Path(reset["reference"]).is_dir()
    assert steps[2]["kl"] > 0 and steps[3]["kl"] == pytest.approx(0.0, abs=1e-6)  # pi_ref = the policy again
    for key in (
        "reward_std",
        "entropy",
        "clip_fraction",
        "response_length_mean",
        "tokens_per_s",
        "time_sampling_s",
        "time_scoring_s",
        "time_updating_s",
        "time_publishing_s",
    ):
        assert key in steps[0]


def test_services_killed_mid_run_are_waited_for_and_the_run_matches_an_undisturbed_one(
    policy_dir, services, undisturbed, tmp_path
):
    sampler, reward = services["sampler"], services["reward"]
    process = subprocess.Popen(
        trainer_command(policy_dir, tmp_path / "run", services),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=ENV,
        cwd=REPO,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if '"step": 1,' in line and '"event": "step"' in line:
            reward.kill()  # the trainer is about to score step 2 (its random RMs come back the same)
            reward.start()
        if '"step": 2,' in line and '"event": "step"' in line:
            sampler.kill()  # mid-run: the trainer is about to sample step 3
            time.sleep(1.0)
            sampler.start()  # back on the same port, serving its start-up weights (version 0)
    assert process.wait(timeout=240) == 0
    found = events(lines)
    assert step_losses(found) == pytest.approx(step_losses(undisturbed), abs=1e-6)
    assert [e["step"] for e in found if e["event"] == "step"] == list(range(1, STEPS + 1))
    last = [e for e in found if e["event"] == "step"][-1]
    assert last["service_recoveries"] >= 1  # it reloaded its policy into the restarted sampler


def test_trainer_killed_and_restarted_resumes_with_identical_losses(
    policy_dir, services, undisturbed, tmp_path
):
    command = trainer_command(policy_dir, tmp_path / "run", services)
    code, first = run_trainer(command, stop_after=r'"event": "checkpoint".*"step": 2,')
    assert code == -signal.SIGKILL
    code, second = run_trainer(command)
    assert code == 0
    resumed = [e for e in second if e["event"] == "resume"]
    assert resumed and resumed[0]["step"] == 2
    before, after = step_losses(first), step_losses(second)
    assert sorted(after) == list(range(3, STEPS + 1))  # no committed step is repeated, none is lost
    expected = step_losses(undisturbed)
    assert {**before, **after} == pytest.approx(expected, abs=1e-6)
