"""The reward-model stage: binary cross-entropy at the ORM's EOS or at each PRM step end, as a
TrainModule on the shared Trainer (training/train_loop.py: engines, checkpoints, resume, metrics).

    result = run_training(config)     # what `python -m mathforge.reward.train` calls

The loss of a step is the mean BCE over every label of the global batch (one per ORM example, one
per PRM step), however the batch is split over processes and micro-batches. Labels may be soft (a
Math-Shepherd soft estimate is a fraction). Checkpoints hold the model, optimizer, scheduler, RNG
states and the data position, so a restarted run continues with the same losses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mathforge.models.tokenizer import default_corpus
from mathforge.reward.data import ExampleOrder, RewardExample, mix_replay, read_examples
from mathforge.reward.encoding import EncodedItem, collate, encode, read_logits, score_encoded
from mathforge.reward.model import RewardModel, init_reward_model, init_reward_model_partitioned
from mathforge.reward.synthetic import synthetic_examples
from mathforge.reward.train_config import RewardTrainConfig
from mathforge.training.config import dump_config
from mathforge.training.distributed import DistEnv, all_reduce_sum, finish_distributed, init_distributed
from mathforge.training.engines import build_engine, deepspeed_config
from mathforge.training.metrics import TrainMetrics
from mathforge.training.sharded_load import zero_stage
from mathforge.training.train_loop import BatchResult, Trainer, TrainModule
from mathforge.training.trainer import prepare_tokenizer

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Examples ready to train on: token items and their labels (one per read position)."""

    items: list[EncodedItem]
    labels: list[list[float]]
    skipped_long: int = 0


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    final: str = ""


def roc_auc(scores: list[float], labels: list[float]) -> float:
    """Area under the ROC curve of `scores` against labels >= 0.5 (ties count half); nan when one
    class is missing."""
    ranked = sorted(zip(scores, labels, strict=True))
    positives = sum(1 for _, y in ranked if y >= 0.5)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return float("nan")
    # Mann-Whitney U with average ranks for ties.
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average_rank = (i + j + 1) / 2
        rank_sum += average_rank * sum(1 for _, y in ranked[i:j] if y >= 0.5)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def encode_examples(rm: RewardModel, examples: list[RewardExample], max_tokens: int) -> Encoded:
    """Tokenises examples; too long ones are skipped (counted), a PRM label count that does not
    match the response's steps is a ValueError naming the example."""
    out = Encoded([], [])
    for index, example in enumerate(examples):
        item = encode(rm, example.question, example.response)
        if len(item) > max_tokens:
            out.skipped_long += 1
            continue
        if len(item.read_at) != len(example.labels):
            where = example.source or f"example {index}"
            raise ValueError(
                f"{where}: {len(example.labels)} step labels but the response has {len(item.read_at)} steps "
                f"split by {rm.step_separator!r} (reward.step_separator)"
            )
        out.items.append(item)
        out.labels.append(example.labels)
    return out


def load_data(config: RewardTrainConfig, split: str) -> list[RewardExample]:
    """Training (with replay mixed in) or held-out examples, from files or the synthetic generator."""
    kind, data = config.reward.kind, config.data
    files = data.train if split == "train" else data.eval
    synthetic = data.synthetic_train if split == "train" else data.synthetic_eval
    if files:
        examples = [e for path in files for e in read_examples(path, kind)]
    else:
        examples = synthetic_examples(
            kind,
            synthetic,
            seed=config.seed,
            split="train" if split == "train" else "test",
            difficulty=data.synthetic_difficulty,
        )
    if split == "train" and data.replay:
        history = [e for path in data.replay for e in read_examples(path, kind)]
        mix = mix_replay(examples, history, data.replay_share, seed=config.seed)
        log.info(
            "replay: %d fresh + %d historical examples (%.1f%%)",
            mix.fresh,
            mix.replayed,
            100 * mix.replay_share,
        )
        examples = mix.examples
    return examples


def evaluate(rm: RewardModel, data: Encoded, batch_size: int = 32) -> dict[str, float]:
    """AUC of the scores against the labels (per response for an ORM, per step for a PRM) and the
    accuracy of thresholding them at 0.5."""
    was_training = rm.network.training
    rm.network.eval()
    scores: list[float] = []
    for start in range(0, len(data.items), batch_size):
        for item_scores in score_encoded(rm, data.items[start : start + batch_size]):
            scores.extend(item_scores)
    rm.network.train(was_training)
    labels = [y for item_labels in data.labels for y in item_labels]
    correct = sum(1 for s, y in zip(scores, labels, strict=True) if (s >= 0.5) == (y >= 0.5))
    return {
        "auc": roc_auc(scores, labels),
        "accuracy": correct / max(1, len(labels)),
        "count": len(labels),
    }


def _micro_loss(
    rm: RewardModel,
    module: torch.nn.Module,
    items: list[EncodedItem],
    labels: list[list[float]],
    device: torch.device,
) -> torch.Tensor:
    ids, mask = collate(items, rm.tokenizer.pad_token_id)
    logits = module(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[..., 0]
    picked, _ = read_logits(logits, items)
    targets = torch.tensor([y for row in labels for y in row], dtype=torch.float32, device=device)
    return F.binary_cross_entropy_with_logits(picked.float(), targets, reduction="sum")


class RewardModule(TrainModule):
    """The reward stage's TrainModule: BCE at the read positions of a slice of the global example
    order, and held-out AUC every `reward.eval_every` steps."""

    # every process follows the same global example order and takes its slice of each step
    shared_data = True

    def __init__(
        self,
        config: RewardTrainConfig,
        env: DistEnv,
        rm: RewardModel,
        train_data: Encoded,
        eval_data: Encoded | None,
    ):
        self.config = config
        self.env = env
        self.rm = rm
        self.train_data = train_data
        self.eval_data = eval_data
        self.order = ExampleOrder(len(train_data.items), seed=config.seed)
        self.result = TrainResult()

    def start_info(self) -> dict[str, Any]:
        return {
            "examples": len(self.train_data.items),
            "skipped_long": self.train_data.skipped_long,
            "partitioned_start": self.rm.partitioned,
        }

    def train_batch(self, engine: Any, step: int) -> BatchResult:
        config, env, data = self.config, self.env, self.train_data
        per_rank = config.reward.examples_per_step // env.world_size
        chosen = self.order.take(config.reward.examples_per_step)[
            env.rank * per_rank : (env.rank + 1) * per_rank
        ]
        count = sum(len(data.labels[i]) for i in chosen)
        global_count = max(all_reduce_sum(count, env.device), 1.0)
        loss_sum = 0.0
        micro = config.batch.micro_batch_size
        for offset in range(0, per_rank, micro):
            part = chosen[offset : offset + micro]
            with engine.micro_step() as module:
                loss = _micro_loss(
                    self.rm, module, [data.items[i] for i in part], [data.labels[i] for i in part], env.device
                )
                engine.backward(loss * (engine.loss_multiplier / global_count))
            loss_sum += float(loss.detach())
        mean = all_reduce_sum(loss_sum, env.device) / global_count
        self.result.losses.append(mean)
        return BatchResult(loss=mean, counts={"examples": float(config.reward.examples_per_step)})

    def after_step(self, engine: Any, step: int, done: bool, metrics: TrainMetrics) -> None:
        every = self.config.reward.eval_every
        if self.eval_data is not None and (done or (every and step % every == 0)):
            # Every process evaluates: under ZeRO-3 a forward pass gathers parameters from all ranks.
            scores = evaluate(RewardModel(engine.module, self.rm.tokenizer), self.eval_data)
            self.result.evals.append({"step": float(step), **scores})
            metrics.event("eval", step=step, **scores)

    def state_dict(self) -> dict[str, Any]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)


def train(
    config: RewardTrainConfig, env: DistEnv, rm: RewardModel, train_data: Encoded, eval_data: Encoded | None
) -> TrainResult:
    """Runs (or resumes) the configured steps; returns the losses of the steps run and the evals."""
    engine = build_engine(config, rm.network, env)
    rm.network.train()
    module = RewardModule(config, env, rm, train_data, eval_data)
    trainer = Trainer(config, env, engine, module, rm.tokenizer)
    trainer.fit()
    module.result.final = str(trainer.final) if env.is_main else ""
    return module.result


def reward_network(config: RewardTrainConfig, env: DistEnv, tokenizer: Any) -> RewardModel:
    """The reward model to train: under ZeRO-3 created partitioned, from a checkpoint directory with
    each process reading its share (sharded_load.py), from a preset with the weights the whole build
    draws (partitioned_init.py); else whole on every process."""
    kind, separator = config.reward.kind, config.reward.step_separator
    if zero_stage(config) == 3:
        ds_config = deepspeed_config(config, env, config.accumulation_steps(env.world_size))
        if config.model.init_from:
            return init_reward_model_partitioned(
                kind, config.model.init_from, ds_config, separator, config.seed
            )
        return init_reward_model_partitioned(
            kind, config.model.preset, ds_config, separator, config.seed, tokenizer=tokenizer
        )
    base = config.model.init_from or config.model.preset
    return init_reward_model(kind, base, separator, seed=config.seed, tokenizer=tokenizer)


def run_training(config: RewardTrainConfig) -> TrainResult:
    """Sets up the process group, data, tokenizer and model, trains, and leaves cleanly."""
    env = init_distributed(config.engine.device, use_deepspeed=config.engine.kind == "deepspeed")
    try:
        if env.is_main:
            log.info("effective config:\n%s", dump_config(config))
        train_examples = load_data(config, "train")
        eval_examples = load_data(config, "eval") if (config.data.eval or config.data.synthetic_eval) else []
        tokenizer = prepare_tokenizer(
            config, env, lambda: default_corpus() + [e.question + "\n" + e.response for e in train_examples]
        )
        rm = reward_network(config, env, tokenizer)
        rm.network.set_attn_implementation(config.model.attn_implementation)
        if config.model.gradient_checkpointing:
            rm.network.gradient_checkpointing_enable()
        train_data = encode_examples(rm, train_examples, config.batch.seq_len)
        eval_data = encode_examples(rm, eval_examples, config.batch.seq_len) if eval_examples else None
        return train(config, env, rm, train_data, eval_data)
    finally:
        finish_distributed()
