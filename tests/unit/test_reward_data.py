"""Reward training data: line formats and their errors, replay at the configured share, a resumable
order, and the synthetic examples' labels."""

from __future__ import annotations

import json

import pytest
from mathforge.evaluator.grading import grade
from mathforge.reward.data import (
    DataError,
    ExampleOrder,
    RewardExample,
    mix_replay,
    read_examples,
    write_examples,
)
from mathforge.reward.steps import step_texts
from mathforge.reward.synthetic import synthetic_examples


def _examples(n: int, tag: str) -> list[RewardExample]:
    return [RewardExample(f"{tag} question {i}", f"{tag} answer {i}", [float(i % 2)]) for i in range(n)]


@pytest.mark.parametrize(
    ("fresh", "history", "share"), [(900, 5000, 0.1), (450, 1000, 0.1), (200, 200, 0.25)]
)
def test_replay_mixes_the_configured_share_of_historical_data(fresh: int, history: int, share: float) -> None:
    mix = mix_replay(_examples(fresh, "new"), _examples(history, "old"), share, seed=1)
    old = [e for e in mix.examples if e.question.startswith("old")]
    assert mix.fresh == fresh and mix.replayed == len(old)
    assert len(old) / len(mix.examples) == pytest.approx(share, abs=0.5 / len(mix.examples) + 1e-9)
    assert len({e.question for e in old}) == len(old)  # drawn without replacement
    again = mix_replay(_examples(fresh, "new"), _examples(history, "old"), share, seed=1)
    assert again.examples == mix.examples
    other_seed = mix_replay(_examples(fresh, "new"), _examples(history, "old"), share, seed=2)
    assert other_seed.examples != mix.examples


def test_replay_uses_all_history_when_there_is_too_little_and_none_at_share_zero() -> None:
    assert mix_replay(_examples(100, "new"), _examples(3, "old"), 0.5).replayed == 3
    assert mix_replay(_examples(100, "new"), _examples(50, "old"), 0.0).replayed == 0
    with pytest.raises(ValueError, match="share"):
        mix_replay(_examples(1, "new"), [], 1.0)


def test_examples_round_trip_and_bad_lines_name_file_and_line(tmp_path) -> None:
    orm = [RewardExample("q", "r", [1.0], reference="3"), RewardExample("q2", "r2", [0.25])]
    write_examples(tmp_path / "orm.jsonl", orm, "orm")
    assert read_examples(tmp_path / "orm.jsonl", "orm") == orm
    prm = [RewardExample("q", "a\nb", [1.0, 0.0])]
    write_examples(tmp_path / "prm.jsonl", prm, "prm")
    assert read_examples(tmp_path / "prm.jsonl", "prm") == prm
    bad = tmp_path / "bad.jsonl"
    for line, message in [
        ('{"question": "q", "response": "r"}', "needs 'correct'"),
        ('{"question": "q", "response": "r", "label": 1.5}', "not a boolean or a number in"),
        ('{"question": 3, "response": "r", "correct": true}', "'question' is missing"),
        ("not json", "not JSON"),
    ]:
        bad.write_text('{"question": "q", "response": "r", "correct": false}\n' + line + "\n")
        with pytest.raises(DataError, match=message) as info:
            read_examples(bad, "orm")
        assert "bad.jsonl:2" in str(info.value)
    bad.write_text(json.dumps({"question": "q", "response": "r", "step_labels": []}) + "\n")
    with pytest.raises(DataError, match="step_labels"):
        read_examples(bad, "prm")


def test_example_order_resumes_exactly_and_reshuffles_each_epoch() -> None:
    order = ExampleOrder(10, seed=4)
    first = order.take(7)
    state = order.state_dict()
    rest = order.take(13)
    resumed = ExampleOrder(10, seed=4)
    resumed.load_state_dict(state)
    assert resumed.take(13) == rest
    assert sorted(first + rest[:3]) == list(range(10))
    assert rest[3:13] != first + rest[:3]
    with pytest.raises(DataError, match="examples"):
        ExampleOrder(11).load_state_dict(state)


def test_synthetic_labels_match_the_rule_reward_and_the_broken_step() -> None:
    prm = synthetic_examples("prm", 200, seed=0, difficulty=3)
    orm = synthetic_examples("orm", 200, seed=0, difficulty=3)
    assert [e.response for e in prm] == [e.response for e in orm]
    wrong = 0
    for p, o in zip(prm, orm, strict=True):
        assert len(p.labels) == len(step_texts(p.response))
        assert o.labels == [p.labels[-1]]
        assert (o.labels[0] == 1.0) == grade(o.response, o.reference).equivalent
        assert p.labels == sorted(p.labels, reverse=True)  # once wrong, never right again
        wrong += o.labels[0] == 0.0
    assert 60 <= wrong <= 140
    held_out = {e.question for e in synthetic_examples("orm", 50, seed=0, split="test")}
    assert not held_out & {e.question for e in orm}
