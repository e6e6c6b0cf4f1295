"""Training configs: nested dataclasses loaded from YAML with `key=value` overrides.

    config = load_config(SftConfig, ["--config", "configs/tiny/sft.yaml", "optim.lr=1e-4"])

Precedence: dataclass defaults < the YAML file < dotted `key=value` overrides on the command line
(`data.sources.arxiv.weight=0.2` reaches into a mapping of sections). Unknown keys and values of
the wrong type are a ConfigError naming the key. `as_dict()` gives the effective config, which
every stage logs at start and saves in every checkpoint. Defaults are the paper's numbers
(the DeepSeekMath section in the help text); the reward and GRPO trainers subclass `TrainConfig`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mathforge.runtime.config import ConfigError, _coerce, option

__all__ = ["ConfigError", "TrainConfig", "load_config", "option"]


@dataclasses.dataclass
class ModelConfig:
    """Which model to train and how it starts."""

    preset: str = option("tiny", "architecture preset (models/presets.py) when starting from random weights")
    init_from: str = option(
        "", "checkpoint directory to start from (a path or PVC mount); empty = random init"
    )
    tokenizer: str = option("", "tokenizer directory; empty = init_from's, else one trained on the data")
    vocab_size: int = option(512, "vocabulary size of a tokenizer trained on the data")
    dtype: str = option("auto", "parameter dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16")
    attn_implementation: str = option("sdpa", "sdpa, eager or flash_attention_2")
    gradient_checkpointing: bool = option(False, "recompute activations in backward to save memory")


@dataclasses.dataclass
class OptimConfig:
    """AdamW settings (DeepSeekMath §2.3: beta1 0.9, beta2 0.95, weight decay 0.1)."""

    lr: float = option(4.2e-4, "peak learning rate (DeepSeekMath §2.3: 4.2e-4 pretraining; 3: 5e-5 SFT)")
    beta1: float = option(0.9, "AdamW beta1 (DeepSeekMath §2.3)")
    beta2: float = option(0.95, "AdamW beta2 (DeepSeekMath §2.3)")
    eps: float = option(1e-8, "AdamW epsilon (our choice)")
    weight_decay: float = option(
        0.1, "AdamW weight decay on matrices; norms are not decayed (DeepSeekMath §2.3)"
    )
    grad_clip: float = option(1.0, "clip the global gradient norm to this (our choice; 0 = off)")


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate schedule (DeepSeekMath §2.3: multi-step; section 3: constant)."""

    kind: str = option("multistep", "multistep (warm-up then drops) or constant")
    warmup_steps: int = option(2000, "linear warm-up steps to the peak (DeepSeekMath §2.3: 2000)")
    decay_at: list[float] = option(
        [0.8, 0.9], "fractions of training where the rate drops (DeepSeekMath §2.3)"
    )
    decay_to: list[float] = option(
        [0.316, 0.1], "the rate after each drop, as a fraction of the peak (DeepSeekMath §2.3)"
    )


@dataclasses.dataclass
class BatchConfig:
    """Sequence length, batch size in tokens, and run length."""

    seq_len: int = option(4096, "tokens per packed row (DeepSeekMath §2.3: context 4K)")
    micro_batch_size: int = option(1, "rows per process per forward/backward")
    global_batch_tokens: int = option(
        10_485_760,
        "tokens per optimizer step over all processes "
        "(DeepSeekMath §2.3: 10M); gradient accumulation makes up the difference",
    )
    steps: int = option(47_684, "optimizer steps (DeepSeekMath §2.3: 500B tokens / 10M per step)")


@dataclasses.dataclass
class EngineConfig:
    """How the model is distributed and where it runs."""

    kind: str = option("ddp", "ddp (torch DistributedDataParallel) or deepspeed (ZeRO, configs/deepspeed/)")
    deepspeed_config: str = option("", "DeepSpeed JSON; its 'auto' values are filled from this config")
    device: str = option("auto", "auto (cuda when present), cuda or cpu")


@dataclasses.dataclass
class CheckpointConfig:
    """Where and how often the run saves itself."""

    every: int = option(500, "save a resumable checkpoint every N steps (and at the end)")
    keep_last: int = option(3, "older step directories are deleted beyond this many (0 = keep all)")
    resume: bool = option(True, "continue from <out_dir>/latest when it exists")


@dataclasses.dataclass
class MetricsConfig:
    """Where progress goes: JSON lines on stdout, a Pushgateway, TensorBoard, Weights & Biases, a
    progress bar."""

    log_every: int = option(1, "emit a metrics line every N steps")
    pushgateway: str = option("", "host:port of a Prometheus Pushgateway; empty = off")
    job_name: str = option("mathforge-training", "Pushgateway job label")
    progress_bar: str = option("auto", "auto (when stderr is a terminal), on or off")
    tensorboard_dir: str = option(
        "", "write TensorBoard event files under this directory (tag <stage>/<metric>); empty = off"
    )
    wandb_project: str = option(
        "", "log to this Weights & Biases project (needs mathforge[wandb]; key <stage>/<metric>); empty = off"
    )
    wandb_entity: str = option("", "W&B team or user; empty = WANDB_ENTITY or your default entity")
    wandb_name: str = option("", "W&B run name; empty = WANDB_NAME or a name W&B picks")
    wandb_group: str = option("", "W&B run group (e.g. one per recipe run); empty = WANDB_RUN_GROUP")
    wandb_tags: list[str] = option([], "W&B run tags; empty = WANDB_TAGS")
    wandb_mode: str = option(
        "", "online, offline (log locally, `wandb sync` later) or disabled; empty = WANDB_MODE or online"
    )
    wandb_dir: str = option("", "where W&B writes the run's files; empty = WANDB_DIR or out_dir")


@dataclasses.dataclass
class JobConfig:
    """The Kubernetes job (PyTorchJob or Trainer v2 TrainJob) that runs this config (`mathforge submit`)."""

    name: str = option("", "job name; empty = mathforge-<stage>")
    namespace: str = option("mathforge", "namespace of the job and its ConfigMap")
    image: str = option("ghcr.io/mathforge/mathforge-gpu:0.1.0", "trainer image (images/Dockerfile.gpu)")
    nodes: int = option(1, "pods: one Master plus nodes-1 Workers")
    nproc_per_node: int = option(1, "processes (GPUs) per pod")
    gpus_per_node: int = option(0, "nvidia.com/gpu per pod; 0 = a CPU job")
    cpu: str = option("2", "CPU request and limit per pod")
    memory: str = option("8Gi", "memory request and limit per pod")
    shm_size: str = option("1Gi", "size of the /dev/shm emptyDir (NCCL and data loaders need it)")
    data_pvc: str = option("mathforge-data", "PVC with the training data, mounted at /data")
    checkpoint_pvc: str = option("mathforge-checkpoints", "PVC for checkpoints, mounted at /checkpoints")
    backoff_limit: int = option(3, "pod restarts before the job fails")
    ttl_seconds_after_finished: int = option(86_400, "delete the finished job after this many seconds")
    env: dict[str, str] = option({}, "extra environment variables for the trainer container")
    secret_env: dict[str, str] = option(
        {},
        "environment variables taken from Kubernetes Secrets, NAME: <secret>/<key> (e.g. "
        "WANDB_API_KEY: wandb/api-key), so keys never sit in the job spec or its ConfigMap",
    )
    service_account: str = option(
        "",
        "ServiceAccount the pods run under, its API token mounted (the chart's trainerRbac account, for "
        "iterative RL's reward-model job on a cluster); empty = the namespace default, no token mounted",
    )
    api: str = option(
        "pytorchjob",
        "pytorchjob: a kubeflow.org/v1 PyTorchJob (training operator v1); trainjob: a Kubeflow Trainer v2 "
        "TrainJob and the ClusterTrainingRuntime it names",
    )
    queue: str = option("", "Kueue LocalQueue name; set = the job is created suspended until Kueue admits it")
    priority_class: str = option("", "Kueue WorkloadPriorityClass of the job (needs queue)")


@dataclasses.dataclass
class TrainConfig:
    """Settings every training stage shares."""

    stage: str = option("train", "the stage's name, used for job and metric names")
    seed: int = option(0, "seeds weights, data order and every random generator")
    out_dir: str = option(
        "runs/train", "checkpoints go to <out_dir>/step-<n>/, the final model to <out_dir>/final"
    )
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    batch: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    job: JobConfig = dataclasses.field(default_factory=JobConfig)

    def validate(self) -> None:
        """Raises ConfigError for settings no run could use. Stages extend it."""
        checks = [
            (self.batch.seq_len >= 8, f"batch.seq_len {self.batch.seq_len} is below 8"),
            (self.batch.micro_batch_size >= 1, "batch.micro_batch_size must be >= 1"),
            (self.batch.steps >= 1, "batch.steps must be >= 1"),
            (self.optim.lr > 0, f"optim.lr {self.optim.lr} must be > 0"),
            (0 <= self.optim.beta1 < 1 and 0 <= self.optim.beta2 < 1, "optim.beta1/beta2 must be in [0, 1)"),
            (self.optim.grad_clip >= 0, "optim.grad_clip must be >= 0"),
            (
                self.schedule.kind in ("multistep", "constant"),
                f"schedule.kind {self.schedule.kind!r} is not multistep or constant",
            ),
            (
                len(self.schedule.decay_at) == len(self.schedule.decay_to),
                "schedule.decay_at and schedule.decay_to must have the same length",
            ),
            (
                list(self.schedule.decay_at) == sorted(self.schedule.decay_at),
                "schedule.decay_at must increase",
            ),
            (self.schedule.warmup_steps >= 0, "schedule.warmup_steps must be >= 0"),
            (
                self.engine.kind in ("ddp", "deepspeed"),
                f"engine.kind {self.engine.kind!r} is not ddp or deepspeed",
            ),
            (
                self.engine.kind != "deepspeed" or bool(self.engine.deepspeed_config),
                "engine.kind=deepspeed needs engine.deepspeed_config (a file in configs/deepspeed/)",
            ),
            (
                self.engine.device in ("auto", "cpu", "cuda"),
                f"engine.device {self.engine.device!r} is not auto, cpu or cuda",
            ),
            (self.checkpoint.every >= 1, "checkpoint.every must be >= 1"),
            (self.metrics.log_every >= 1, "metrics.log_every must be >= 1"),
            (
                self.metrics.progress_bar in ("auto", "on", "off"),
                "metrics.progress_bar must be auto, on or off",
            ),
            (
                self.metrics.wandb_mode in ("", "online", "offline", "disabled"),
                f"metrics.wandb_mode {self.metrics.wandb_mode!r} is not online, offline or disabled",
            ),
            (
                self.job.nodes >= 1 and self.job.nproc_per_node >= 1,
                "job.nodes and job.nproc_per_node must be >= 1",
            ),
            (
                self.job.api in ("pytorchjob", "trainjob"),
                f"job.api {self.job.api!r} is not pytorchjob or trainjob",
            ),
            (
                bool(self.job.queue) or not self.job.priority_class,
                f"job.priority_class {self.job.priority_class!r} needs job.queue (a Kueue LocalQueue)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-steps per optimizer step so that one step sees batch.global_batch_tokens tokens."""
        per_micro = self.batch.micro_batch_size * self.batch.seq_len * world_size
        if self.batch.global_batch_tokens % per_micro:
            raise ConfigError(
                f"batch.global_batch_tokens {self.batch.global_batch_tokens} is not a multiple of "
                f"micro_batch_size {self.batch.micro_batch_size} x seq_len {self.batch.seq_len} x "
                f"{world_size} processes = {per_micro}"
            )
        return self.batch.global_batch_tokens // per_micro

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Config = TypeVar("Config", bound=TrainConfig)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Builds dataclass `cls` from a mapping, recursing into sections; unknown keys are errors."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        path = f"{where}.{name}" if where else name
        if name not in fields:
            raise ConfigError(f"unknown config key {path!r}; known here: {', '.join(sorted(fields))}")
        tp = hints[name]
        args = typing.get_args(tp)
        if _is_dataclass_type(tp):
            kwargs[name] = _build(tp, value or {}, path)
        elif typing.get_origin(tp) is dict and len(args) == 2 and _is_dataclass_type(args[1]):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a mapping of sections")
            kwargs[name] = {str(k): _build(args[1], v or {}, f"{path}.{k}") for k, v in value.items()}
        else:
            kwargs[name] = _coerce(path, tp, value)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not key=value (e.g. optim.lr=1e-4)")
    # YAML reads lists and mappings; scalars stay strings so the field's type decides.
    value: Any = yaml.safe_load(raw) if raw.strip().startswith(("[", "{")) else raw
    return key.strip(), value


def config_from_mapping(cls: type[Config], values: Mapping[str, Any]) -> Config:
    """Builds and validates a config from a nested mapping (a YAML file or a ConfigMap)."""
    config = _build(cls, values, "")
    config.validate()
    return typing.cast(Config, config)


def load_config(cls: type[Config], argv: Sequence[str] | None = None) -> Config:
    """Parses `--config FILE [key=value ...]` into a validated config of `cls`."""
    parser = argparse.ArgumentParser(description=(cls.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", default="", help="YAML file of config sections")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1e-4")
    args = parser.parse_args(argv)
    tree: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections")
        tree = loaded
    for text in args.overrides:
        key, value = _parse_override(text)
        _set_dotted(tree, key, value)
    return config_from_mapping(cls, tree)


def describe_fields(cls: type, prefix: str = "") -> list[str]:
    """One line per config field, dotted name, default and help text, recursing into sections."""
    hints = typing.get_type_hints(cls)
    lines: list[str] = []
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name}"
        if _is_dataclass_type(hints[field.name]):
            lines += describe_fields(hints[field.name], name + ".")
            continue
        default = (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        )
        lines.append(f"  {name} = {default!r}: {field.metadata.get('help', '')}")
    return lines


def stage_config(cls: type[Config], argv: Sequence[str] | None, prog: str) -> Config:
    """`load_config` for a training entrypoint's command line: --help lists every field with its
    default, --print-config prints the effective config and exits, and a bad file, key or value is
    one line on stderr and exit status 2 (no traceback)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(cls.__doc__ or "").strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config fields (set in the YAML file or as key=value):\n" + "\n".join(describe_fields(cls)),
    )
    parser.add_argument("--config", default="", help="YAML file of config sections")
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective config (defaults filled in) and exit"
    )
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1e-4")
    args = parser.parse_args(argv)
    forwarded = (["--config", args.config] if args.config else []) + list(args.overrides)
    try:
        config = load_config(cls, forwarded)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.print_config:
        print(dump_config(config), end="")
        raise SystemExit(0)
    return config


def dump_config(config: TrainConfig) -> str:
    """The effective config as YAML, loadable by `load_config`."""
    return yaml.safe_dump(config.as_dict(), sort_keys=False)
