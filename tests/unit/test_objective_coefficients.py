"""Each method's gradient coefficient against the table of DeepSeekMath §5.2.1 on hand-computed inputs,
and the coefficients turned into the update's advantages giving that method's own gradient."""

from __future__ import annotations

import math

import pytest
import torch
from mathforge.training.grpo.advantages import Normalisation
from mathforge.training.grpo.loss import ClipConfig, aggregate, token_terms
from mathforge.training.grpo.questions import Question
from mathforge.training.grpo.rollout import Rollout
from mathforge.training.objective.coefficients import (
    dpo_coefficients,
    dpo_loss,
    dpo_update_coefficients,
    grpo_token_coefficients,
    rft_coefficients,
    sft_coefficients,
)
from mathforge.training.objective.methods import (
    METHODS,
    CoefficientSettings,
    method_coefficients,
    preference_pairs,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sft_gives_every_output_one():
    assert sft_coefficients([3, 0, 5]).tolist() == [1.0, 1.0, 1.0]


def test_rft_and_online_rft_give_the_indicator_of_a_right_answer():
    assert rft_coefficients([True, False, True]).tolist() == [1.0, 0.0, 1.0]


def test_dpo_gives_plus_and_minus_the_sigmoid_of_the_log_ratio_margin():
    # outputs 0 (right) and 1 (wrong) form one pair; output 2 is in none
    policy = torch.tensor([-3.0, -5.0, -1.0])
    reference = torch.tensor([-4.0, -4.5, -2.0])
    beta = 0.5
    # log pi/pi_ref: o+ = 1.0, o- = -0.5; GC = sigmoid(0.5 * (-0.5) - 0.5 * 1.0) = sigmoid(-0.75)
    expected = sigmoid(-0.75)
    got = dpo_coefficients(policy, reference, [(0, 1)], beta)
    assert got.tolist() == pytest.approx([expected, -expected, 0.0])


def test_grpo_gives_the_advantage_plus_the_kl_pull_towards_the_reference():
    advantages = torch.tensor([0.5, -1.0])
    logp = torch.log(torch.tensor([[0.5], [0.25]]))
    ref_logp = torch.log(torch.tensor([[0.25], [0.5]]))
    # A + beta * (pi_ref / pi - 1): 0.5 + 0.1 * (0.5 - 1) and -1.0 + 0.1 * (2 - 1)
    got = grpo_token_coefficients(advantages, logp, ref_logp, beta=0.1)
    assert got.flatten().tolist() == pytest.approx([0.45, -0.9])


def test_the_update_turns_grpo_advantages_into_the_table_coefficient():
    """At ratio 1 the update's gradient in log pi is -GC / |o| per token (sequence mean, one output)."""
    logp = torch.log(torch.tensor([[0.5, 0.2]])).requires_grad_()
    ref_logp = torch.log(torch.tensor([[0.25, 0.4]]))
    advantages = torch.tensor([0.7])
    terms = token_terms(logp, logp.detach(), ref_logp, advantages, ClipConfig(beta=0.04))
    aggregate(terms.loss, torch.ones(1, 2), "sequence").backward()
    table = grpo_token_coefficients(advantages, logp.detach(), ref_logp, beta=0.04)
    assert (-logp.grad * 2).flatten().tolist() == pytest.approx(table.flatten().tolist())


def _rollout(correct: list[bool], group: int, lengths: list[int]) -> Rollout:
    rollout = Rollout(
        [Question("q", "1")] * (len(correct) // group),
        group,
        1,
        [[1]] * (len(correct) // group),
        [[5] * n for n in lengths],
        [[0.0] * n for n in lengths],
        ["t"] * len(correct),
        [False] * len(correct),
    )
    rollout.correct = correct
    rollout.rewards = torch.tensor([1.0 if c else 0.0 for c in correct])
    return rollout


def test_dpo_pairs_right_with_wrong_outputs_within_each_group():
    pairs = preference_pairs([True, False, False, True, True, True, False, False, True, True, True, True], 4)
    assert pairs == [(0, 1), (3, 2), (4, 6), (5, 7)]  # the third group, all right, gives none


def test_dpo_through_the_update_gives_the_dpo_loss_gradient():
    lengths = [2, 3, 1, 2]
    rollout = _rollout([True, False, False, True], 4, lengths)
    token_logp = torch.tensor(
        [[-0.5, -1.0, 0.0], [-0.2, -0.7, -1.1], [-2.0, 0.0, 0.0], [-0.3, -0.4, 0.0]], requires_grad=True
    )
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    reference = torch.tensor([-1.0, -2.5, -1.0, -1.5])
    sums = (token_logp * mask).sum(-1)
    beta = 0.3
    settings = CoefficientSettings(dpo_beta=beta)
    coefficients = method_coefficients(
        METHODS["dpo"], rollout, settings, lambda r: (sums.detach(), reference)
    )
    terms = token_terms(token_logp, token_logp.detach(), None, coefficients, ClipConfig(beta=0.0))
    aggregate(terms.loss, mask, "sequence").backward()
    through_update = token_logp.grad.clone()
    token_logp.grad = None
    pairs = preference_pairs(rollout.correct, 4)
    dpo_loss((token_logp * mask).sum(-1), reference, pairs, beta).backward()
    assert through_update.flatten().tolist() == pytest.approx(token_logp.grad.flatten().tolist(), abs=1e-6)


def test_dpo_update_scale_is_length_times_beta_times_outputs_per_pair():
    got = dpo_update_coefficients(torch.tensor([0.5, -0.5]), [4, 2], pairs=1, beta=0.1)
    assert got.tolist() == pytest.approx([0.5 * 4 * 0.1 * 2, -0.5 * 2 * 0.1 * 2])


def test_methods_read_what_their_table_row_names():
    rollout = _rollout([True, False, True, True], 2, [1, 1, 1, 1])
    settings = CoefficientSettings(normalisation=Normalisation(std_eps=0.0))
    assert method_coefficients(METHODS["online_rft"], rollout, settings).tolist() == [1, 0, 1, 1]
    assert method_coefficients(METHODS["rft"], rollout, settings).tolist() == [1, 0, 1, 1]
    assert method_coefficients(METHODS["sft"], rollout, settings).tolist() == [1, 1, 1, 1]
    assert method_coefficients(METHODS["grpo"], rollout, settings).tolist() == pytest.approx([1, -1, 0, 0])
    assert {m.source for m in METHODS.values()} == {"policy", "offline", "reference"}
    assert [name for name, m in METHODS.items() if m.kl] == ["grpo"]
