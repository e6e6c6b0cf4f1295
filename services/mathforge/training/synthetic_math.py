"""Generates chain-of-thought arithmetic word problems, deterministically, with a train/held-out split.

    from mathforge.training.synthetic_math import generate_problems, to_messages
    train = generate_problems(200, seed=0, difficulty=2)                  # split="train"
    held_out = generate_problems(50, seed=0, difficulty=2, split="test")  # never a training question
    messages = to_messages(train[0], style="cot")                         # or "pot", "tool"

A problem is a short story over one quantity (buy, give away, multiply, share equally); its solution
has one line per step and ends with the answer in \\boxed{}. The split is decided by a hash of the
question text, so a held-out question is never a training question whatever the seeds.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
POT_INSTRUCTION = "Write a Python program that prints the answer."
STYLES = ("cot", "pot", "tool")
SPLITS = ("train", "test")
HELD_OUT_PERCENT = 20

_NAMES = [
    "Ada",
    "Ben",
    "Chen",
    "Dana",
    "Eli",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
]
_ITEMS = [
    "apples",
    "marbles",
    "stickers",
    "books",
    "pencils",
    "cookies",
    "stamps",
    "coins",
    "shells",
    "cards",
    "oranges",
    "balloons",
]
_FRIENDS = ["a friend", "a neighbour", "a cousin", "a classmate", "the teacher", "a sister"]


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, a step-per-line solution ending in \\boxed{answer}, the answer,
    and a Python program that prints the answer (for program-of-thought data)."""

    question: str
    solution: str
    answer: str
    program: str = ""
    steps: tuple[str, ...] = field(default=())


def _split_of(question: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "big") % 100
    return "test" if bucket < HELD_OUT_PERCENT else "train"


def _one_problem(rng: random.Random, difficulty: int) -> Problem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    top = 10 * difficulty + 10
    value = rng.randint(2, top)
    story = [f"{name} has {value} {item}."]
    steps = [f"{name} starts with {value} {item}."]
    code = [f"{item} = {value}"]
    for _ in range(difficulty):
        kind = rng.choice(("buy", "give", "times", "share"))
        if kind == "give" and value < 2:
            kind = "buy"
        if kind == "share":
            divisors = [k for k in range(2, 6) if value % k == 0]
            if not divisors:
                kind = "times"
        if kind == "buy":
            amount = rng.randint(1, top)
            story.append(f"Then {name} buys {amount} more {item}.")
            total = value + amount
            steps.append(f"After buying {amount} more, {name} has {value} + {amount} = {total} {item}.")
            code.append(f"{item} = {item} + {amount}")
            value += amount
        elif kind == "give":
            amount = rng.randint(1, value - 1)
            story.append(f"Then {name} gives {amount} {item} to {rng.choice(_FRIENDS)}.")
            left = value - amount
            steps.append(f"After giving {amount} away, {name} has {value} - {amount} = {left} {item}.")
            code.append(f"{item} = {item} - {amount}")
            value -= amount
        elif kind == "times":
            factor = rng.randint(2, 4)
            story.append(f"Then the number of {item} {name} has becomes {factor} times as large.")
            steps.append(f"Multiplying by {factor} gives {value} * {factor} = {value * factor} {item}.")
            code.append(f"{item} = {item} * {factor}")
            value *= factor
        else:
            parts = rng.choice(divisors)
            story.append(f"Then {name} splits the {item} into {parts} equal groups and keeps one group.")
            steps.append(f"One of {parts} equal groups is {value} / {parts} = {value // parts} {item}.")
            code.append(f"{item} = {item} // {parts}")
            value //= parts
    question = " ".join(story) + f" How many {item} does {name} have now?"
    answer = str(value)
    steps.append(f"The answer is \\boxed{{{answer}}}.")
    program = "\n".join([*code, f"print({item})"])
    return Problem(question, "\n".join(steps), answer, program, tuple(steps))


def generate_problems(n: int, seed: int = 0, difficulty: int = 2, split: str = "train") -> list[Problem]:
    """Returns `n` distinct problems of `split` ("train" or "test"), the same list for the same
    arguments. `difficulty` (1-5) is the number of operations in each story."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= difficulty <= 5:
        raise ValueError(f"difficulty must be 1..5, got {difficulty}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"synthetic-math:{seed}:{difficulty}")
    problems: list[Problem] = []
    seen: set[str] = set()
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 200 * (n + 10):
            raise ValueError(f"could not find {n} distinct {split} problems at difficulty {difficulty}")
        problem = _one_problem(rng, difficulty)
        if problem.question in seen or _split_of(problem.question) != split:
            continue
        seen.add(problem.question)
        problems.append(problem)
    return problems


def to_messages(problem: Problem, style: str = "cot") -> list[dict[str, str]]:
    """The problem as a chat: chain-of-thought ("cot"), program-of-thought ("pot": a program whose
    printed output is the answer) or tool-integrated ("tool": reasoning, code, its output, answer)."""
    if style == "cot":
        return [
            {"role": "user", "content": f"{problem.question}\n{INSTRUCTION}"},
            {"role": "assistant", "content": problem.solution},
        ]
    if style == "pot":
        return [
            {"role": "user", "content": f"{problem.question}\n{POT_INSTRUCTION}"},
            {"role": "assistant", "content": f"```python\n{problem.program}\n```"},
        ]
    if style == "tool":
        return [
            {"role": "user", "content": f"{problem.question}\n{INSTRUCTION}"},
            {"role": "assistant", "content": f"Let me compute it.\n```python\n{problem.program}\n```"},
            {"role": "tool", "content": f"```output\n{problem.answer}\n```"},
            {
                "role": "assistant",
                "content": f"The program prints {problem.answer}. The answer is \\boxed{{{problem.answer}}}.",
            },
        ]
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")
