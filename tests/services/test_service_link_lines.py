"""Two trainers' ServiceLinks sharing one real sampler and one real reward service, each on its own
line (services.policy_line): the same version numbers on both lines, each run sampling its own
weights, one run's reward model invisible to the other, and a run whose sampler or reward line was
evicted brought back (reloaded from its path) like a replica that restarted."""

from __future__ import annotations

from pathlib import Path

import pytest
from mathforge.reward.model import init_reward_model, save_reward_model
from mathforge.reward.service import Config as RewardConfig
from mathforge.reward.service import create_service as create_reward
from mathforge.runtime.server import ServerThread
from mathforge.sampler.service import Config as SamplerConfig
from mathforge.sampler.service import create_service as create_sampler
from mathforge.training.grpo.config import ServicesConfig
from mathforge.training.grpo.services import ServiceLink
from mathforge.v1 import reward_pb2, sampler_pb2

from tests.e2e.policies import tiny_policy

GREEDY = sampler_pb2.SamplingParams(n=1, temperature=0.0, max_tokens=8)
PROMPTS = ["What is 2+2? Answer:", "Solve x + 3 = 5."]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "start": tiny_policy(root / "start", 0),
        "a": tiny_policy(root / "a", 1),
        "b": tiny_policy(root / "b", 2),
        "prm": save_reward_model(init_reward_model("prm", "tiny", seed=3), root / "prm"),
        "prm_retrained": save_reward_model(init_reward_model("prm", "tiny", seed=4), root / "prm-2"),
    }


def _link(sampler: ServerThread, reward: ServerThread, line: str) -> ServiceLink:
    config = ServicesConfig(
        sampler=sampler.target, reward=reward.target, policy_line=line, retry_budget_s=60, ready_timeout_s=60
    )
    return ServiceLink(config)


def _tokens(link: ServiceLink) -> tuple[set[int], list[tuple[int, ...]]]:
    response = link.generate(PROMPTS, GREEDY)
    completions = [r.completions[0] for r in response.results]
    return {c.weights_version for c in completions}, [tuple(c.token_ids) for c in completions]


def _score(link: ServiceLink) -> reward_pb2.RewardResponse:
    items = [reward_pb2.RewardItem(question="1+1?", response="1 + 1 = 2.\nThe answer is 2.", reference="2")]
    return link.score(reward_pb2.RewardRequest(items=items, kind=reward_pb2.REWARD_PRM))


def test_two_runs_share_the_services_on_their_own_lines(models):
    sampler_config = SamplerConfig(port=0, metrics_port=-1, model_path=str(models["start"]), max_lines=1)
    reward_config = RewardConfig(
        port=0, metrics_port=-1, prm_path=str(models["prm"]), symbolic_workers=1, max_lines=1
    )
    with (
        ServerThread(create_sampler(sampler_config)) as sampler,
        ServerThread(create_reward(reward_config)) as reward,
    ):
        a, b = _link(sampler, reward, "a-seed0"), _link(sampler, reward, "b-seed0")
        try:
            a.wait_ready()
            assert a.served_policy_version() == 0 and b.served_policy_version() == 0
            a.load_policy(1, str(models["a"]))
            versions, on_a = _tokens(a)
            assert versions == {1}
            # b's line is loaded next: with --max-lines 1 that evicts a's line (idle between calls)
            b.load_policy(1, str(models["b"]))
            versions, on_b = _tokens(b)
            assert versions == {1} and on_b != on_a
            # a's next call finds its line gone, and the link reloads it from a's published path
            versions, again = _tokens(a)
            assert versions == {1} and again == on_a and a.recoveries == 1
            assert a.served_policy_version() == 1

            before = _score(b)
            assert dict(before.model_versions) == {"prm": 0}
            assert a.load_reward_model("prm", 1, str(models["prm_retrained"])) == 1
            mine = _score(a)
            assert dict(mine.model_versions) == {"prm": 1}
            assert mine.results[0].reward != pytest.approx(before.results[0].reward, abs=1e-6)
            after = _score(b)
            assert dict(after.model_versions) == {"prm": 0}
            assert after.results[0].reward == pytest.approx(before.results[0].reward, abs=1e-6)
            assert b.served_reward_version("prm") == 0 and a.served_reward_version("prm") == 1
            # b loads a PRM of its own: with --max-lines 1 a's line goes, and a's next Score (which
            # the default PRM would answer) has the link reload a's model first
            b.load_reward_model("prm", 1, str(models["prm"]))
            recoveries = a.recoveries
            again = _score(a)
            assert dict(again.model_versions) == {"prm": 1} and a.recoveries == recoveries + 1
            assert again.results[0].reward == pytest.approx(mine.results[0].reward, abs=1e-6)
        finally:
            a.close()
            b.close()


def test_a_malformed_policy_line_is_refused_before_any_call():
    with pytest.raises(ValueError, match=r"services\.policy_line"):
        ServiceLink(ServicesConfig(policy_line="../other-run"))
