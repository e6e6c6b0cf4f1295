"""The training stages (continued pretraining, SFT) and the machinery they share with the reward
and GRPO trainers: config loading, distributed setup, engines, checkpoints, metrics, job building."""
