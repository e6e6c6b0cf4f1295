"""How GRPO scores outputs that are not finished solutions: blank ones (no text) and ones cut at the
token limit (`rollout.max_new_tokens`, the sampler's finish reason "length").

    settle_unfinished(rollout)      # after scoring, before advantages; returns how many were settled

Such an output has no final answer the policy chose to give, so it counts as wrong whatever a
reward model scored its text (an ORM trained on finished solutions has no defined score for a cut
one) and whatever a \\boxed{} written before the cut says:
- `correct` is False (the accuracy metrics and the reward-model samples of iterative RL use it);
- its reward becomes the lowest reward of its group, so it never ranks above a finished output;
- under process supervision its steps keep their scores except the last, cut one, which gets the
  group's lowest step score. A blank output has no steps and so no per-step reward.
A blank output still has its tokens (the end-of-sequence token the policy chose at once), so with
the group's lowest reward the update makes ending at once less likely.
"""

from __future__ import annotations

from mathforge.training.grpo.rollout import Rollout


def unfinished_outputs(rollout: Rollout) -> list[int]:
    """The outputs that are blank or were cut at the token limit."""
    cut = rollout.truncated or [False] * rollout.size
    return [i for i, text in enumerate(rollout.texts) if cut[i] or not text.strip()]


def settle_unfinished(rollout: Rollout) -> int:
    """Applies the rule above in place; returns the number of outputs it applied to."""
    settled = unfinished_outputs(rollout)
    size = rollout.group_size
    for i in settled:
        members = range(i - i % size, i - i % size + size)
        if rollout.rewards.numel():
            rollout.rewards[i] = min(float(rollout.rewards[j]) for j in members)
        if rollout.correct:
            rollout.correct[i] = False
        if rollout.step_rewards and rollout.step_rewards[i]:
            rollout.step_rewards[i][-1] = min(r for j in members for r in rollout.step_rewards[j])
    return len(settled)
