"""Rewards for GRPO: the rule verifier, outcome and process reward models, their training, and the
Reward service (DeepSeekMath §4)."""
