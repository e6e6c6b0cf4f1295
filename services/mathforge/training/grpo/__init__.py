"""GRPO: the online RL stage over the sampler and reward services (DeepSeekMath §4)."""
