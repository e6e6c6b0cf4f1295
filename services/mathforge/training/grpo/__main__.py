"""Runs the GRPO stage: the policy and its engine in the run's process group, GrpoModule (loop.py)
on the shared Trainer.

torchrun --nproc_per_node=1 -m mathforge.training.grpo --config configs/tiny/grpo.yaml [key=value ...]
python -m mathforge.training.grpo --config configs/paper-7b/grpo.yaml model.init_from=/checkpoints/sft/final
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from mathforge.models.checkpoint import CheckpointError
from mathforge.training.config import ConfigError, dump_config, stage_config
from mathforge.training.distributed import DistEnv
from mathforge.training.engines import build_engine
from mathforge.training.grpo.config import GrpoConfig
from mathforge.training.grpo.loop import GrpoModule
from mathforge.training.grpo.services import StaleSampleError
from mathforge.training.interrupt import exit_now
from mathforge.training.sharded_load import load_policy
from mathforge.training.train_loop import Trainer, run_distributed

log = logging.getLogger(__name__)


def train_grpo(config: GrpoConfig, env: DistEnv) -> list[float]:
    """Checks the run fits its processes, builds the policy (partitioned under ZeRO-3) and trains."""
    if config.rollout.questions_per_step % env.world_size:
        raise ValueError(
            f"rollout.questions_per_step {config.rollout.questions_per_step} does not split "
            f"over {env.world_size} processes"
        )
    if config.rollout.dynamic_sampling and env.world_size > 1:
        raise ValueError(
            "rollout.dynamic_sampling runs on one process: each process would refill a different "
            "number of groups and their question orders would part"
        )
    if env.is_main:
        log.info("effective config:\n%s", dump_config(config))
    policy, tokenizer = load_policy(config, env, config.model.init_from)
    policy.config.use_cache = False
    if config.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    engine = build_engine(config, policy, env)
    return Trainer(config, env, engine, GrpoModule(config, env, tokenizer), tokenizer).fit()


def run_grpo(config: GrpoConfig) -> list[float]:
    """Runs GRPO in the run's process group and leaves it cleanly (Ctrl-C: train_loop.run_distributed)."""
    return run_distributed(config, lambda env: train_grpo(config, env))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = stage_config(GrpoConfig, argv, prog="python -m mathforge.training.grpo")
    try:
        run_grpo(config)
    except (CheckpointError, TimeoutError, StaleSampleError) as exc:
        # a wrong path, a service that never came up, another trainer on the sampler: say which
        print(f"grpo: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # a setting only the run can check (a metrics package not installed)
        print(f"grpo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_now(main())  # no interpreter teardown after a finished run (interrupt.exit_now)
