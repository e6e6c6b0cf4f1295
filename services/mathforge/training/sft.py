"""Supervised fine-tuning on chat-formatted CoT, PoT and tool-integrated examples (DeepSeekMath §3).

    torchrun --nproc_per_node=2 -m mathforge.training.sft --config configs/tiny/sft.yaml
    torchrun ... -m mathforge.training.sft --config configs/paper-7b/sft.yaml batch.steps=10

Examples come from shard files ({"messages": [...]} or {"question", "solution"} records) and/or the
synthetic arithmetic generator; the loss covers assistant tokens only; examples are packed at random
into rows of batch.seq_len; the learning rate is constant (paper: 5e-5, 500 steps, batch 256).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from mathforge.models.tokenizer import CHAT_TEMPLATE, default_corpus
from mathforge.training.config import (
    BatchConfig,
    ConfigError,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    option,
    stage_config,
)
from mathforge.training.distributed import DistEnv
from mathforge.training.global_rows import DATA_ORDERS, GlobalRows
from mathforge.training.interrupt import exit_now
from mathforge.training.sft_data import SftStream, read_conversations, synthetic_conversations, tokenize_chat
from mathforge.training.trainer import run_stage


@dataclasses.dataclass
class SftDataConfig:
    """Where the SFT examples come from."""

    paths: list[str] = option([], "shard files/directories/globs of conversations")
    synthetic_problems: int = option(0, "add this many synthetic arithmetic word problems (training split)")
    synthetic_difficulty: int = option(2, "operations per synthetic problem (1-5)")
    styles: list[str] = option(["cot", "pot", "tool"], "solution formats of the synthetic problems, in turn")
    order: str = option(
        "global",
        "global: one example order for the job, each process packs all rows and keeps its own (a "
        "checkpoint resumes on any number of processes); per_rank: each process reads its own share",
    )


@dataclasses.dataclass
class SftConfig(TrainConfig):
    """SFT: constant LR 5e-5, 500 steps, batch 256 x 4K tokens, response-only loss (DeepSeekMath §3)."""

    stage: str = option("sft", "stage name")
    out_dir: str = option("runs/sft", "checkpoints and the final model")
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=5e-5))
    schedule: ScheduleConfig = dataclasses.field(
        default_factory=lambda: ScheduleConfig(kind="constant", warmup_steps=0)
    )
    batch: BatchConfig = dataclasses.field(
        default_factory=lambda: BatchConfig(seq_len=4096, global_batch_tokens=256 * 4096, steps=500)
    )
    data: SftDataConfig = dataclasses.field(default_factory=SftDataConfig)

    def validate(self) -> None:
        super().validate()
        if not self.data.paths and self.data.synthetic_problems <= 0:
            raise ConfigError("no SFT data: set data.paths and/or data.synthetic_problems")
        if self.data.order not in DATA_ORDERS:
            raise ConfigError(f"data.order {self.data.order!r} is not one of {', '.join(DATA_ORDERS)}")


def conversations(config: SftConfig) -> list[list[dict[str, str]]]:
    found = [c for path in config.data.paths for c in read_conversations(path)]
    if config.data.synthetic_problems:
        found += synthetic_conversations(
            config.data.synthetic_problems, config.seed, config.data.synthetic_difficulty, config.data.styles
        )
    return found


def make_stream(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase, env: DistEnv
) -> SftStream | GlobalRows:
    assert isinstance(config, SftConfig)
    # Training and inference must share one chat format: the saved tokenizer carries this template.
    tokenizer.chat_template = CHAT_TEMPLATE
    examples = [tokenize_chat(messages, tokenizer) for messages in conversations(config)]
    if config.data.order == "global":
        stream = SftStream(examples, config.batch.seq_len, config.seed, tokenizer.pad_token_id)
        return GlobalRows(stream, env.rank, env.world_size)
    return SftStream(
        examples, config.batch.seq_len, config.seed, tokenizer.pad_token_id, env.rank, env.world_size
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = stage_config(SftConfig, argv, prog="python -m mathforge.training.sft")

    def tokenizer_texts() -> list[str]:
        return default_corpus() + [m["content"] for c in conversations(config) for m in c]

    run_stage(config, make_stream, tokenizer_texts)
    return 0


if __name__ == "__main__":
    exit_now(main())  # no interpreter teardown after a finished run (interrupt.exit_now)
