"""Held-out greedy accuracy of the served policy: greedy answers from the sampler, graded by the
reward service's rule verifier against the reference answers.

    accuracy = held_out_accuracy(link, tokenizer, questions, config)
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import Question, synthetic_questions
from mathforge.training.grpo.rollout import sample_groups, score_rollout
from mathforge.training.grpo.services import ServiceLink


def held_out_questions(config: GrpoConfig) -> list[Question]:
    """The synthetic test split: never a training question (the split is by question hash)."""
    difficulty = config.eval.difficulty or config.task.synthetic_difficulty
    return synthetic_questions(config.eval.problems, config.seed, difficulty, split="test")


def held_out_accuracy(
    link: ServiceLink, tokenizer: PreTrainedTokenizerBase, questions: Sequence[Question], config: GrpoConfig
) -> float:
    """The fraction of `questions` the served policy answers correctly with greedy decoding."""
    if not questions:
        return 0.0
    rollout = sample_groups(link, tokenizer, questions, config, seed=0, greedy=True)
    score_rollout(link, tokenizer, rollout, config, kind="rule")
    return sum(rollout.correct) / len(rollout.correct)
