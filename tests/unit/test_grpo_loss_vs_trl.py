"""Our GRPO loss and gradients against TRL's own `GRPOTrainer._compute_loss` on the same inputs.

TRL's method is called unbound on a minimal stand-in for the trainer that carries just the
attributes the loss path reads; its model forward is replaced by our fixed log-probabilities, so both
sides differentiate the same leaf tensor.
"""

from __future__ import annotations

import collections
import types

import pytest
import torch
from mathforge.training.grpo.advantages import Normalisation, outcome_advantages
from mathforge.training.grpo.loss import ClipConfig, aggregate, token_terms
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd

GROUP = 4
QUESTIONS = 3
N, T = GROUP * QUESTIONS, 7


class _Accelerator:
    num_processes = 1
    sync_gradients = True

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather_for_metrics = gather


def _trl_stand_in(logp: torch.Tensor, loss_type: str, beta: float, eps_low: float, eps_high: float):
    stand_in = types.SimpleNamespace(
        loss_type=loss_type,
        beta=beta,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        aux_loss_enabled=False,
        use_vllm=False,
        _entropy_bonus_enabled=False,
        current_gradient_accumulation_steps=1,
        max_completion_length=T,
        model=types.SimpleNamespace(training=True),
        accelerator=_Accelerator(),
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None),
        _metrics={"train": collections.defaultdict(list)},
    )
    stand_in._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(logp), None)
    return stand_in


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(N, T, generator=gen) * 3
    logp = (old + torch.randn(N, T, generator=gen) * 0.3).requires_grad_(True)
    ref = old + torch.randn(N, T, generator=gen) * 0.2
    lengths = torch.randint(2, T + 1, (N,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    rewards = torch.randint(0, 2, (N,), generator=gen).float() + torch.rand(N, generator=gen) * 0.1
    return logp, old, ref, mask, rewards


def _trl_loss(logp, old, ref, mask, advantages, loss_type="grpo", beta=0.04, eps_low=0.2, eps_high=0.2):
    stand_in = _trl_stand_in(logp, loss_type, beta, eps_low, eps_high)
    inputs = {
        "prompt_ids": torch.zeros(N, 2, dtype=torch.long),
        "prompt_mask": torch.ones(N, 2, dtype=torch.long),
        "completion_ids": torch.zeros(N, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    loss = GRPOTrainer._compute_loss(stand_in, None, inputs)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad, stand_in._metrics["train"]


def _our_loss(logp, old, ref, mask, advantages, aggregation="sequence", beta=0.04, eps_low=0.2, eps_high=0.2):
    terms = token_terms(logp, old, ref, advantages, ClipConfig(eps_low, eps_high, beta))
    loss = aggregate(terms.loss, mask, aggregation)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad, terms


def _trl_group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """TRL's scale_rewards="group" advantage: (r - group mean) / (nanstd + 1e-4), via TRL's nanstd."""
    grouped = rewards.view(-1, GROUP)
    mean = grouped.mean(dim=1).repeat_interleave(GROUP)
    std = nanstd(grouped, dim=1).repeat_interleave(GROUP)
    return (rewards - mean) / (std + 1e-4)


def test_loss_and_gradient_equal_trl_grpo_with_trl_normalisation():
    logp, old, ref, mask, rewards = _inputs()
    advantages = outcome_advantages(rewards, GROUP, Normalisation(std_estimator="sample", std_eps=1e-4))
    torch.testing.assert_close(advantages, _trl_group_advantages(rewards), atol=1e-5, rtol=0)
    trl_loss, trl_grad, _ = _trl_loss(logp, old, ref, mask, advantages)
    our_loss, our_grad, _ = _our_loss(logp, old, ref, mask, advantages)
    assert abs(float(our_loss - trl_loss)) < 1e-5
    torch.testing.assert_close(our_grad, trl_grad, atol=1e-5, rtol=0)
    assert float(trl_grad.abs().sum()) > 0


def test_clip_higher_equals_trl_epsilon_high():
    logp, old, ref, mask, rewards = _inputs(seed=1)
    advantages = outcome_advantages(rewards, GROUP, Normalisation())
    trl_loss, trl_grad, metrics = _trl_loss(logp, old, ref, mask, advantages, eps_low=0.2, eps_high=0.28)
    our_loss, our_grad, terms = _our_loss(logp, old, ref, mask, advantages, eps_low=0.2, eps_high=0.28)
    assert abs(float(our_loss - trl_loss)) < 1e-5
    torch.testing.assert_close(our_grad, trl_grad, atol=1e-5, rtol=0)
    region = float((terms.clipped.float() * mask).sum() / mask.sum())
    assert region == pytest.approx(metrics["clip_ratio/region_mean"][0], abs=1e-6)
    assert region > 0  # the random ratios do reach the clipped region


def test_token_mean_aggregation_equals_trl_bnpo():
    logp, old, ref, mask, rewards = _inputs(seed=2)
    advantages = outcome_advantages(rewards, GROUP, Normalisation())
    trl_loss, trl_grad, _ = _trl_loss(logp, old, ref, mask, advantages, loss_type="bnpo")
    our_loss, our_grad, _ = _our_loss(logp, old, ref, mask, advantages, aggregation="token")
    assert abs(float(our_loss - trl_loss)) < 1e-5
    torch.testing.assert_close(our_grad, trl_grad, atol=1e-5, rtol=0)
    sequence_loss, _, _ = _our_loss(logp, old, ref, mask, advantages, aggregation="sequence")
    assert abs(float(sequence_loss - trl_loss)) > 1e-4  # the two aggregations really differ here


def test_kl_term_equals_trl_per_token_kl():
    logp, old, ref, mask, rewards = _inputs(seed=3)
    advantages = outcome_advantages(rewards, GROUP, Normalisation())
    _, _, metrics = _trl_loss(logp, old, ref, mask, advantages)
    _, _, terms = _our_loss(logp, old, ref, mask, advantages)
    ours = float((terms.kl * mask).sum() / mask.sum())
    assert ours == pytest.approx(metrics["kl"][0], abs=1e-6)
    assert ours > 0


def test_our_default_std_differs_from_trl_by_bessels_correction():
    """Deliberate difference: our default std divides by G (population), TRL's nanstd by G - 1."""
    _, _, _, _, rewards = _inputs(seed=4)
    ours = outcome_advantages(rewards, GROUP, Normalisation())
    trl = _trl_group_advantages(rewards)
    grouped = rewards.view(-1, GROUP)
    centred = (grouped - grouped.mean(1, keepdim=True)).reshape(-1)
    assert not torch.allclose(ours, trl, atol=1e-3)
    # the two agree once each is put back on the other's scale: std_pop = std_sample * sqrt((G-1)/G)
    bessel = ((GROUP - 1) / GROUP) ** 0.5
    pop = grouped.std(1, correction=0).repeat_interleave(GROUP)
    sample = grouped.std(1, correction=1).repeat_interleave(GROUP)
    torch.testing.assert_close(pop, sample * bessel)
    torch.testing.assert_close(ours * (pop + 1e-4), centred, atol=1e-5, rtol=0)
    torch.testing.assert_close(trl * (sample + 1e-4), centred, atol=1e-5, rtol=0)


def test_all_equal_group_is_exactly_zero_where_trl_divides_rounding_noise_by_epsilon():
    seven = 7
    rewards = torch.cat([torch.full((seven,), 0.7), torch.tensor([1.0, 0, 0, 1, 0, 0, 0])])
    ours = outcome_advantages(rewards, seven, Normalisation())
    assert torch.equal(ours[:seven], torch.zeros(seven))
    assert ours[seven:].abs().sum() > 1
    # TRL: the float32 mean of seven 0.7s is off by one ulp; (r - mean) / (0 + 1e-4) is then ~6e-4
    grouped = rewards.view(-1, seven)
    mean = grouped.mean(dim=1).repeat_interleave(seven)
    trl = (rewards - mean) / (nanstd(grouped, dim=1).repeat_interleave(seven) + 1e-4)
    assert trl[:seven].abs().min() > 1e-4
