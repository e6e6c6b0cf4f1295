"""Settings of the iterative recall pipeline, from YAML (configs/*/recall.yaml) and overrides.

Defaults are the paper's (DeepSeekMath §2.1) where it gives a number; the rest are marked ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mathforge.classifier.model import TrainSettings


@dataclass
class RecallConfig:
    """One recall run: rounds, keep rule, domain discovery, stop rule and fastText training."""

    max_rounds: int = 4  # §1: four rounds of recall
    domain_share: float = 0.10  # §1: a domain with more than 10% of its pages collected is math-related
    stop_new_share: float = 0.02  # §1: round 4 collected ~98% already collected in round 3
    keep_threshold: float = 0.5  # ours: keep pages with P(math) >= this, when keep_tokens is 0
    keep_tokens: int = 0  # §1 kept the top 40B tokens in round 1; 0 = use keep_threshold
    # ours: with keep_tokens, pages scoring below this are never kept (bounds the candidates a
    # scoring shard writes; the budget's threshold is raised to it when it falls lower)
    candidate_floor: float = 0.5
    prefix_depth: int = 1  # ours: URL path segments in a proposed prefix
    min_prefix_pages: int = 5  # ours: collected pages a prefix needs to be proposed
    min_prefix_share: float = 0.1  # ours: least collected share of a proposed prefix (and >= its domain's)
    auto_approve: bool = False  # §1: people annotate the math paths; true approves proposals unattended
    score_batch: int = 4096  # ours: documents per predict call while scoring the corpus
    seed: int = 0
    train: TrainSettings = field(default_factory=TrainSettings)

    def validate(self) -> None:
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds {self.max_rounds} must be at least 1")
        for name in (
            "domain_share",
            "stop_new_share",
            "keep_threshold",
            "min_prefix_share",
            "candidate_floor",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} must be within 0..1")
        for name in ("prefix_depth", "min_prefix_pages", "score_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)} must be at least 1")
        if self.keep_tokens < 0:
            raise ValueError(f"keep_tokens {self.keep_tokens} must be >= 0")
        self.train.validate()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RecallConfig:
        """Builds a config from a mapping (a `train:` sub-mapping for TrainSettings); unknown keys fail."""
        values = dict(values)
        train_values = values.pop("train", None) or {}
        config = cls(**_known(cls, values), train=TrainSettings(**_known(TrainSettings, train_values)))
        config.validate()
        return config

    @classmethod
    def from_file(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> RecallConfig:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of recall settings")
        return cls.from_mapping(merge_overrides(loaded, overrides or {}))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def merge_overrides(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Applies dotted overrides ("train.epoch": 5) to a nested mapping, returning a new mapping."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in overrides.items():
        head, _, tail = key.partition(".")
        if tail:
            merged.setdefault(head, {})[tail] = value
        else:
            merged[head] = value
    return merged


def _known(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings {unknown}; known: {sorted(names)}")
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = hints[key] if isinstance(hints[key], str) else getattr(hints[key], "__name__", "")
        try:
            if kind == "int":
                out[key] = int(value)
            elif kind == "float":
                out[key] = float(value)
            elif kind == "bool":
                out[key] = (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                )
            else:
                out[key] = value
        except (TypeError, ValueError):
            raise ValueError(f"{cls.__name__} setting {key}: {value!r} is not a {kind}") from None
    return out
