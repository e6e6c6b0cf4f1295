"""GRPO checkpoints resume on another number of processes and another engine, against real sampler
and reward services on loopback (gloo, CPU):

- 2 processes under ZeRO-3 (policy and pi_ref created partitioned, each process reading its share)
  train steps 1-2; the run resumes on 1 process under DDP for steps 3-4;
- 1 process under DDP trains steps 1-2; the run resumes on 2 processes under ZeRO-3 for steps 3-4,
  crossing an iterative-RL boundary (pi_ref reloaded partitioned from the saved policy).

Each is compared with one uninterrupted 1-process DDP run of 4 steps:
- the questions of every step (the whole global batch, a digest per question, in order): equal;
- what the sampler returned (reward mean, response tokens, accuracy): equal. The sampling seed of
  each Generate call is a function of its first question's place in the global batch and the
  processes' shares are whole calls (2 of 4 questions, prompts_per_call=2), so the same weights
  sample the same outputs whatever the world size;
- loss, KL and grad norm: to TOLERANCE. They are sums over the same global batch in another order
  (processes, micro-batches, ZeRO's buckets);
- the AdamW moments saved at step 4: to TOLERANCE. A resume that reset them instead (or dropped the
  step count) would differ by far more (a fresh AdamW's first update has another size).
The 1-process continuation is first stopped by Ctrl-C during step 3 and rerun: GRPO stops between
steps like the other stages, and the rerun repeats step 3 from the step-2 checkpoint.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.e2e.policies import digit_writer
from tests.e2e.test_grpo_faults import ENV, REPO, Service, trainer_command

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4
SAMPLED = ("reward_mean", "response_tokens", "accuracy", "outputs")
COMPUTED = ("loss", "kl", "grad_norm")
RUN_ENV = {**ENV, "DS_ACCELERATOR": "cpu", "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}
ZERO3 = ["engine.kind=deepspeed", "engine.deepspeed_config=configs/deepspeed/zero3.json"]
SETTINGS = [
    "rollout.questions_per_step=4",
    "rollout.prompts_per_call=2",
    "batch.micro_batch_size=8",
    "checkpoint.every=2",
    "checkpoint.keep_last=0",
    "iterative.every=2",  # pi_ref is reset to the policy before step 3, in every resumed run
]


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


def grpo_command(services: dict[str, Service], policy_dir: Path, out: Path, processes: int, *overrides: str):
    """The GRPO trainer's command line (under torchrun when processes > 1)."""
    command = trainer_command(policy_dir, out, services)
    replaced = {arg.split("=", 1)[0] for arg in [*SETTINGS, *overrides]}
    command = [arg for arg in command if arg.split("=", 1)[0] not in replaced]
    if processes > 1:
        module = command.index("-m")
        command[module : module + 1] = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
        ]
    return [*command, *SETTINGS, *overrides]


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"event"')]


def grpo(
    services: dict[str, Service], policy_dir: Path, out: Path, processes: int, *overrides: str
) -> list[dict]:
    """Runs the GRPO trainer to its end; returns its JSON events."""
    command = grpo_command(services, policy_dir, out, processes, *overrides)
    done = subprocess.run(command, cwd=REPO, env=RUN_ENV, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return events(done.stdout)


def interrupted_after(command: list[str], line: str) -> tuple[int, list[dict], str]:
    """Runs the trainer and sends SIGINT (Ctrl-C) once stdout shows `line`; returns its exit code,
    events and stderr."""
    run = subprocess.Popen(
        command, cwd=REPO, env=RUN_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert run.stdout is not None
    seen = []
    for text in run.stdout:
        seen.append(text)
        if line in text:
            run.send_signal(signal.SIGINT)
            break
    out, err = run.communicate(timeout=120)
    return run.returncode, events("".join(seen) + out), err


def steps(found: list[dict]) -> dict[int, dict]:
    return {e["step"]: e for e in found if e["event"] == "step"}


def questions(found: list[dict]) -> dict[int, list[str]]:
    return {e["step"]: e["questions"] for e in found if e["event"] == "batch"}


def moments(step_dir: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted((step_dir / "train_state").glob("*.safetensors")):
        found.update({k: v for k, v in load_file(str(path)).items() if k.startswith("exp_avg")})
    return found


def assert_reference(found: list[dict], partitioned: bool, loads: int) -> None:
    """pi_ref was loaded `loads` times; partitioned: rank 0 held about half of it, else all."""
    references = [e for e in found if e["event"] == "reference"]
    assert len(references) == loads
    for event in references:
        assert event["partitioned"] == partitioned
        if partitioned:
            assert event["held"] <= event["elements"] // 2 + 1000  # a partition, padded
        else:
            assert event["held"] == event["elements"]


def assert_like(resumed: list[dict], straight: list[dict], at: range) -> None:
    assert {s: q for s, q in questions(resumed).items() if s in at} == {s: questions(straight)[s] for s in at}
    mine, theirs = steps(resumed), steps(straight)
    assert sorted(s for s in mine if s in at) == list(at)
    for step in at:
        assert {k: mine[step][k] for k in SAMPLED} == {k: theirs[step][k] for k in SAMPLED}, step
        for key in COMPUTED:
            assert mine[step][key] == pytest.approx(theirs[step][key], abs=TOLERANCE), (step, key)


@pytest.fixture(scope="module")
def straight(services, policy_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("straight") / "run"
    return out, grpo(services, policy_dir, out, 1)


def test_two_zero3_processes_resume_on_one_ddp_process(services, policy_dir, straight, tmp_path):
    straight_out, straight_events = straight
    out = tmp_path / "run"
    first = grpo(services, policy_dir, out, 2, *ZERO3, "batch.steps=2")
    assert len(questions(first)[1]) == 4  # the batch event lists both processes' questions
    assert_reference(first, partitioned=True, loads=1)
    assert_like(first, straight_events, range(1, 3))
    # Ctrl-C in step 3 (it begins with the iteration boundary): the run stops after that step, its
    # step-2 checkpoint intact, and says so.
    command = grpo_command(services, policy_dir, out, 1)
    code, stopped, err = interrupted_after(command, '"event": "iteration"')
    assert code == 128 + signal.SIGINT, err[-3000:]
    assert [(e["step"], e["resume_step"]) for e in stopped if e["event"] == "interrupted"] == [(3, 2)]
    assert "interrupted at step 3; rerun the same command to resume from step 2" in err
    second = grpo(services, policy_dir, out, 1)
    (resume,) = [e for e in second if e["event"] == "resume"]
    assert resume["step"] == 2 and resume["from_world_size"] == 2
    assert [e["iteration"] for e in second if e["event"] == "iteration"] == [1]
    assert_reference(second, partitioned=False, loads=2)  # at the start, and reset at iteration 1
    assert_like(second, straight_events, range(3, 5))
    expected, found = moments(straight_out / "step-4"), moments(out / "step-4")
    assert sorted(found) == sorted(expected) and found
    for name, value in expected.items():
        assert float((found[name] - value).abs().max()) <= TOLERANCE, name  # type: ignore[operator]
    trained = [q for step in sorted(questions(second)) for q in questions(second)[step]]
    trained = [q for s in (1, 2) for q in questions(first)[s]] + trained
    assert len(trained) == len(set(trained)) == 16  # every question once, none lost or repeated


def test_one_ddp_process_resumes_on_two_zero3_processes(services, policy_dir, straight, tmp_path):
    straight_out, straight_events = straight
    out = tmp_path / "run"
    # The straight run's first half, as a run stopped after its step-2 checkpoint.
    shutil.copytree(straight_out / "step-2", out / "step-2")
    (out / "latest").write_text("step-2\n")
    resumed = grpo(services, policy_dir, out, 2, *ZERO3)
    (resume,) = [e for e in resumed if e["event"] == "resume"]
    assert resume["step"] == 2 and resume["from_world_size"] == 1
    assert [e["iteration"] for e in resumed if e["event"] == "iteration"] == [1]
    assert_reference(resumed, partitioned=True, loads=2)
    assert_like(resumed, straight_events, range(3, 5))
    assert (out / "final" / "model.safetensors").is_file()
