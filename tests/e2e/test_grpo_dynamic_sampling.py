"""Dynamic sampling (DAPO) against real sampler and reward servers on loopback: groups whose rewards
are all equal are dropped and refilled from fresh questions, up to the cap on extra draws; a batch
left short by the cap still trains.

The policy is a tiny model set to answer "7" or "x" with even odds whatever it is asked, and stop;
every question's answer is 7: a group of two is all right or all wrong (all equal) about half the
time.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from mathforge.models.checkpoint import load_model, save_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.reward.service import Config as RewardConfig
from mathforge.reward.service import create_service as create_reward
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config as SamplerConfig
from mathforge.sampler.service import create_service as create_sampler
from mathforge.training.config import config_from_mapping
from mathforge.training.distributed import DistEnv
from mathforge.training.engines import build_engine
from mathforge.training.grpo.advantages import outcome_advantages
from mathforge.training.grpo.batches import BatchCollector, signal_groups
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.questions import QuestionPool
from mathforge.training.grpo.services import LoadedModel, ServiceLink
from mathforge.training.grpo.update import UpdateSettings, policy_update

pytestmark = pytest.mark.slow
QUESTIONS = 4


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    """A coin that then stops: no layer writes to the residual stream, so the next token depends on
    the last one only. Every token embeds as e0 except "7" and "x", which embed as e1 (orthogonal to
    e0); the head maps e0 to "7" or "x" with even odds and e1 to end-of-sequence. So each answer is
    "7" or "x", finished."""
    tokenizer = default_tokenizer()
    model = build_model(
        "tiny",
        vocab_size=len(tokenizer),
        seed=3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    answers = [tokenizer.encode(text, add_special_tokens=False)[0] for text in ("7", "x")]
    with torch.no_grad():
        embeddings = model.model.embed_tokens.weight
        e0 = embeddings[5].clone()  # (row 0 is the zero padding row)
        e1 = embeddings[6] - embeddings[6].dot(e0) / e0.dot(e0) * e0
        embeddings.copy_(e0.expand_as(embeddings))
        embeddings[answers] = e1
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = model.model(input_ids=torch.tensor([[1, 2, 3, answers[0]]])).last_hidden_state[0]
        h0, h1 = hidden[-2], hidden[-1]
        model.lm_head.weight.zero_()
        for token in answers:
            model.lm_head.weight[token] = 12.0 * h0 / h0.dot(h0)  # logit 12 after e0, 0 after e1
        model.lm_head.weight[tokenizer.eos_token_id] = 12.0 * h1 / h1.dot(h1)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("policy") / "coin")


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "questions.jsonl"
    lines = [
        json.dumps({"question": f"Question {i}: what is {i} - {i} + 7?", "answer": "7"}) for i in range(80)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def link(policy_dir, questions):
    sampler = ServerThread(create_sampler(SamplerConfig(port=0, metrics_port=-1, model_path=str(policy_dir))))
    reward = ServerThread(create_reward(RewardConfig(port=0, metrics_port=-1, symbolic_workers=1)))
    with sampler, reward:
        config = _config(policy_dir, questions, max_extra_draws=0)
        config.services.sampler, config.services.reward = sampler.target, reward.target
        service_link = ServiceLink(config.services)
        service_link.wait_ready()
        service_link.policy = LoadedModel(0, str(policy_dir))  # the sampler's start-up weights
        yield service_link
        service_link.close()


def _config(policy_dir, questions, max_extra_draws: int) -> GrpoConfig:
    return config_from_mapping(
        GrpoConfig,
        {
            "model": {"init_from": str(policy_dir)},
            "task": {"paths": [str(questions)]},
            "batch": {"micro_batch_size": 4},
            "rollout": {
                "questions_per_step": QUESTIONS,
                "group_size": 2,
                "max_new_tokens": 2,
                "prompts_per_call": 8,
                "dynamic_sampling": True,
                "max_extra_draws": max_extra_draws,
            },
            "reward": {"kind": "rule"},
            "objective": {"beta": 0.0},
        },
    )


def _collector(link, policy_dir, questions, max_extra_draws: int) -> BatchCollector:
    config = _config(policy_dir, questions, max_extra_draws)
    pool = QuestionPool.from_config(config.task, config.seed)
    return BatchCollector(pool, link, link, default_tokenizer(), config)


def test_dropped_groups_are_refilled_until_the_batch_is_full(link, policy_dir, questions):
    collect = _collector(link, policy_dir, questions, max_extra_draws=20)
    rollout = collect(batch=0)
    assert len(rollout.questions) == QUESTIONS and rollout.size == QUESTIONS * 2
    assert signal_groups(rollout) == list(range(QUESTIONS))  # every group kept carries a signal
    assert rollout.rewards.sum() == QUESTIONS  # one right answer in each kept group of two
    assert rollout.dropped_groups > 0  # the task drops about half: refills did happen
    assert rollout.sampled_groups == QUESTIONS + rollout.dropped_groups
    assert rollout.pool_state["position"] == rollout.sampled_groups  # every draw came from the pool
    assert len({q.question for q in rollout.questions}) == QUESTIONS


def test_the_cap_on_extra_draws_leaves_a_short_batch_that_still_trains(link, policy_dir, questions):
    collect = _collector(link, policy_dir, questions, max_extra_draws=0)
    rollout = collect(batch=1)
    kept = len(rollout.questions)
    assert 0 < kept < QUESTIONS  # flat groups dropped, none refilled
    assert rollout.sampled_groups == QUESTIONS and rollout.dropped_groups == QUESTIONS - kept
    config = collect.config
    env = DistEnv(0, 0, 1, torch.device("cpu"))
    policy, _ = load_model(str(policy_dir), dtype="float32")
    before = copy.deepcopy(policy.state_dict())
    engine = build_engine(config, policy, env)  # built for the configured batch of 4 groups
    advantages = outcome_advantages(rollout.rewards, 2, config.objective.normalisation())
    settings = UpdateSettings.from_config(config, off_policy=False)
    stats = policy_update(engine, None, rollout, advantages, settings, env, step_seed=0, pad_id=0)
    assert stats.optimizer_steps == 1 and stats.grad_norm > 0
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
