"""The RL questions with their reference answers, drawn in a seeded order that resumes exactly.

    pool = QuestionPool.from_config(config.task, seed=0)
    batch = pool.take(16)                       # the next 16 questions, epoch after epoch
    state = pool.state_dict(); pool.load_state_dict(state)

Each epoch visits every question once in an order fixed by (seed, epoch); `position` says where
the next batch starts, so a resumed run asks exactly the questions it would have asked.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from mathforge.training.synthetic_math import generate_problems


@dataclass(frozen=True)
class Question:
    """A question and its reference answer (what the rule reward grades against)."""

    question: str
    answer: str


def read_questions(path: str | Path) -> list[Question]:
    """Reads a JSONL file of {"question", "answer"} records; a bad line is an error naming it."""
    found: list[Question] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                found.append(Question(str(record["question"]), str(record["answer"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a {{question, answer}} record ({exc})") from None
    return found


def synthetic_questions(n: int, seed: int, difficulty: int, split: str = "train") -> list[Question]:
    """Synthetic arithmetic word problems (training or held-out split) as questions."""
    return [Question(p.question, p.answer) for p in generate_problems(n, seed, difficulty, split)]


def prompt_text(tokenizer: PreTrainedTokenizerBase, question: str, instruction: str) -> str:
    """The chat-formatted prompt the policy answers, ending where the assistant's reply begins."""
    content = f"{question}\n{instruction}" if instruction else question
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    return str(text)


class QuestionPool:
    """Every question once per epoch, in a seeded shuffled order; resumable."""

    def __init__(self, questions: list[Question], seed: int):
        if not questions:
            raise ValueError("the question pool is empty")
        self.questions = questions
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._epoch_order(0)

    @classmethod
    def from_config(cls, task: Any, seed: int) -> QuestionPool:
        questions = [q for path in task.paths for q in read_questions(path)]
        if task.synthetic_problems:
            questions += synthetic_questions(task.synthetic_problems, seed, task.synthetic_difficulty)
        return cls(questions, seed)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.questions)))
        random.Random(f"grpo-questions:{self.seed}:{epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list[Question]:
        """The next `n` questions, continuing into the next epoch when this one runs out."""
        batch: list[Question] = []
        while len(batch) < n:
            if self.position == len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._epoch_order(self.epoch)
            batch.append(self.questions[self._order[self.position]])
            self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "size": len(self.questions)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["size"] != len(self.questions):
            raise ValueError(
                f"the checkpoint's question pool had {state['size']} questions, this run has "
                f"{len(self.questions)}: resume with the same task settings"
            )
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._epoch_order(self.epoch)
