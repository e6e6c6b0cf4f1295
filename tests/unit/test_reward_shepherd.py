"""Math-Shepherd labels: each step prefix is continued samples_per_step times, completions are graded
by the rule reward, hard and soft estimation, the last step labelled by the solution's own answer."""

from __future__ import annotations

import pytest
from mathforge.reward.shepherd import (
    ShepherdSettings,
    Solution,
    label_solutions,
    outcome_labels,
    policy_prompt,
    sample_solutions,
)

QUESTION = "Ada has 5 apples and buys 3, then doubles them. How many?"
RIGHT = "5 + 3 = 8\n8 * 2 = 16\nThe answer is \\boxed{16}."
WRONG = "5 - 3 = 2\n2 * 2 = 4\nThe answer is \\boxed{4}."


class ScriptedPolicy:
    """Continues a prefix with `right[prefix]` right completions out of n; records every call."""

    def __init__(self, right: dict[str, int]):
        self.right = right
        self.calls: list[tuple[list[str], int]] = []

    def __call__(self, prompts: list[str], n: int) -> list[list[str]]:
        self.calls.append((prompts, n))
        out = []
        for prompt in prompts:
            prefix = prompt.split("<|assistant|>\n", 1)[1]
            good = self.right.get(prefix, 0)
            out.append(["so \\boxed{16}."] * good + ["so \\boxed{99}."] * (n - good))
        return out


def test_hard_and_soft_labels_from_completions_of_each_step_prefix() -> None:
    policy = ScriptedPolicy({"5 + 3 = 8\n": 3, "5 + 3 = 8\n8 * 2 = 16\n": 4, "5 - 3 = 2\n": 1})
    solutions = [Solution(QUESTION, RIGHT, "16"), Solution(QUESTION, WRONG, "16")]
    hard = label_solutions(solutions, policy, ShepherdSettings(samples_per_step=4, estimation="hard"))
    assert [e.labels for e in hard] == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    soft = label_solutions(solutions, policy, ShepherdSettings(samples_per_step=4, estimation="soft"))
    assert [e.labels for e in soft] == [[0.75, 1.0, 1.0], [0.25, 0.0, 0.0]]
    assert (soft[0].question, soft[0].response, soft[0].reference) == (QUESTION, RIGHT, "16")
    # Every prefix but the last is continued, from the policy's chat prompt, 4 times.
    prompts, n = policy.calls[0]
    assert n == 4
    assert prompts == [
        policy_prompt(QUESTION, p)
        for p in ("5 + 3 = 8\n", "5 + 3 = 8\n8 * 2 = 16\n", "5 - 3 = 2\n", "5 - 3 = 2\n2 * 2 = 4\n")
    ]
    assert prompts[0].startswith("<s><|user|>\n" + QUESTION + "\n<|assistant|>\n")


def test_prompts_go_to_the_policy_in_batches_and_stepless_solutions_are_dropped() -> None:
    policy = ScriptedPolicy({})
    solutions = [Solution(QUESTION, RIGHT, "16")] * 5 + [Solution(QUESTION, "  \n", "16")]
    examples = label_solutions(solutions, policy, ShepherdSettings(samples_per_step=2, batch_prompts=3))
    assert len(examples) == 5
    assert [len(prompts) for prompts, _ in policy.calls] == [3, 3, 3, 1]


def test_a_policy_returning_the_wrong_number_of_samples_is_an_error() -> None:
    def short(prompts: list[str], n: int) -> list[list[str]]:
        return [["x"] * (n - 1) for _ in prompts]

    with pytest.raises(RuntimeError, match="samples"):
        label_solutions([Solution(QUESTION, RIGHT, "16")], short, ShepherdSettings(samples_per_step=3))


def test_sampled_solutions_and_outcome_labels() -> None:
    def policy(prompts: list[str], n: int) -> list[list[str]]:
        return [[f"try {k}: \\boxed{{{16 if k == 0 else k}}}" for k in range(n)] for _ in prompts]

    solutions = sample_solutions([(QUESTION, "16"), ("1+1?", "2")], policy, per_question=3)
    assert [s.response for s in solutions[:3]] == [
        "try 0: \\boxed{16}",
        "try 1: \\boxed{1}",
        "try 2: \\boxed{2}",
    ]
    assert [e.labels[0] for e in outcome_labels(solutions)] == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="estimation"):
        ShepherdSettings(estimation="median")
    with pytest.raises(ValueError, match="samples_per_step"):
        ShepherdSettings(samples_per_step=0)
