"""The rule reward is the evaluator's grader: same verdicts on the evaluator's own cases and on the
benchmark fixtures, 1/0 rewards, and the optional format penalty."""

from __future__ import annotations

from pathlib import Path

import pytest
from mathforge.evaluator.benchmarks import load_benchmark
from mathforge.evaluator.grading import GradingPolicy, grade
from mathforge.reward.rule import rule_reward, rule_rewards

from tests.unit.test_evaluator_equivalence import EQUIVALENT, NOT_EQUIVALENT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


def _as_output(answer: str) -> str:
    return f"Let me work through it.\nSo the final answer is $\\boxed{{{answer}}}$."


@pytest.mark.parametrize(("pred", "gold"), EQUIVALENT + NOT_EQUIVALENT)
def test_rule_reward_agrees_with_the_evaluator_on_its_cases(pred: str, gold: str) -> None:
    for response in (pred, _as_output(pred)):
        verdict = grade(response, gold)
        score = rule_reward(response, gold)
        assert score.correct == verdict.equivalent
        assert score.reward == (1.0 if verdict.equivalent else 0.0)
        assert score.extracted_answer == verdict.pred_answer
        assert score.reason == verdict.reason


def test_rule_reward_agrees_with_the_evaluator_on_benchmark_fixtures() -> None:
    pairs = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for item in load_benchmark(path):
            pairs.append((_as_output(item.answer), item.answer))
            pairs.append((_as_output(item.answer + "1"), item.answer))
            if item.solution:
                pairs.append((item.solution, item.answer))
    assert len(pairs) > 20
    scores = rule_rewards(pairs)
    verdicts = [grade(response, gold) for response, gold in pairs]
    assert [s.correct for s in scores] == [v.equivalent for v in verdicts]
    assert sum(s.correct for s in scores) >= 10
    assert any(not s.correct for s in scores)


def test_format_penalty_applies_only_without_an_extractable_answer() -> None:
    policy = GradingPolicy(last_number_fallback=False)
    rambling = "I tried several approaches and could not finish the computation in time, sorry about that."
    no_answer = rule_reward(rambling, "12", policy, format_penalty=0.25)
    assert no_answer.extracted_answer == ""
    assert no_answer.reward == pytest.approx(-0.25)
    wrong = rule_reward("so the answer is \\boxed{13}", "12", policy, format_penalty=0.25)
    assert (wrong.reward, wrong.correct, wrong.extracted_answer) == (0.0, False, "13")
    right = rule_reward("so the answer is \\boxed{12}", "12", policy, format_penalty=0.25)
    assert (right.reward, right.correct) == (1.0, True)


def test_policy_is_passed_through_to_the_grader() -> None:
    strict = GradingPolicy(percent="strict")
    assert rule_reward("\\boxed{50\\%}", "50").correct
    assert not rule_reward("\\boxed{50\\%}", "50", strict).correct
