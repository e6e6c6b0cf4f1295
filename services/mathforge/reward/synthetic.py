"""Reward-model training data from the synthetic arithmetic problems, with right and wrong solutions
and exact per-step labels (for tests, the tiny configs and the demo).

    examples = synthetic_examples("orm", 512, seed=0)              # correct in half of them
    examples = synthetic_examples("prm", 512, seed=0, split="test")

A wrong solution applies the wrong operation in one step (buying becomes taking away, multiplying
becomes adding...) and carries the wrong number through every later step to the boxed answer, the
kind of slip a weak policy makes. A step's label is what Math-Shepherd estimates with a perfect
completer: 1 when the running value after that step is still the true one (so the right answer is
still reachable), else 0.
"""

from __future__ import annotations

import random
import re

from mathforge.reward.data import RewardExample
from mathforge.training.synthetic_math import Problem, generate_problems

_OPERATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
_ANSWER = re.compile(r"\\boxed\{[^}]*\}")
_WRONG_OPS = {"+": ("-", "*"), "-": ("+", "*"), "*": ("+", "-"), "/": ("*", "-")}


def _apply(left: int, op: str, right: int) -> int:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return left // right


def _running_values(lines: list[str]) -> list[int | None]:
    """The value after each line that computes one (None for lines that do not)."""
    values: list[int | None] = []
    for line in lines:
        match = _OPERATION.search(line)
        values.append(int(match[4]) if match else None)
    return values


def corrupt_solution(problem: Problem, rng: random.Random) -> tuple[str, list[float]] | None:
    """A wrong solution of `problem` and its per-step labels, or None when the chosen step cannot be
    made wrong (no other operation keeps a non-negative integer, or the slip cancels out)."""
    lines = problem.solution.split("\n")
    ops = [i for i, line in enumerate(lines) if _OPERATION.search(line)]
    if not ops:
        return None
    truth = _running_values(lines)
    broken = rng.choice(ops)
    new_lines = list(lines)
    running: int | None = None
    for i, line in enumerate(lines):
        match = _OPERATION.search(line)
        if match is None:
            continue
        left, op, right = int(match[1]), match[2], int(match[3])
        if running is not None:
            left = running
        if i == broken:
            choices = [w for w in _WRONG_OPS[op] if _apply(left, w, right) >= 0]
            choices = [w for w in choices if _apply(left, w, right) != _apply(left, op, right)]
            if not choices:
                return None
            op = rng.choice(choices)
        if i >= broken:
            value = _apply(left, op, right)
            new_lines[i] = f"{line[: match.start()]}{left} {op} {right} = {value}{line[match.end() :]}"
            running = value
    final = running
    if str(final) == problem.answer:
        return None  # the slip cancelled out: not a wrong solution
    new_lines[-1] = _ANSWER.sub(lambda _: f"\\boxed{{{final}}}", new_lines[-1])
    labels: list[float] = []
    still_right = True
    for i in range(len(lines)):
        if truth[i] is not None and i >= broken:
            current = _running_values([new_lines[i]])[0]
            still_right = still_right and current == truth[i]
        labels.append(1.0 if still_right else 0.0)
    return "\n".join(new_lines), labels


def synthetic_examples(
    kind: str, n: int, seed: int = 0, split: str = "train", difficulty: int = 1, wrong_share: float = 0.5
) -> list[RewardExample]:
    """`n` labelled examples of `kind` ("orm": one label per response, "prm": one per line), about
    `wrong_share` of them wrong, the same list for the same arguments."""
    rng = random.Random(f"reward-synthetic:{seed}:{split}:{difficulty}")
    examples: list[RewardExample] = []
    for problem in generate_problems(n, seed=seed, difficulty=difficulty, split=split):
        response, labels = problem.solution, [1.0] * len(problem.steps)
        if rng.random() < wrong_share:
            wrong = corrupt_solution(problem, rng)
            if wrong is not None:
                response, labels = wrong
        outcome = [labels[-1]] if kind == "orm" else labels
        examples.append(RewardExample(problem.question, response, outcome, reference=problem.answer))
    return examples
