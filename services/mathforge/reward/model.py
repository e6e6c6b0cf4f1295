"""Outcome and process reward models: a causal-LM backbone with a scalar head, saved and loaded as a
standard Hugging Face checkpoint directory the service can swap in.

    rm = init_reward_model("orm", base="runs/sft/final")        # or base="tiny" for random weights
    save_reward_model(rm, "runs/rm/final")
    rm = load_reward_model("runs/rm/final", expect_kind="orm")  # CheckpointError when it is not one

The network is transformers' token-classification model with one label (for Llama:
LlamaForTokenClassification): the causal decoder and a linear head giving one logit per token. The
reward is the logit's sigmoid, read at the end-of-sequence token (ORM) or at the last token of each
step (PRM; see steps.py). The kind and the step separator are stored in config.json
(`reward_kind`, `step_separator`), so the separator a PRM was trained with travels with it, and the
training stage's checkpoints (`<out>/step-<n>/model/`) are loadable reward models as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from mathforge.models.checkpoint import CheckpointError, atomic_directory, write_model_files
from mathforge.models.presets import PRESETS, model_config, parse_dtype
from mathforge.models.tokenizer import default_tokenizer
from mathforge.reward.steps import DEFAULT_SEPARATOR
from mathforge.training.sharded_load import weight_files

KINDS = ("orm", "prm")


@dataclass
class RewardModel:
    """A reward model ready to score: network, tokenizer, kind ("orm"/"prm") and step separator."""

    network: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str = ""
    random_weights: bool = False
    partitioned: bool = False  # created partitioned over a ZeRO-3 run's processes

    @property
    def kind(self) -> str:
        return str(self.network.config.reward_kind)

    @property
    def step_separator(self) -> str:
        return str(self.network.config.step_separator)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.network.config, "max_position_embeddings", 0) or 1 << 30)

    def token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head's logit at every token, [batch, tokens]."""
        return self.network(input_ids=input_ids, attention_mask=attention_mask).logits[..., 0]


def _check_kind(kind: str, step_separator: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"reward model kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not step_separator:
        raise ValueError("the step separator must not be empty")


def _mark(network: PreTrainedModel, kind: str, step_separator: str) -> None:
    network.config.reward_kind = kind
    network.config.step_separator = step_separator
    network.config.use_cache = False


def init_reward_model(
    kind: str,
    base: str,
    step_separator: str = DEFAULT_SEPARATOR,
    seed: int = 0,
    dtype: str = "float32",
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> RewardModel:
    """A reward model on `base`: a causal-LM checkpoint directory (a fresh head is added), a reward
    model directory (continued training keeps its head), or a preset name such as "tiny" (random
    weights; `tokenizer`, else the built-in one)."""
    _check_kind(kind, step_separator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if _is_preset(base):
            tokenizer = tokenizer or default_tokenizer()
            network = AutoModelForTokenClassification.from_config(_preset_config(base, tokenizer))
            network.to(parse_dtype(dtype))
            _mark(network, kind, step_separator)
            return RewardModel(network, tokenizer, base, random_weights=True)
        network, tokenizer = _load_network(Path(base), dtype)
    _mark(network, kind, step_separator)
    return RewardModel(network, tokenizer, base)


def _is_preset(base: str) -> bool:
    return base in PRESETS and not Path(base).exists()


def _preset_config(preset: str, tokenizer: PreTrainedTokenizerBase) -> Any:
    """The reward network's config (one label, no dropout) for a preset with `tokenizer`'s vocabulary."""
    config = model_config(
        preset,
        len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.num_labels = 1
    config.classifier_dropout = 0.0
    return config


def _network_config(path: Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """The reward network's config (one label, no dropout) and tokenizer from a checkpoint directory."""
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: no config.json (is this a model checkpoint directory?)")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable config or tokenizer ({exc})") from exc
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {config.vocab_size}"
        )
    config.num_labels = 1
    config.classifier_dropout = 0.0
    return config, tokenizer


def init_reward_model_partitioned(
    kind: str,
    base: str,
    ds_config: dict[str, Any],
    step_separator: str = DEFAULT_SEPARATOR,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> RewardModel:
    """`init_reward_model` for a ZeRO-3 run: the network is created partitioned over the processes.
    From a checkpoint directory each process reads only its share of the backbone (and of the head,
    from a reward model directory); a fresh head gets the values `init_reward_model` gives it (the
    seeded draw transformers makes for a missing Linear). From a preset (random weights) the network
    gets the weights the whole build draws from `seed` (partitioned_init.py). Both paths start the
    same as `init_reward_model`'s."""
    import deepspeed

    from mathforge.training.partitioned_init import fresh_partitioned
    from mathforge.training.sharded_load import partitioned_model, read_partitions

    _check_kind(kind, step_separator)
    if _is_preset(base):
        tokenizer = tokenizer or default_tokenizer()
        network = fresh_partitioned(
            AutoModelForTokenClassification, _preset_config(base, tokenizer), ds_config, seed
        )
        _mark(network, kind, step_separator)
        return RewardModel(network, tokenizer, base, random_weights=True, partitioned=True)
    path = Path(base)
    config, tokenizer = _network_config(path)
    network = partitioned_model(path, ds_config, AutoModelForTokenClassification, config)
    head = [
        name for name, _ in network.named_parameters() if not name.startswith(f"{network.base_model_prefix}.")
    ]
    read_partitions(network, path, fresh=tuple(head))
    stored = set(weight_files(path))
    if not set(head) <= stored:
        parameters = dict(network.named_parameters())
        generator = torch.Generator().manual_seed(seed)
        for name in head:  # the weight first, as transformers draws it; a bias starts at zero
            param = parameters[name]
            with deepspeed.zero.GatheredParameters([param], modifier_rank=0), torch.no_grad():
                if name.endswith("weight"):
                    values = torch.empty(param.shape).normal_(
                        0.0, config.initializer_range, generator=generator
                    )
                    param.copy_(values.to(param.dtype))
                else:
                    param.zero_()
    _mark(network, kind, step_separator)
    return RewardModel(network, tokenizer, base, partitioned=True)


def _load_network(path: Path, dtype: str | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    config, tokenizer = _network_config(path)
    try:
        network = AutoModelForTokenClassification.from_pretrained(
            str(path), config=config, local_files_only=True, dtype=parse_dtype(dtype) or "auto"
        )
    except Exception as exc:
        raise CheckpointError(f"{path}: weights missing, corrupt or the wrong shape ({exc})") from exc
    return network, tokenizer


def save_reward_model(model: RewardModel, directory: str | Path) -> Path:
    """Writes a loadable reward model directory atomically: readers see the old one or the new one."""
    target = Path(directory)
    with atomic_directory(target) as staging:
        write_model_files(model.network, model.tokenizer, staging)
    return target


def load_reward_model(
    directory: str | Path, expect_kind: str | None = None, dtype: str | None = None, device: str = "cpu"
) -> RewardModel:
    """Loads a reward model directory for scoring (eval mode). CheckpointError names what is
    missing, corrupt or of the wrong kind."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"{path}: reward model directory does not exist")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: no readable config.json ({exc})") from exc
    kind = getattr(config, "reward_kind", None)
    separator = getattr(config, "step_separator", None)
    if kind not in KINDS or not isinstance(separator, str) or not separator:
        raise CheckpointError(
            f"{path}: config.json has no valid reward_kind/step_separator (is this a reward model? "
            "a causal-LM checkpoint becomes one by training: mathforge.reward.train)"
        )
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{path} holds a reward model of kind {kind}, expected {expect_kind}")
    network, tokenizer = _load_network(path, dtype)
    network.to(device).eval()
    return RewardModel(network, tokenizer, str(path))
