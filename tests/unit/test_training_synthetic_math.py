"""The synthetic arithmetic word problems used by SFT, reward and GRPO demos."""

from __future__ import annotations

import re

import pytest
from mathforge.training.synthetic_math import generate_problems, to_messages


def test_same_arguments_give_the_same_problems():
    assert generate_problems(20, seed=3, difficulty=2) == generate_problems(20, seed=3, difficulty=2)
    assert generate_problems(20, seed=3) != generate_problems(20, seed=4)


def test_held_out_questions_never_appear_in_training_whatever_the_seed():
    train = {p.question for s in range(3) for p in generate_problems(100, seed=s, difficulty=2)}
    held_out = {p.question for p in generate_problems(60, seed=9, difficulty=2, split="test")}
    assert len(held_out) == 60
    assert not train & held_out


@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_solution_steps_are_correct_arithmetic_and_end_in_boxed_answer(difficulty):
    for problem in generate_problems(30, seed=1, difficulty=difficulty):
        lines = problem.solution.splitlines()
        assert len(lines) == difficulty + 2
        assert lines[-1] == f"The answer is \\boxed{{{problem.answer}}}."
        for a, op, b, c in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", problem.solution):
            assert eval(f"{a} {'//' if op == '/' else op} {b}") == int(c)
        printed: list[str] = []
        exec(problem.program, {"print": printed.append})
        assert [str(v) for v in printed] == [problem.answer]


def test_message_styles_put_the_answer_where_each_format_expects_it():
    problem = generate_problems(1, seed=0)[0]
    cot, pot, tool = (to_messages(problem, s) for s in ("cot", "pot", "tool"))
    assert cot[-1]["content"].endswith(f"\\boxed{{{problem.answer}}}.")
    assert pot[-1]["content"].startswith("```python\n") and "print(" in pot[-1]["content"]
    assert [m["role"] for m in tool] == ["user", "assistant", "tool", "assistant"]
    assert problem.answer in tool[2]["content"]


def test_bad_arguments_are_rejected_with_the_limit():
    with pytest.raises(ValueError, match=r"difficulty must be 1\.\.5"):
        generate_problems(1, difficulty=9)
    with pytest.raises(ValueError, match="split"):
        generate_problems(1, split="dev")
