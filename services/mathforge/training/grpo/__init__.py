"""GRPO: the online RL stage over the sampler and reward services (PAPER.md section 4)."""
