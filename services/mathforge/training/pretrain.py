"""Continued pretraining on a weighted mixture of sources (DeepSeekMath §2.3).

    torchrun --nproc_per_node=2 -m mathforge.training.pretrain --config configs/tiny/pretrain.yaml
    torchrun ... -m mathforge.training.pretrain --config configs/paper-7b/pretrain.yaml batch.steps=100

Sources are shard files (JSONL, gzip/zstd JSONL, Parquet) of records with a text field, each with
a mixture weight; see configs/paper-7b/pretrain.yaml for the paper's 56/4/10/20/10 mixture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from mathforge.training.config import ConfigError, TrainConfig, option, stage_config
from mathforge.training.distributed import DistEnv
from mathforge.training.global_rows import DATA_ORDERS, GlobalRows
from mathforge.training.interrupt import exit_now
from mathforge.training.mixture import MixtureStream, Source, read_documents
from mathforge.training.trainer import run_stage


@dataclasses.dataclass
class SourceConfig:
    """One data source of the mixture."""

    path: str = option("", "shard file, directory or glob")
    weight: float = option(1.0, "share of documents drawn from this source (normalised over sources)")
    text_field: str = option("text", "record field holding the document text")
    limit: int = option(0, "read at most this many documents (0 = all)")


@dataclasses.dataclass
class PretrainDataConfig:
    """The mixture."""

    sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)
    tokenizer_sample: int = option(2000, "documents per source used to train a tokenizer when none is given")
    order: str = option(
        "global",
        "global: one document order for the job, each process tokenizes all rows and keeps its own "
        "(a checkpoint resumes on any number of processes); per_rank: each process reads its own "
        "share (less tokenizing, resumes only on the same number of processes)",
    )


@dataclasses.dataclass
class PretrainConfig(TrainConfig):
    """Continued pretraining: multi-step LR, AdamW 0.9/0.95, wd 0.1, 10M-token batches (DeepSeekMath §2.3)."""

    stage: str = option("pretrain", "stage name")
    out_dir: str = option("runs/pretrain", "checkpoints and the final model")
    data: PretrainDataConfig = dataclasses.field(default_factory=PretrainDataConfig)

    def validate(self) -> None:
        super().validate()
        if self.data.order not in DATA_ORDERS:
            raise ConfigError(f"data.order {self.data.order!r} is not one of {', '.join(DATA_ORDERS)}")
        if not self.data.sources:
            raise ConfigError("data.sources is empty: give at least one source with a path and a weight")
        for name, source in self.data.sources.items():
            if not source.path:
                raise ConfigError(f"data.sources.{name}.path is empty")
            if source.weight < 0:
                raise ConfigError(f"data.sources.{name}.weight {source.weight} is negative")


def make_stream(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase, env: DistEnv
) -> MixtureStream | GlobalRows:
    assert isinstance(config, PretrainConfig)
    sources = [
        Source(name, read_documents(s.path, s.text_field, s.limit), s.weight)
        for name, s in config.data.sources.items()
    ]
    if config.data.order == "global":
        return GlobalRows(
            MixtureStream(sources, tokenizer, config.batch.seq_len, config.seed), env.rank, env.world_size
        )
    return MixtureStream(sources, tokenizer, config.batch.seq_len, config.seed, env.rank, env.world_size)


def main(argv: Sequence[str] | None = None) -> int:
    config = stage_config(PretrainConfig, argv, prog="python -m mathforge.training.pretrain")

    def tokenizer_texts() -> list[str]:
        return [
            text
            for s in config.data.sources.values()
            for text in read_documents(s.path, s.text_field, config.data.tokenizer_sample)
        ]

    run_stage(config, make_stream, tokenizer_texts)
    return 0


if __name__ == "__main__":
    exit_now(main())  # no interpreter teardown after a finished run (interrupt.exit_now)
