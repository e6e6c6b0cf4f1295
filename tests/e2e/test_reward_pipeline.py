"""The reward-model recipe end to end on CPU: `mathforge reward label` samples solutions and step
continuations from a real sampler service and labels them the Math-Shepherd way; a 2-process torchrun
(gloo) trains a PRM on those labels plus replayed history; the Reward service loads the result with
LoadModel and scores steps with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mathforge.cli import main as mathforge_main
from mathforge.reward.data import read_examples, write_examples
from mathforge.reward.service import Config as RewardConfig
from mathforge.reward.service import create_service as create_reward
from mathforge.reward.steps import step_texts
from mathforge.reward.synthetic import synthetic_examples
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.reward import RewardClient
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config as SamplerConfig
from mathforge.sampler.service import create_service as create_sampler
from mathforge.training.synthetic_math import generate_problems

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_label_with_the_sampler_train_with_torchrun_and_serve(tmp_path) -> None:
    problems = generate_problems(6, seed=3, difficulty=1)
    rows = [{"question": p.question, "reference": p.answer} for p in problems[:3]]
    rows += [{"question": p.question, "response": p.solution, "reference": p.answer} for p in problems[3:]]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = tmp_path / "prm-labels.jsonl"
    with ServerThread(create_sampler(SamplerConfig(port=0, metrics_port=-1))) as sampler:
        code = mathforge_main(
            [
                "reward",
                "label",
                "--input",
                str(questions),
                "--output",
                str(labels),
                "--sampler",
                sampler.target,
                "--kind",
                "prm",
                "--solutions-per-question",
                "2",
                "--samples-per-step",
                "2",
                "--max-tokens",
                "12",
                "--estimation",
                "soft",
            ]
        )
    assert code == 0
    labelled = read_examples(labels, "prm")
    given = [e for e in labelled if e.response in {p.solution for p in problems[3:]}]
    assert len(given) == 3 and all(e.labels[-1] == 1.0 for e in given)  # their own answers are right
    for example in labelled:
        assert len(example.labels) == len(step_texts(example.response))
        assert all(label in (0.0, 0.5, 1.0) for label in example.labels)  # soft: 0, 1 or 2 of 2 right

    history = tmp_path / "history.jsonl"
    write_examples(history, synthetic_examples("prm", 40, seed=9), "prm")
    out = tmp_path / "prm"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "services"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "mathforge.reward.train",
            "--config",
            "configs/tiny/reward-prm.yaml",
            f"out_dir={out}",
            f"data.train=[{labels}]",
            f"data.replay=[{history}]",
            "data.replay_share=0.25",
            "data.synthetic_eval=0",
            "batch.steps=4",
            "batch.micro_batch_size=2",
            "reward.examples_per_step=8",
            "checkpoint.every=2",
            "metrics.progress_bar=off",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert events[0]["world_size"] == 2
    assert "replay:" in run.stderr and "historical" in run.stderr
    assert (out / "step-4").is_dir() and (out / "latest").read_text().strip() == "step-4"

    with (
        ServerThread(create_reward(RewardConfig(port=0, metrics_port=-1))) as reward,
        RewardClient(reward.target, timeout_s=60, retry=NO_RETRY) as client,
    ):
        assert client.load_model("prm", 1, str(out / "final")) >= 0
        result = client.score([(problems[0].question, problems[0].solution, problems[0].answer)], "prm")
        assert result.model_versions == {"prm": 1}
        (item,) = result.items
        assert len(item.steps) == len(problems[0].steps)
        assert all(0.0 <= s.reward <= 1.0 for s in item.steps)
        assert client.info().details["prm_path"] == str(out / "final")
