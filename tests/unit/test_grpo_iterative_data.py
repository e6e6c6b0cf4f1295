"""Iterative RL's reward-model data: fresh PRM samples labelled the Math-Shepherd way (the outcome
proxy only on request), replay from all earlier data including the RM's original training set, and
blank or unfinished outputs that neither crash a retraining nor count as right."""

from __future__ import annotations

import json

import pytest
import torch
from mathforge.reward.data import read_examples
from mathforge.training.config import config_from_mapping
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.iterative import RewardModelTrainer, record_samples
from mathforge.training.grpo.questions import Question
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.grpo.unfinished import settle_unfinished

QUESTION = "Ada has 5 apples and buys 3, then doubles them. How many?"
RIGHT = "5 + 3 = 8\n8 * 2 = 16\nThe answer is \\boxed{16}."
WRONG = "5 + 3 = 8\n8 * 2 = 15\nThe answer is \\boxed{15}."


def _config(tmp_path, **iterative):
    values = {
        "every": 2,
        "retrain_reward_model": True,
        "reward_model_init": str(tmp_path / "rm"),
        "reward_model_kind": "prm",
        "samples_per_question": 4,
        "shepherd_samples_per_step": 2,
        **iterative,
    }
    return config_from_mapping(
        GrpoConfig,
        {
            "model": {"init_from": str(tmp_path / "sft")},
            "task": {"synthetic_problems": 4},
            "iterative": values,
        },
    )


def _rollout(texts, truncated=None, correct=None) -> Rollout:
    rollout = Rollout(
        [Question(QUESTION, "16")],
        len(texts),
        1,
        [[1]],
        [[5]] * len(texts),
        [[0.0]] * len(texts),
        list(texts),
        truncated or [False] * len(texts),
    )
    rollout.correct = correct if correct is not None else ["\\boxed{16}" in t for t in texts]
    rollout.rewards = torch.tensor([1.0 if c else 0.0 for c in rollout.correct])
    return rollout


def continue_after_first_step(prompts: list[str], n: int) -> list[list[str]]:
    """A policy that finishes right from the first step's prefix and wrong from any later one."""
    return [["so \\boxed{16}." if p.endswith("= 8\n") else "so \\boxed{0}."] * n for p in prompts]


def _record(trainer, config, rollout, steps=(0, 1)):
    for step in steps:
        record_samples(trainer, rollout, config, step)


def test_prm_samples_are_labelled_per_step_by_continuations_not_by_the_outcome(tmp_path):
    config = _config(tmp_path)
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout([WRONG, RIGHT]))
    data = trainer.prepare(iteration=1, step=2, complete=continue_after_first_step)
    examples = read_examples(data.train[0], "prm")
    wrong = [e.labels for e in examples if e.response == WRONG]
    # the first step can still reach 16: labelled good although the final answer is wrong
    assert wrong == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert next(e.labels for e in examples if e.response == RIGHT) == [1.0, 0.0, 1.0]


def test_the_outcome_proxy_is_a_named_option(tmp_path):
    config = _config(tmp_path, labels="outcome")
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout([WRONG, RIGHT]))
    examples = read_examples(trainer.prepare(iteration=1, step=2).train[0], "prm")
    assert sorted(e.labels for e in examples)[0] == [0.0, 0.0, 0.0]
    assert sorted(e.labels for e in examples)[-1] == [1.0, 1.0, 1.0]


def test_shepherd_labels_need_the_policy(tmp_path):
    config = _config(tmp_path)
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout([WRONG, RIGHT]))
    with pytest.raises(ValueError, match="completer"):
        trainer.prepare(iteration=1, step=2)


def test_replay_draws_on_the_original_training_set_and_every_earlier_iteration(tmp_path):
    reward_yaml = tmp_path / "reward.yaml"
    reward_yaml.write_text("seed: 3\nreward:\n  kind: prm\ndata:\n  synthetic_train: 12\n")
    config = _config(tmp_path, labels="outcome", reward_model_config=str(reward_yaml))
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout([WRONG, RIGHT]), steps=(0, 1, 2, 3))
    first = trainer.prepare(iteration=1, step=2)
    assert first.replay == [str(trainer.original_file)] and first.share == 0.1  # replay from the start
    assert len(read_examples(trainer.original_file, "prm")) == 12
    second = trainer.prepare(iteration=2, step=4)
    assert second.replay == [str(trainer.original_file), str(trainer.labels_file(1))]
    assert second.train == [str(trainer.labels_file(2))]


def test_blank_outputs_do_not_break_a_prm_retraining_nor_its_resume(tmp_path):
    config = _config(tmp_path)
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout(["", "   \n", RIGHT, WRONG]))
    # a sample file written before: one step label for a response with no step
    legacy = {"question": QUESTION, "response": "", "reference": "16", "step_labels": [0.0]}
    trainer.sample_file(1).write_text(json.dumps(legacy) + "\n")
    data = trainer.prepare(iteration=1, step=2, complete=continue_after_first_step)
    examples = read_examples(data.train[0], "prm")
    assert sorted(e.response for e in examples) == sorted([RIGHT, WRONG])
    assert all(len(e.labels) == 3 for e in examples)


def test_only_blank_outputs_is_a_clear_error(tmp_path):
    config = _config(tmp_path)
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout(["", " "]))
    with pytest.raises(ValueError, match="no usable samples"):
        trainer.prepare(iteration=1, step=2, complete=continue_after_first_step)


def test_an_output_cut_at_the_token_limit_is_recorded_wrong_and_its_cut_step_is_bad(tmp_path):
    config = _config(tmp_path)
    trainer = RewardModelTrainer(config, tmp_path / "run")
    cut = RIGHT + " and then"
    _record(trainer, config, _rollout([cut, WRONG], truncated=[True, False]))
    rows = [json.loads(line) for line in trainer.sample_file(0).read_text().splitlines()]
    assert [(r["correct"], r["truncated"]) for r in rows] == [(False, True), (False, False)]
    examples = read_examples(
        trainer.prepare(iteration=1, step=2, complete=continue_after_first_step).train[0], "prm"
    )
    assert next(e.labels for e in examples if e.response == cut)[-1] == 0.0


def test_orm_samples_keep_blank_outputs_as_wrong_answers(tmp_path):
    config = _config(tmp_path, reward_model_kind="orm")
    trainer = RewardModelTrainer(config, tmp_path / "run")
    _record(trainer, config, _rollout(["", RIGHT]))
    examples = read_examples(trainer.prepare(iteration=1, step=2).train[0], "orm")
    assert sorted((e.response, e.labels[0]) for e in examples)[:2] == [("", 0.0), ("", 0.0)]


def test_unfinished_outputs_score_as_the_worst_of_their_group():
    rollout = _rollout([RIGHT, RIGHT + " and", "", WRONG], truncated=[False, True, False, False])
    rollout.rewards = torch.tensor([0.9, 0.8, 0.3, 0.2])  # an ORM's scores: it liked the cut one
    rollout.step_rewards = [[0.9, 0.9, 0.9], [0.9, 0.9, 0.7], [], [0.9, 0.4, 0.2]]
    assert settle_unfinished(rollout) == 2
    assert rollout.rewards.tolist() == pytest.approx([0.9, 0.2, 0.2, 0.2])
    assert rollout.correct == [True, False, False, False]
    assert rollout.step_rewards == [[0.9, 0.9, 0.9], [0.9, 0.9, 0.2], [], [0.9, 0.4, 0.2]]
