"""Iterative RL's reward-model half: policy samples recorded step by step, labelled by the rule
verifier, and the reward stage continuing the RM on the last iteration's samples with replay of the
older ones (DeepSeekMath §4), run as the real `python -m mathforge.reward.train` child process."""

from __future__ import annotations

import json

import pytest
import torch
from mathforge.models.checkpoint import save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.config import config_from_mapping
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.iterative import RewardModelTrainer, record_samples
from mathforge.training.grpo.questions import Question
from mathforge.training.grpo.rollout import Rollout

pytestmark = pytest.mark.slow


def _rollout(step: int) -> Rollout:
    questions = [Question(f"Ada has {step} apples and buys 2 more. How many now?", str(step + 2))]
    texts = [
        f"{step} + 2 = {step + 2}\nThe answer is \\boxed{{{step + 2}}}.",
        "I think \\boxed{0}.",
        "",  # a blank output: kept as a wrong answer for an ORM
        "y",
    ]
    rollout = Rollout(questions, 4, 1, [[1, 2]], [[5]] * 4, [[0.0]] * 4, texts, [False] * 4)
    rollout.rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    rollout.correct = [True, False, False, False]
    return rollout


def test_reward_model_is_continued_on_fresh_samples_with_replay(tmp_path):
    tokenizer = default_tokenizer()
    base = build_model(
        "tiny",
        vocab_size=len(tokenizer),
        seed=0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    rm_init = save_model(base, tokenizer, tmp_path / "rm-init")
    config = config_from_mapping(
        GrpoConfig,
        {
            "model": {"init_from": str(rm_init)},
            "task": {"synthetic_problems": 4},
            "engine": {"device": "cpu"},
            "iterative": {
                "every": 2,
                "retrain_reward_model": True,
                "reward_model_init": str(rm_init),
                "reward_model_steps": 2,
                "samples_per_question": 2,
                "reward_model_lr": 1e-3,
            },
        },
    )
    trainer = RewardModelTrainer(config, tmp_path / "run")
    for step in range(4):
        record_samples(trainer, _rollout(step), config, step)
    first = [json.loads(line) for line in trainer.sample_file(0).read_text().splitlines()]
    assert [row["correct"] for row in first] == [True, False]  # samples_per_question=2, rule labels
    assert first[0]["reference"] == "2"

    trainer.retrain(iteration=1, step=2)
    model_dir = trainer.retrain(iteration=2, step=4)
    assert (model_dir / "config.json").is_file() and list(model_dir.glob("*.safetensors"))
    effective = (model_dir.parent / "step-2" / "config.yaml").read_text()
    fresh = [json.loads(line) for line in trainer.labels_file(2).read_text().splitlines()]
    assert [row["correct"] for row in fresh] == [True, False, True, False]  # labelled samples of steps 2-3
    train_part, replay_part = effective.split("replay:")[:2]
    assert "iteration-2.jsonl" in train_part.split("train:")[1]
    assert "iteration-1.jsonl" in replay_part  # the earlier iteration is replayed
    assert "replay_share: 0.1" in effective
