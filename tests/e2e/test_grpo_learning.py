"""GRPO raises held-out greedy accuracy above the SFT model it starts from: the demo's run in
miniature (DeepSeekMath §4), against real sampler and reward services on loopback.

A tiny Llama is fine-tuned on synthetic one-step arithmetic word problems (CoT) until it answers
about a third of the held-out problems, then trained with GRPO and rule rewards; the trainer's own
held-out evaluation (greedy answers from the sampler, graded by the reward service) must rise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mathforge.training.sft import main as sft_main

from tests.e2e.test_grpo_faults import REPO, Service, run_trainer

pytestmark = pytest.mark.slow

GRPO_STEPS = 40


@pytest.fixture(scope="module")
def sft_policy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft")
    code = sft_main(
        [
            "--config",
            str(REPO / "configs" / "tiny" / "sft.yaml"),
            f"out_dir={out}",
            "batch.steps=200",
            "batch.global_batch_tokens=2048",
            "data.styles=[cot]",
            "data.synthetic_difficulty=1",
            "data.synthetic_problems=2000",
            "checkpoint.every=1000",
            "metrics.progress_bar=off",
        ]
    )
    assert code == 0
    return out / "final"


def test_grpo_raises_held_out_greedy_accuracy_above_sft(sft_policy, tmp_path):
    sampler = Service("sampler", ["--model-path", str(sft_policy)], tmp_path)
    reward = Service("reward", ["--symbolic-workers", "1"], tmp_path)
    for service in (sampler, reward):
        service.start()
    try:
        code, found = run_trainer(
            [
                sys.executable,
                "-m",
                "mathforge.training.grpo",
                "--config",
                "configs/tiny/grpo.yaml",
                f"model.init_from={sft_policy}",
                f"out_dir={tmp_path / 'grpo'}",
                f"batch.steps={GRPO_STEPS}",
                f"services.sampler={sampler.target}",
                f"services.reward={reward.target}",
                "optim.lr=2e-4",
                f"eval.every={GRPO_STEPS}",
                "eval.problems=200",
                f"checkpoint.every={GRPO_STEPS}",
                "metrics.progress_bar=off",
            ],
            timeout_s=900,
        )
    finally:
        for service in (sampler, reward):
            service.stop()
    assert code == 0
    evals = {e["step"]: e["held_out_accuracy"] for e in found if e["event"] == "eval"}
    assert set(evals) == {0, GRPO_STEPS}
    assert 0.15 <= evals[0] <= 0.6, "the SFT model should leave RL room to improve"
    assert evals[GRPO_STEPS] >= evals[0] + 0.03
    steps = [e for e in found if e["event"] == "step"]
    assert steps[-1]["kl"] > 0 and steps[-1]["weights_version"] > steps[0]["weights_version"]
