"""Pretraining and SFT: model and tokenizer set-up, and the TrainModule that trains one batch of
packed rows on the shared Trainer (train_loop.py: checkpoints, exact resume, metrics).

    run_stage(config, make_stream=..., tokenizer_texts=...)   # called by pretrain.py and sft.py

One optimizer step reads `accumulation` micro-batches per process. The loss is the sum of token
losses over the whole global batch divided by its number of target tokens, so accumulation and
the number of processes do not change what a step computes. The batch streams, RNGs, optimizer
and scheduler all resume from a checkpoint, so a killed and restarted run continues with the same
losses it would have had.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mathforge.models.checkpoint import CheckpointError, load_model
from mathforge.models.presets import build_model, model_config
from mathforge.models.tokenizer import build_tokenizer
from mathforge.training.config import ConfigError, TrainConfig
from mathforge.training.distributed import DistEnv, all_reduce_sum, barrier
from mathforge.training.engines import build_engine, deepspeed_config
from mathforge.training.global_rows import GlobalRows
from mathforge.training.packing import IGNORE
from mathforge.training.partitioned_init import fresh_partitioned
from mathforge.training.sharded_load import prepare_partitioned, zero_stage
from mathforge.training.train_loop import BatchResult, Trainer, TrainModule, run_distributed


class BatchStream(Protocol):
    """An endless, resumable source of packed micro-batches for one process."""

    def next_batch(self, rows: int) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of next-token cross-entropy over the batch's target tokens (labels != -100).

    No attention mask is passed: the position-id resets in the batch keep attention within each
    packed document (see packing.py).
    """
    output = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    logits = output.logits.float()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def prepare_tokenizer(
    config: TrainConfig, env: DistEnv, tokenizer_texts: Callable[[], list[str]]
) -> PreTrainedTokenizerBase:
    """The configured tokenizer, init_from's, the run's own from an earlier start, or a new one
    trained by rank 0 on the data and shared through out_dir."""
    source = config.model.tokenizer or config.model.init_from
    if source:
        if not Path(source).is_dir():
            # Weights and tokenizers come from local directories only: never a hub lookup.
            raise CheckpointError(
                f"{source}: no such directory (model.init_from and model.tokenizer name a local checkpoint)"
            )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {source} has no bos/eos token; packing needs both")
        if tokenizer.pad_token_id is None:
            # Many base-model tokenizers (Llama-style) have none; padding is never a target anyway.
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    own = Path(config.out_dir) / "tokenizer"
    if env.is_main and not (own / "tokenizer.json").exists():
        build_tokenizer(tokenizer_texts(), vocab_size=config.model.vocab_size, out_dir=own)
    barrier()
    return AutoTokenizer.from_pretrained(str(own), local_files_only=True)


def prepare_model(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase, env: DistEnv | None = None
) -> PreTrainedModel:
    """The starting weights: init_from's checkpoint, or the preset with seeded random weights.

    Under ZeRO-3 (given `env`) the model is created partitioned: init_from's weights with each
    process reading only its share (sharded_load.py), a preset's drawn as the whole build draws them
    (partitioned_init.py), so no process ever holds the whole model."""
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if env is not None and zero_stage(config) == 3:
        if config.model.init_from:
            model = prepare_partitioned(config, env, config.model.init_from)
        else:
            ds_config = deepspeed_config(config, env, config.accumulation_steps(env.world_size))
            shape = model_config(config.model.preset, len(tokenizer), **special)
            model = fresh_partitioned(AutoModelForCausalLM, shape, ds_config, config.seed)
    elif config.model.init_from:
        model, _ = load_model(config.model.init_from, dtype="float32")
    else:
        model = build_model(
            config.model.preset, vocab_size=len(tokenizer), seed=config.seed, dtype="float32", **special
        )
    model.config.use_cache = False
    model.set_attn_implementation(config.model.attn_implementation)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


class LanguageModelModule(TrainModule):
    """Pretraining and SFT's TrainModule: next-token loss over packed rows from a batch stream."""

    def __init__(
        self,
        config: TrainConfig,
        env: DistEnv,
        tokenizer: PreTrainedTokenizerBase,
        stream: BatchStream,
        partitioned: bool = False,
    ):
        self.config = config
        self.env = env
        self.partitioned = partitioned  # the model was created partitioned (ZeRO-3), never whole
        self.pad_id = tokenizer.pad_token_id
        self.stream = stream
        self.shared_data = isinstance(stream, GlobalRows)
        self.autocast = (
            env.device.type == "cuda" and config.engine.kind == "ddp" and config.model.dtype != "float32"
        )

    def start_info(self) -> dict[str, Any]:
        return {"partitioned_start": self.partitioned}

    def train_batch(self, engine: Any, step: int) -> BatchResult:
        micro_batches = [
            {
                k: v.to(self.env.device)
                for k, v in self.stream.next_batch(self.config.batch.micro_batch_size).items()
            }
            for _ in range(engine.accumulation)
        ]
        targets = sum(int((b["labels"] != IGNORE).sum()) for b in micro_batches)
        global_targets = max(all_reduce_sum(targets, self.env.device), 1.0)
        loss_sum = 0.0
        for batch in micro_batches:
            with engine.micro_step() as forward_model:
                autocast = (
                    torch.autocast("cuda", dtype=torch.bfloat16)
                    if self.autocast
                    else contextlib.nullcontext()
                )
                with autocast:
                    loss = token_loss_sum(forward_model, batch)
                engine.backward(loss * (engine.loss_multiplier / global_targets))
            loss_sum += float(loss.detach())
        tokens = sum(int((b["input_ids"] != self.pad_id).sum()) for b in micro_batches)
        return BatchResult(
            loss=all_reduce_sum(loss_sum, self.env.device) / global_targets,
            counts={"tokens": all_reduce_sum(tokens, self.env.device)},
        )

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


def train(
    config: TrainConfig,
    env: DistEnv,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    stream: BatchStream,
) -> list[float]:
    """Runs (or resumes) the configured number of steps; returns the losses of the steps it ran."""
    partitioned = any(hasattr(param, "ds_tensor") for param in model.parameters())
    engine = build_engine(config, model, env)
    module = LanguageModelModule(config, env, tokenizer, stream, partitioned)
    return Trainer(config, env, engine, module, tokenizer).fit()


def run_stage(
    config: TrainConfig,
    make_stream: Callable[[TrainConfig, PreTrainedTokenizerBase, DistEnv], BatchStream],
    tokenizer_texts: Callable[[], list[str]],
) -> list[float]:
    """Sets up the tokenizer, model and data in the run's process group, trains, and leaves cleanly."""

    def stage(env: DistEnv) -> list[float]:
        try:
            tokenizer = prepare_tokenizer(config, env, tokenizer_texts)
            model = prepare_model(config, tokenizer, env)
            stream = make_stream(config, tokenizer, env)
            return train(config, env, model, tokenizer, stream)
        except CheckpointError as exc:
            print(f"{config.stage}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except ConfigError as exc:  # a setting only the run can check (a metrics package not installed)
            print(f"{config.stage}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return run_distributed(config, stage)
