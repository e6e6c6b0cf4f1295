"""The demo's reward-model held-out split keeps both classes (right and wrong solutions) whenever the
labels have both, so the ORM's held-out AUC is defined even for a policy that is rarely right."""

from __future__ import annotations

import json

from mathforge.demo.reward_stage import held_out_split, write_examples
from mathforge.reward.data import RewardExample


def orm_examples(right: int, wrong: int) -> list[RewardExample]:
    return [
        RewardExample(f"q{i}", f"r{i}", [1.0 if i < right else 0.0], reference="1")
        for i in range(right + wrong)
    ]


def test_rare_right_answers_still_reach_the_held_out_set():
    # 23 right of 128, as in a full run where an unstratified 1/8 held out none of them (a 1 in 30
    # chance per seed, so 200 seeds would catch a split that ignores the labels)
    for seed in range(200):
        train, held_out = held_out_split(orm_examples(23, 105), seed)
        labels = [e.labels[0] for e in held_out]
        assert 1.0 in labels and 0.0 in labels
        assert len(held_out) == 16 and len(train) == 112
        assert not {e.question for e in train} & {e.question for e in held_out}


def test_split_is_seeded_and_never_empties_a_class_from_training():
    examples = orm_examples(2, 10)
    assert held_out_split(examples, 3) == held_out_split(examples, 3)
    train, held_out = held_out_split(examples, 3)
    assert sum(e.labels[0] for e in train) == 1 and sum(e.labels[0] for e in held_out) == 1
    # one right answer only: it trains, and the held-out set is wrong answers
    train, held_out = held_out_split(orm_examples(1, 10), 0)
    assert sum(e.labels[0] for e in train) == 1 and all(e.labels[0] == 0 for e in held_out)


def test_prm_examples_split_by_whether_every_step_is_good(tmp_path):
    examples = [RewardExample(f"q{i}", f"r{i}", [1.0, 1.0 if i % 4 == 0 else 0.0]) for i in range(32)]
    train_path, held_path = write_examples(examples, "prm", tmp_path, seed=0)
    held = [json.loads(line)["step_labels"] for line in held_path.read_text().splitlines()]
    train = train_path.read_text().splitlines()
    assert len(held) + len(train) == 32
    assert [1.0, 1.0] in held and [1.0, 0.0] in held
