"""The demo's knobs: one dataclass per stage, read from configs/tiny/demo.yaml, with a `quick:`
profile (the shortened run the e2e test uses) merged over the full one.

    config = load_demo_config("configs/tiny/demo.yaml", profile="quick", overrides=["grpo.steps=20"])

Training stages name their own YAML (configs/tiny/*.yaml) and a mapping of dotted overrides that
is handed to the stage's entrypoint as `key=value` arguments, so the demo runs each stage exactly
as `torchrun -m ...` would, only with fewer steps.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mathforge.runtime.config import ConfigError, option

PROFILES = ("full", "quick")
CHECK_NAMES = (
    "recall",
    "rl_beats_sft",
    "maj_at_k_rises_sft",
    "maj_at_k_rises_rl",
    "pass_at_k_at_least_maj_at_k",
)


@dataclasses.dataclass
class StageRun:
    """A training entrypoint's YAML and the dotted overrides the demo adds to it."""

    config: str = option("", "the stage's YAML (configs/tiny/*.yaml)")
    overrides: dict[str, Any] = option({}, "dotted key: value overrides passed as key=value")

    def arguments(self, extra: Mapping[str, Any]) -> list[str]:
        """`--config FILE key=value ...` with the demo's paths (extra) applied last."""
        merged = {**self.overrides, **extra}
        return ["--config", self.config, *(f"{k}={_flat(v)}" for k, v in merged.items())]

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A setting as the stage will see it: the demo's override, else the stage YAML's value."""
        if dotted in self.overrides:
            return self.overrides[dotted]
        node: Any = yaml.safe_load(Path(self.config).read_text()) or {}
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def steps(self) -> int:
        return int(self.setting("batch.steps", 0))


def _flat(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclasses.dataclass
class WebConfig:
    """Stage 1: the miniature web and the recall rounds."""

    pages: int = option(10_000, "pages of the generated miniature web")
    recall_config: str = option("configs/tiny/recall.yaml", "recall settings (classifier/recall_config.py)")
    recall_overrides: dict[str, Any] = option({}, "dotted recall overrides, e.g. train.epoch: 10")
    score_batch: int = option(512, "documents per Score call to the classifier service")


@dataclasses.dataclass
class CorpusConfig:
    """Stage 2: dedup and decontamination through the dedup service."""

    benchmark_dir: str = option("tests/fixtures/benchmarks", "benchmark-format files decontaminated against")
    planted: int = option(6, "benchmark questions pasted into mined pages, so decontamination has work")
    batch: int = option(256, "documents per CheckAndInsert / Decontaminate call")


@dataclasses.dataclass
class PretrainConfig:
    """Stage 3a: tokenizer and continued pretraining on the mined corpus, code and general text."""

    vocab_size: int = option(512, "byte-level BPE vocabulary of the demo's tokenizer")
    code_documents: int = option(600, "code-like documents (programs of synthetic problems)")
    general_documents: int = option(2000, "general-text documents (non-math web pages)")
    tokenizer_web_documents: int = option(0, "documents of each web source the tokenizer learns from")
    weights: dict[str, float] = option(
        {"math_corpus": 0.5, "worked_problems": 0.2, "code": 0.2, "general": 0.1},
        "mixture weights by source (the paper's 56/4/10/20/10 shape, DeepSeekMath §2.3)",
    )
    run: StageRun = dataclasses.field(default_factory=lambda: StageRun("configs/tiny/pretrain.yaml"))


@dataclasses.dataclass
class RewardStageConfig:
    """Stage 4: ORM and PRM from policy samples labelled the Math-Shepherd way."""

    questions: int = option(64, "training questions the SFT policy answers")
    samples_per_question: int = option(4, "sampled solutions per question")
    shepherd_samples: int = option(4, "completions per step prefix (Math-Shepherd used 8)")
    temperature: float = option(1.0, "sampling temperature of solutions and completions")
    max_tokens: int = option(64, "new tokens per solution or completion")
    orm: StageRun = dataclasses.field(default_factory=lambda: StageRun("configs/tiny/reward-orm.yaml"))
    prm: StageRun = dataclasses.field(default_factory=lambda: StageRun("configs/tiny/reward-prm.yaml"))


@dataclasses.dataclass
class EvalConfig:
    """Stage 6: held-out evaluation of base, SFT and RL through the evaluator service."""

    problems: int = option(200, "held-out synthetic problems (the test split)")
    difficulty: int = option(1, "operations per held-out problem (the GRPO task's difficulty)")
    k: int = option(16, "samples per problem; maj@k and pass@k for k = 1, 2, 4, ... up to it")
    temperature: float = option(1.0, "sampling temperature of samples 2..k (sample 1 is greedy)")
    max_tokens: int = option(64, "new tokens per sample")
    prompt_styles: dict[str, str] = option(
        {"base": "few_shot", "sft": "chat", "rl": "chat"},
        "prompt style by stage (DeepSeekMath §3.2: few-shot for base models, zero-shot for instruct/RL; "
        "`chat` is the zero-shot prompt in the chat format SFT and GRPO train on)",
    )


@dataclasses.dataclass
class ChecksConfig:
    """What the demo must show."""

    min_recall: float = option(0.9, "last recall round's recall")
    min_precision: float = option(0.9, "last recall round's precision")
    min_rl_gain: float = option(0.05, "RL greedy accuracy minus SFT's")
    skip: list[str] = option(
        [],
        "checks this profile cannot pass by design (too few steps or problems): reported as SKIP with "
        f"their numbers, not judged; any of {', '.join(CHECK_NAMES)}",
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skip) - set(CHECK_NAMES))
        if unknown:
            raise ConfigError(f"checks.skip names unknown checks {unknown}; known: {', '.join(CHECK_NAMES)}")


@dataclasses.dataclass
class DemoConfig:
    """The whole miniature recipe."""

    seed: int = option(0, "seeds the web, the data and every stage")
    runs_dir: str = option("runs", "the report goes to <runs_dir>/<timestamp>/")
    port_offset: int = option(-1, "added to every service's default port; -1 = find a free offset")
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    sft: StageRun = dataclasses.field(default_factory=lambda: StageRun("configs/tiny/sft.yaml"))
    reward: RewardStageConfig = dataclasses.field(default_factory=RewardStageConfig)
    grpo: StageRun = dataclasses.field(default_factory=lambda: StageRun("configs/tiny/grpo.yaml"))
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checks: ChecksConfig = dataclasses.field(default_factory=ChecksConfig)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """A dataclass from a mapping, section by section; unknown keys and wrong types are errors."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'demo config'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown demo setting {path!r}; known here: {', '.join(sorted(names))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(typing.cast(type, tp), value or {}, path)
        else:
            kwargs[key] = _checked(path, tp, value)
    return cls(**kwargs)


def _checked(path: str, tp: Any, value: Any) -> Any:
    base = typing.get_origin(tp) or tp
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"demo setting {path!r}: {value!r} is not a {getattr(base, '__name__', base)}")
    return value


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section (a StageRun's overrides merge key by key too)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dotted(pairs: Sequence[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"override {pair!r} is not key=value (e.g. grpo.overrides.batch.steps=20)")
        node = tree
        parts = key.split(".")
        # Keys below `overrides` are the stage's own dotted keys: keep them whole.
        if "overrides" in parts:
            at = parts.index("overrides")
            parts = [*parts[: at + 1], ".".join(parts[at + 1 :])]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return tree


def load_demo_config(path: str | Path, profile: str = "full", overrides: Sequence[str] = ()) -> DemoConfig:
    """The demo config from YAML: the top level, then the profile's section, then `key=value`s."""
    if profile not in PROFILES:
        raise ConfigError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"demo config {file} does not exist (--config)")
    loaded = yaml.safe_load(file.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{file}: expected a mapping of demo settings")
    profiles = {name: loaded.pop(name, None) or {} for name in PROFILES if name != "full"}
    values: dict[str, Any] = loaded
    if profile != "full":
        values = merge(values, profiles[profile])
    values = merge(values, _dotted(overrides))
    return typing.cast(DemoConfig, build(DemoConfig, values))
