"""Reward-model training: an ORM trained for a few hundred steps separates right from wrong answers
on held-out problems; a PRM run resumed from its checkpoint continues with the same losses; the
result loads as a reward model."""

from __future__ import annotations

import json

import pytest
from mathforge.reward.data import RewardExample, write_examples
from mathforge.reward.model import load_reward_model
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.reward.trainer import roc_auc, run_training
from mathforge.training.config import ConfigError, config_from_mapping


def _config(tmp_path, kind: str, **sections) -> RewardTrainConfig:
    tree = {
        "out_dir": str(tmp_path / kind),
        "model": {"preset": "tiny"},
        "optim": {"lr": 1e-3, "weight_decay": 0.0},
        "batch": {"seq_len": 256, "micro_batch_size": 8, "steps": 200},
        "engine": {"device": "cpu"},
        "checkpoint": {"every": 1000},
        "metrics": {"progress_bar": "off", "log_every": 50},
        "reward": {"kind": kind, "examples_per_step": 16, "eval_every": 0},
        "data": {"synthetic_train": 1500, "synthetic_eval": 200, "synthetic_difficulty": 1},
    }
    for section, values in sections.items():
        tree.setdefault(section, {}).update(values)
    return config_from_mapping(RewardTrainConfig, tree)


def test_roc_auc_counts_ties_half() -> None:
    assert roc_auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    assert roc_auc([0.2, 0.9, 0.4, 0.1], [1, 0, 1, 0]) == 0.5


def test_orm_separates_right_from_wrong_answers_on_held_out_problems(tmp_path, capsys) -> None:
    result = run_training(_config(tmp_path, "orm"))
    final = result.evals[-1]
    with capsys.disabled():
        print(f"\nORM held-out AUC after 200 steps: {final['auc']:.3f} (accuracy {final['accuracy']:.3f})")
    assert final["auc"] >= 0.8
    assert sum(result.losses[-20:]) / 20 < sum(result.losses[:20]) / 20
    model = load_reward_model(result.final, expect_kind="orm")
    assert model.kind == "orm" and not model.random_weights
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line["event"] == "eval" and line["auc"] == final["auc"] for line in lines)


def test_prm_resumed_from_a_checkpoint_continues_with_the_same_losses(tmp_path) -> None:
    short = {
        "batch": {"steps": 6, "micro_batch_size": 4},
        "reward": {"examples_per_step": 8},
        "data": {"synthetic_train": 64, "synthetic_eval": 0, "synthetic_difficulty": 2},
    }
    straight = run_training(_config(tmp_path / "a", "prm", **short, checkpoint={"every": 3}))
    first_half = _config(
        tmp_path / "b",
        "prm",
        **{**short, "batch": {"steps": 3, "micro_batch_size": 4}},
        checkpoint={"every": 3},
    )
    run_training(first_half)
    resumed = run_training(_config(tmp_path / "b", "prm", **short, checkpoint={"every": 3}))
    assert len(resumed.losses) == 3
    assert resumed.losses == pytest.approx(straight.losses[3:], abs=1e-6)
    prm = load_reward_model(resumed.final, expect_kind="prm")
    assert prm.step_separator == "\n"


def test_prm_labels_that_do_not_match_the_steps_are_an_error_naming_the_line(tmp_path) -> None:
    data = tmp_path / "prm.jsonl"
    write_examples(
        data, [RewardExample("q", "one\ntwo", [1.0, 0.0]), RewardExample("q", "one\ntwo", [1.0])], "prm"
    )
    config = _config(tmp_path, "prm", data={"train": [str(data)], "synthetic_train": 0, "synthetic_eval": 0})
    with pytest.raises(ValueError, match=r"prm.jsonl:2: 1 step labels but the response has 2 steps"):
        run_training(config)


def test_config_defaults_follow_the_paper_and_bad_values_are_rejected(tmp_path) -> None:
    defaults = RewardTrainConfig()
    assert defaults.optim.lr == 2e-5 and defaults.data.replay_share == 0.1
    with pytest.raises(ConfigError, match="replay_share"):
        _config(tmp_path, "orm", data={"replay_share": 1.0})
    with pytest.raises(ConfigError, match=r"reward\.kind"):
        _config(tmp_path, "value")
    with pytest.raises(ConfigError, match="examples_per_step 10 is not a multiple"):
        _config(tmp_path, "orm", reward={"examples_per_step": 10}).accumulation_steps(1)
