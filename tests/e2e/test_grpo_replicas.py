"""GRPO over two sampler replicas (separate `mathforge serve` processes): the weights published over
the shared volume and over the collective give the same losses step for step, and with the
collective a replica killed mid-run and restarted loses no step and counts none twice; at the end
both replicas serve the trainer's final weights, checksum for checksum."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mathforge.models.checkpoint import load_model, save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.models.transfer import served_tensors, weights_checksum
from mathforge.runtime.clients.sampler import SamplerClient

from tests.e2e.test_grpo_faults import ENV, REPO, Service, events, run_trainer, step_losses, trainer_command

STEPS = 4


@pytest.fixture(scope="module")
def replicas(policy_dir, tmp_path_factory) -> Iterator[dict[str, Service]]:
    logs = tmp_path_factory.mktemp("replica-logs")
    started = {
        "a": Service("sampler", ["--model-path", str(policy_dir)], logs),
        "b": Service("sampler", ["--model-path", str(policy_dir)], logs),
        "reward": Service("reward", ["--random-model-preset", "tiny", "--symbolic-workers", "1"], logs),
    }
    for service in started.values():
        service.start()
    yield started
    for service in started.values():
        service.stop()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    tokenizer = default_tokenizer()
    model = build_model(
        "tiny",
        vocab_size=len(tokenizer),
        seed=3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model(model, tokenizer, tmp_path_factory.mktemp("policy") / "sft")


def command(policy_dir: Path, out: Path, replicas: dict[str, Service], sync: str) -> list[str]:
    base = trainer_command(policy_dir, out, {"sampler": replicas["a"], "reward": replicas["reward"]})
    return [
        *base,
        f"batch.steps={STEPS}",
        f"services.sampler={replicas['a'].target},{replicas['b'].target}",
        f"services.weight_sync={sync}",
        "services.weight_sync_port=0",
        "services.weight_sync_host=127.0.0.1",
        "services.weight_sync_timeout_s=60",
        "rollout.questions_per_step=4",
        "rollout.prompts_per_call=1",  # four Generate calls a step, over two replicas
        "batch.micro_batch_size=8",
    ]


@pytest.mark.slow
def test_volume_and_collective_publishing_agree_and_a_replica_lost_mid_run_costs_nothing(
    policy_dir, replicas, tmp_path
):
    code, volume = run_trainer(command(policy_dir, tmp_path / "volume", replicas, "volume"))
    assert code == 0
    expected = step_losses(volume)
    assert sorted(expected) == list(range(1, STEPS + 1))

    process = subprocess.Popen(
        command(policy_dir, tmp_path / "collective", replicas, "collective"),
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
            replicas["a"].kill()  # as step 2 starts sampling: its calls move to b
            # the trainer waits while a restarts (seconds), so that a is back before the run ends
            process.send_signal(signal.SIGSTOP)
            replicas["a"].start()  # with its start-up weights: it rejoins at the next publish
            SamplerClient(replicas["a"].target).wait_ready(120)
            process.send_signal(signal.SIGCONT)
    assert process.wait(timeout=300) == 0
    found = events(lines)
    assert step_losses(found) == pytest.approx(expected, abs=1e-6)
    steps = [e for e in found if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))

    final, _ = load_model(str(tmp_path / "collective" / "final"))
    checksum = weights_checksum(served_tensors(final))
    deadline = time.monotonic() + 30
    for name in ("a", "b"):
        client = SamplerClient(replicas[name].target)
        client.wait_ready(max(1.0, deadline - time.monotonic()))
        served = client.policy()
        assert served.version == int(steps[-1]["weights_version"])
        assert served.checksum == checksum
