"""Outcome and process advantages exactly as DeepSeekMath §4, and micro-batch-invariant aggregation."""

from __future__ import annotations

import pytest
import torch
from mathforge.training.grpo.advantages import Normalisation, outcome_advantages, process_token_advantages
from mathforge.training.grpo.loss import ClipConfig, aggregate, k3_kl, token_terms


def test_outcome_advantage_is_group_zscore_by_population_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 0.0])
    adv = outcome_advantages(rewards, 4, Normalisation(std_eps=0.0))
    first = torch.tensor([1.0, 0, 0, 0])
    expected = (first - 0.25) / first.std(correction=0)
    torch.testing.assert_close(adv[:4], expected)
    assert float(adv[4:].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(adv[4:].std(correction=0)) == pytest.approx(1.0, abs=1e-5)


def test_outcome_advantage_without_scaling_only_centres():
    rewards = torch.tensor([3.0, 1.0])
    adv = outcome_advantages(rewards, 2, Normalisation(scale=False))
    torch.testing.assert_close(adv, torch.tensor([1.0, -1.0]))


def test_process_advantage_sums_normalised_rewards_of_steps_ending_at_or_after_token():
    # group of two outputs; output 0 has steps ending at tokens 1 and 4, output 1 one step ending at 2
    step_rewards = [[1.0, 0.0], [0.5]]
    step_ends = [[1, 4], [2]]
    lengths = [6, 3]
    adv = process_token_advantages(step_rewards, step_ends, lengths, 2, Normalisation(std_eps=0.0))
    all_steps = torch.tensor([1.0, 0.0, 0.5])
    z = (all_steps - all_steps.mean()) / all_steps.std(correction=0)  # normalised over the whole group
    expected0 = torch.tensor([z[0] + z[1], z[0] + z[1], z[1], z[1], z[1], 0.0])
    expected1 = torch.tensor([z[2], z[2], z[2], 0.0, 0.0, 0.0])
    torch.testing.assert_close(adv[0], expected0)
    torch.testing.assert_close(adv[1], expected1)


def test_process_advantage_with_one_step_at_the_end_equals_outcome_advantage():
    rewards = [0.9, 0.1, 0.4, 0.4]
    lengths = [5, 3, 4, 2]
    process = process_token_advantages(
        [[r] for r in rewards], [[n - 1] for n in lengths], lengths, 4, Normalisation()
    )
    outcome = outcome_advantages(torch.tensor(rewards), 4, Normalisation())
    for i, n in enumerate(lengths):
        torch.testing.assert_close(process[i, :n], outcome[i].expand(n))


def test_process_advantage_of_all_equal_step_rewards_is_zero():
    adv = process_token_advantages([[0.5, 0.5], [0.5]], [[0, 1], [0]], [2, 1], 2, Normalisation())
    assert torch.equal(adv, torch.zeros(2, 2))


def test_process_advantage_rejects_step_end_outside_the_output():
    with pytest.raises(ValueError, match="outside its 3 tokens"):
        process_token_advantages([[1.0], [0.0]], [[3], [0]], [3, 1], 2, Normalisation())


def test_k3_kl_is_nonnegative_and_zero_at_equality():
    logp = torch.linspace(-5, 0, 11)
    assert torch.equal(k3_kl(logp, logp), torch.zeros(11))
    assert (k3_kl(logp, logp.flip(0)) >= 0).all()


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
def test_micro_batches_sum_to_the_whole_batch_loss_and_gradient(aggregation):
    gen = torch.Generator().manual_seed(0)
    n, t = 8, 5
    old = -torch.rand(n, t, generator=gen)
    logp = (old + 0.1 * torch.randn(n, t, generator=gen)).requires_grad_(True)
    mask = (torch.arange(t)[None] < torch.randint(1, t + 1, (n,), generator=gen)[:, None]).float()
    adv = torch.randn(n, generator=gen)
    clip = ClipConfig()
    whole = aggregate(token_terms(logp, old, old, adv, clip).loss, mask, aggregation)
    (whole_grad,) = torch.autograd.grad(whole, logp)
    parts = 0.0
    for rows in (slice(0, 3), slice(3, 8)):
        terms = token_terms(logp[rows], old[rows], old[rows], adv[rows], clip)
        parts = parts + aggregate(terms.loss, mask[rows], aggregation, num_sequences=n, num_tokens=mask.sum())
    (parts_grad,) = torch.autograd.grad(parts, logp)
    torch.testing.assert_close(parts, whole)
    torch.testing.assert_close(parts_grad, whole_grad)


def test_zero_beta_needs_no_reference_and_gives_zero_kl():
    logp = torch.zeros(2, 3)
    terms = token_terms(logp, logp, None, torch.ones(2), ClipConfig(beta=0.0))
    assert torch.equal(terms.kl, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reference"):
        token_terms(logp, logp, None, torch.ones(2), ClipConfig(beta=0.04))
