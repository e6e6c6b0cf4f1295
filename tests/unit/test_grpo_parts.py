"""The GRPO trainer's parts without services: config checks, the resumable question order, PRM step
ends on policy tokens, version guards, weight publishing, and an update that does not depend on how
the batch is split into micro-batches."""

from __future__ import annotations

import copy

import pytest
import torch
from mathforge.models.checkpoint import load_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.config import ConfigError, config_from_mapping
from mathforge.training.distributed import DistEnv
from mathforge.training.engines import build_engine
from mathforge.training.grpo.advantages import outcome_advantages
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.publish import WeightPublisher
from mathforge.training.grpo.questions import Question, QuestionPool
from mathforge.training.grpo.rollout import Rollout, step_end_tokens
from mathforge.training.grpo.services import StaleSampleError, check_versions
from mathforge.training.grpo.update import UpdateSettings, policy_update
from mathforge.v1 import sampler_pb2

BASE = {"model": {"init_from": "/models/sft"}, "task": {"synthetic_problems": 10}}


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


@pytest.fixture(scope="module")
def tiny(tokenizer):
    return build_model("tiny", vocab_size=len(tokenizer), seed=1, pad_token_id=tokenizer.pad_token_id)


def _config(**sections) -> GrpoConfig:
    tree = copy.deepcopy(BASE)
    for key, value in sections.items():
        tree.setdefault(key, {}).update(value)
    return config_from_mapping(GrpoConfig, tree)


def test_paper_defaults_are_the_paper_numbers():
    config = _config()
    assert config.optim.lr == 1e-6 and config.objective.beta == 0.04 and config.objective.mu == 1
    assert config.rollout.group_size == 64 and config.rollout.max_new_tokens == 1024
    assert config.outputs_per_step == 1024 and config.objective.clip_eps == 0.2
    assert config.iterative.reward_model_lr == 2e-5 and config.iterative.replay_fraction == 0.1


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"rollout": {"group_size": 1}}, "rollout.group_size"),
        ({"rollout": {"temperature": 0}}, "rollout.temperature"),
        ({"objective": {"supervision": "process"}}, "reward.kind prm or mix"),
        ({"objective": {"aggregation": "sum"}}, "objective.aggregation"),
        ({"objective": {"clip_eps": 1.5}}, "eps_low"),
        ({"objective": {"updates_per_step": 3}}, "mini-batches"),
        ({"iterative": {"retrain_reward_model": True}}, "iterative.every"),
        ({"services": {"keep_versions": 1}}, "keep_versions"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(sections, message):
    with pytest.raises(ConfigError, match=message):
        _config(**sections)


def test_question_pool_resumes_at_the_same_question_across_epochs():
    questions = [Question(f"q{i}", str(i)) for i in range(5)]
    pool = QuestionPool(questions, seed=3)
    first = pool.take(7)
    assert sorted(q.question for q in first[:5]) == [f"q{i}" for i in range(5)]  # an epoch visits each once
    state = pool.state_dict()
    expected = pool.take(6)
    resumed = QuestionPool(questions, seed=3)
    resumed.load_state_dict(state)
    assert resumed.take(6) == expected
    with pytest.raises(ValueError, match="same task settings"):
        QuestionPool(questions[:4], seed=3).load_state_dict(state)


def test_step_ends_land_on_the_policy_token_holding_the_steps_last_character(tokenizer):
    text = "a = 12\nb = 30\nso \\boxed{42}"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    char_ends = [6, 13, len(text)]
    ends = step_end_tokens(tokenizer, ids, char_ends)
    for end, char_end in zip(ends, char_ends, strict=True):
        assert len(tokenizer.decode(ids[: end + 1])) >= char_end
        assert end == 0 or len(tokenizer.decode(ids[:end])) < char_end
    assert ends[-1] == len(ids) - 1


def test_a_completion_from_another_version_is_an_error_not_a_mix():
    response = sampler_pb2.GenerateResponse(
        results=[
            sampler_pb2.PromptResult(
                completions=[
                    sampler_pb2.Completion(sample_index=0, weights_version=4),
                    sampler_pb2.Completion(sample_index=1, weights_version=3),
                ]
            )
        ]
    )
    with pytest.raises(StaleSampleError, match="version 3, not the expected 4"):
        check_versions(response, 4)
    current = sampler_pb2.PromptResult(completions=[response.results[0].completions[0]])
    check_versions(sampler_pb2.GenerateResponse(results=[current]), 4)  # all from version 4: accepted


def test_published_versions_load_whole_and_old_ones_are_pruned(tiny, tokenizer, tmp_path):
    publisher = WeightPublisher(tmp_path / "published", keep=2)
    for version in (1, 2, 3):
        publisher.write(tiny, tokenizer, version)
    assert publisher.versions() == [2, 3]
    loaded, _ = load_model(publisher.path_of(3))
    assert torch.equal(loaded.state_dict()["lm_head.weight"], tiny.state_dict()["lm_head.weight"])
    assert not list((tmp_path / "published").glob(".*"))  # no staging leftovers


def _rollout(group: int) -> Rollout:
    gen = torch.Generator().manual_seed(0)
    prompts = [[1, 5, 9, 11], [1, 7, 3]]
    outputs = [torch.randint(10, 200, (int(n),), generator=gen).tolist() for n in (3, 5, 2, 4, 6, 1, 3, 2)]
    rollout = Rollout(
        [Question("a", "1"), Question("b", "2")],
        group,
        1,
        prompts,
        outputs,
        [[0.0] * len(o) for o in outputs],
        ["x"] * len(outputs),
        [False] * len(outputs),
    )
    rollout.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0])
    return rollout


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
def test_update_is_the_same_for_any_micro_batch_size(tiny, aggregation):
    env = DistEnv(0, 0, 1, torch.device("cpu"))
    rollout = _rollout(group=4)
    advantages = outcome_advantages(rollout.rewards, 4, _config().objective.normalisation())
    results = []
    for micro in (8, 3):
        config = _config(
            batch={"micro_batch_size": micro},
            optim={"lr": 1e-3},
            rollout={"questions_per_step": 2, "group_size": 4},
            objective={"aggregation": aggregation, "mu": 2},
        )
        policy, reference = copy.deepcopy(tiny), copy.deepcopy(tiny)
        engine = build_engine(config, policy, env)
        settings = UpdateSettings.from_config(config, off_policy=False)
        stats = policy_update(engine, reference, rollout, advantages, settings, env, step_seed=5, pad_id=0)
        results.append((stats, policy.state_dict()["model.layers.0.mlp.up_proj.weight"].clone()))
    (whole, whole_weights), (split, split_weights) = results
    assert whole.optimizer_steps == split.optimizer_steps == 2  # mu = 2 passes
    assert whole.loss == pytest.approx(split.loss, abs=1e-6)
    assert whole.kl == pytest.approx(split.kl, abs=1e-7) and whole.kl > 0  # the second pass moved off pi_ref
    torch.testing.assert_close(whole_weights, split_weights, atol=1e-6, rtol=0)
    assert not torch.equal(whole_weights, tiny.state_dict()["model.layers.0.mlp.up_proj.weight"])
