"""Off-policy GRPO parts without services: the on-policy update unchanged (losses recorded from the
loop before rollout sources and importance weights existed), truncated importance weights against
hand-computed values, the staleness bound, the overlapped source's schedule, and an engine told
which micro-step is the last."""

from __future__ import annotations

import copy
import math
import threading
import time

import pytest
import torch
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.config import config_from_mapping
from mathforge.training.distributed import DistEnv
from mathforge.training.engines import UnsyncedGradientsError, build_engine
from mathforge.training.grpo.advantages import outcome_advantages, process_token_advantages
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.logprobs import completion_logprobs, pack_outputs
from mathforge.training.grpo.loss import ClipConfig, token_terms, truncated_importance_weights
from mathforge.training.grpo.questions import Question
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.grpo.rollout_source import (
    OverlappedSource,
    StaleRolloutError,
    VersionRegistry,
    check_staleness,
)
from mathforge.training.grpo.update import UpdateSettings, policy_update

ENV = DistEnv(0, 0, 1, torch.device("cpu"))

# (loss, grad norm) of three consecutive steps, printed by this module's `_run_steps` on the code as
# it was before max_staleness existed (policy_update taking the whole config).
RECORDED = {
    "paper": [
        (7.450580596923828e-09, 5.7160515785217285),
        (0.0012098923325538635, 2.5895638465881348),
        (0.0026845932006835938, 2.9418625831604004),
    ],
    "mu2_minibatches_token": [
        (-0.15176328970119357, 4.064293652772903),
        (-0.26371520198881626, 2.5246773064136505),
        (0.04823799338191748, 2.158881299197674),
    ],
    "process": [
        (0.23808620870113373, 9.726387023925781),
        (-0.13328363001346588, 3.0253710746765137),
        (-0.06291939318180084, 3.0545411109924316),
    ],
}
CASES = {
    "paper": {"batch": {"micro_batch_size": 3}},
    "mu2_minibatches_token": {
        "objective": {"mu": 2, "updates_per_step": 2, "aggregation": "token", "clip_eps_high": 0.28},
        "batch": {"micro_batch_size": 3},
    },
    "process": {
        "objective": {"supervision": "process"},
        "reward": {"kind": "prm"},
        "batch": {"micro_batch_size": 8},
    },
}


@pytest.fixture(scope="module")
def tiny():
    tokenizer = default_tokenizer()
    return build_model("tiny", vocab_size=len(tokenizer), seed=1, pad_token_id=tokenizer.pad_token_id)


def _config(sections: dict) -> GrpoConfig:
    tree: dict = {
        "model": {"init_from": "/m"},
        "task": {"synthetic_problems": 10},
        "optim": {"lr": 1e-2},
        "rollout": {"questions_per_step": 2, "group_size": 4},
    }
    for key, value in sections.items():
        tree.setdefault(key, {}).update(value)
    return config_from_mapping(GrpoConfig, tree)


def _rollout(seed: int) -> Rollout:
    gen = torch.Generator().manual_seed(seed)
    prompts = [[1, 5, 9, 11], [1, 7, 3]]
    lengths = torch.randint(1, 7, (8,), generator=gen).tolist()
    outputs = [torch.randint(10, 200, (n,), generator=gen).tolist() for n in lengths]
    behaviour = [(-torch.rand(len(o), generator=gen) * 4).tolist() for o in outputs]
    rollout = Rollout(
        [Question("a", "1"), Question("b", "2")], 4, 1, prompts, outputs, behaviour, ["x"] * 8, [False] * 8
    )
    rollout.rewards = torch.rand(8, generator=gen).round()
    rollout.step_rewards = [torch.rand(2, generator=gen).tolist() for _ in outputs]
    rollout.step_ends = [[0, len(o) - 1] for o in outputs]
    return rollout


def _run_steps(tiny, config: GrpoConfig) -> list[tuple[float, float]]:
    policy, reference = copy.deepcopy(tiny), copy.deepcopy(tiny)
    engine = build_engine(config, policy, ENV)
    settings = UpdateSettings.from_config(config, off_policy=config.rollout.max_staleness > 0)
    found = []
    for step in range(3):
        rollout = _rollout(step)
        norm = config.objective.normalisation()
        if config.objective.supervision == "process":
            lengths = [len(c) for c in rollout.completion_ids]
            advantages = process_token_advantages(rollout.step_rewards, rollout.step_ends, lengths, 4, norm)
        else:
            advantages = outcome_advantages(rollout.rewards, 4, norm)
        stats = policy_update(engine, reference, rollout, advantages, settings, ENV, step_seed=step, pad_id=0)
        found.append((stats.loss, stats.grad_norm))
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_max_staleness_zero_gives_the_losses_recorded_before_the_change(tiny, case):
    found = _run_steps(tiny, _config(CASES[case]))
    for (loss, grad), (old_loss, old_grad) in zip(found, RECORDED[case], strict=True):
        assert loss == pytest.approx(old_loss, abs=1e-6)
        assert grad == pytest.approx(old_grad, abs=1e-5)


def test_truncated_importance_weights_equal_hand_computed_values():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.3]]))
    behaviour = torch.log(torch.tensor([[0.25, 0.4, 0.1]]))
    found = truncated_importance_weights(old, behaviour, cap=2.5)
    # pi_old / mu = 2.0, 0.5, 3.0 -> the last is capped at 2.5
    torch.testing.assert_close(found.weights, torch.tensor([[2.0, 0.5, 2.5]]))
    assert found.capped.tolist() == [[False, False, True]]
    with pytest.raises(ValueError, match="cap must be >= 1"):
        truncated_importance_weights(old, behaviour, cap=0.5)


def test_importance_weight_scales_the_surrogate_but_not_the_kl():
    logp = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    old = torch.log(torch.tensor([[0.4, 0.25]]))
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    clip = ClipConfig(0.2, 0.2, beta=0.1)
    weights = torch.tensor([[2.0, 0.5]])
    terms = token_terms(logp, old, ref, torch.tensor([1.0]), clip, weights)
    # token 0: r = 1.25, clipped to 1.2 (A > 0) -> surrogate 1.2; token 1: r = 1 -> surrogate 1
    kl = [0.0, 2.0 - math.log(2.0) - 1.0]
    expected = [-(2.0 * 1.2) + 0.1 * kl[0], -(0.5 * 1.0) + 0.1 * kl[1]]
    torch.testing.assert_close(terms.loss.detach(), torch.tensor([expected]))


def test_stale_samples_are_reweighted_even_when_pi_old_is_the_forward_pass(tiny):
    """mu = 1, one mini-batch: pi_old is the forward pass's own (ratio 1), yet samples whose sampler
    gave them a lower probability than pi_old are weighted up by pi_old / mu, capped."""
    rollout = _rollout(0)
    batch = pack_outputs([rollout.prompt_of(i) for i in range(rollout.size)], rollout.completion_ids, 0)
    with torch.no_grad():
        trainer_logp, _ = completion_logprobs(tiny, batch)
    # the sampler saw each token 1.5x less likely than the trainer's current policy does
    rollout.sampler_logprobs = [
        (trainer_logp[i, : len(ids)] - math.log(1.5)).tolist() for i, ids in enumerate(rollout.completion_ids)
    ]
    advantages = torch.tensor([1.0, -0.5, 0.25, 2.0, -1.0, 0.5, 1.5, -2.0])
    config = _config({"objective": {"beta": 0.0, "aggregation": "token"}, "batch": {"micro_batch_size": 3}})
    results = {}
    for name, settings in {
        "on": UpdateSettings.from_config(config, off_policy=False),
        "off": UpdateSettings.from_config(config, off_policy=True),  # cap 2.0
        "capped": UpdateSettings(ClipConfig(0.2, 0.2, 0.0), "token", 1, 1, 3, importance_cap=1.2),
    }.items():
        engine = build_engine(config, copy.deepcopy(tiny), ENV)
        results[name] = policy_update(engine, None, rollout, advantages, settings, ENV, step_seed=0, pad_id=0)
    on, off, capped = results["on"], results["off"], results["capped"]
    assert on.ratio_mean == pytest.approx(1.0) and off.ratio_mean == pytest.approx(1.0)
    assert off.importance_weight_mean == pytest.approx(1.5, abs=1e-4) and off.importance_capped_fraction == 0
    assert off.loss == pytest.approx(1.5 * on.loss, rel=1e-4) and on.loss != 0
    assert off.grad_norm == pytest.approx(1.5 * on.grad_norm, rel=1e-4)
    assert capped.importance_weight_mean == pytest.approx(1.2, abs=1e-4)
    assert capped.importance_capped_fraction == pytest.approx(1.0)
    assert capped.loss == pytest.approx(1.2 * on.loss, rel=1e-4)


def test_a_sample_older_than_the_bound_is_refused_naming_it():
    assert check_staleness([7, 6, 5], trainer_version=7, bound=2) == [0, 1, 2]
    with pytest.raises(
        StaleRolloutError, match=r"output 2 .* version 4, 3 versions behind .*; rollout.max_staleness is 2"
    ):
        check_staleness([7, 6, 4], trainer_version=7, bound=2)
    with pytest.raises(StaleRolloutError, match="newer than the trainer's"):
        check_staleness([8], trainer_version=7, bound=0)


def _tagged(batch: int, version: int) -> Rollout:
    rollout = Rollout(
        [Question(f"q{batch}", "1")], 2, version, [[1]], [[2], [3]], [[0.0], [0.0]], ["", ""], [False] * 2
    )
    rollout.batch = batch
    return rollout


@pytest.mark.parametrize("bound", [1, 2])
def test_overlapped_source_samples_ahead_but_never_past_the_bound(bound):
    versions = VersionRegistry()
    versions.publish(3, "/v3")
    started: list[tuple[int, int]] = []
    lock = threading.Lock()

    def collect(batch: int) -> Rollout:
        version = versions.current.version
        with lock:
            started.append((batch, version))
        time.sleep(0.01)
        return _tagged(batch, version)

    source = OverlappedSource(collect, versions, bound, first_batch=5, end_batch=11)
    try:
        for step in range(5, 11):
            rollout = source.next()
            assert rollout.batch == step
            trainer_version = versions.current.version
            staleness = check_staleness(rollout.output_versions(), trainer_version, bound)
            time.sleep(0.05)  # the trainer's update: the source fills its queue meanwhile
            with lock:
                ahead = max(b for b, _ in started) - step
            assert ahead <= bound and (step == 10 or ahead >= 1)  # it ran ahead, within the bound
            versions.publish(trainer_version + 1, f"/v{trainer_version + 1}")
        assert max(staleness) <= bound
    finally:
        source.close()
    assert [b for b, _ in started] == list(range(5, 11))  # each batch once, in order, none past the end
    for batch, version in started:
        assert version >= 3 + (batch - 5) - bound


def test_a_background_failure_reaches_the_trainer():
    versions = VersionRegistry()
    versions.publish(1, "/v1")

    def collect(batch: int) -> Rollout:
        raise ConnectionError(f"sampler gone at batch {batch}")

    source = OverlappedSource(collect, versions, 1, first_batch=0)
    try:
        with pytest.raises(RuntimeError, match="background sampling failed: sampler gone at batch 0"):
            source.next()
    finally:
        source.close()


def test_an_optimizer_step_before_the_marked_last_micro_step_is_an_error(tiny):
    config = _config({})
    engine = build_engine(config, copy.deepcopy(tiny), ENV)
    batch = pack_outputs([[1, 2]], [[3, 4]], 0)
    with engine.micro_step(last=False) as model:
        logp, _ = completion_logprobs(model, batch)
        engine.backward(logp.sum())
    with pytest.raises(UnsyncedGradientsError, match="not marked last"):
        engine.step()
    with engine.micro_step(last=True) as model:
        logp, _ = completion_logprobs(model, batch)
        engine.backward(logp.sum())
    assert engine.step() > 0
