"""The reward service's configuration.

config = Config.from_args(["--prm-path", "runs/prm/final"])   # flags and MATHFORGE_* variables
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mathforge.evaluator.grading import GradingPolicy
from mathforge.reward.steps import DEFAULT_SEPARATOR
from mathforge.runtime.config import ConfigError, ServiceConfig, option
from mathforge.runtime.registry import SERVICES

_SPEC = SERVICES["reward"]


@dataclass
class Config(ServiceConfig):
    """Reward service: rule, outcome-RM, process-RM and mixed rewards with dynamic batching."""

    port: int = option(_SPEC.port, "gRPC port")
    metrics_port: int = option(_SPEC.metrics_port, "Prometheus /metrics port (-1 = off)")
    orm_path: str = option("", "outcome reward model directory (mathforge.reward.train output); empty = none")
    prm_path: str = option("", "process reward model directory; empty = none")
    random_model_preset: str = option(
        "",
        "with no path, serve random-weight ORM and PRM of this preset (e.g. tiny); Info says random_weights",
    )
    step_separator: str = option(
        DEFAULT_SEPARATOR, "step separator of a random-weight PRM (trained ones carry theirs)"
    )
    device: str = option("auto", "auto (cuda when present), cuda or cpu")
    dtype: str = option("auto", "auto (bfloat16 on cuda, float32 on cpu), float32 or bfloat16")
    max_items: int = option(1024, "items per Score request")
    max_text_bytes: int = option(64 * 1024, "bytes of each question, response and reference")
    max_tokens: int = option(
        4096, "tokens per item for the RMs (prompt + response), capped by the model's context"
    )
    max_batch: int = option(64, "items per forward pass (dynamic batching)")
    max_batch_tokens: int = option(
        0, "most padded tokens (rows x longest) per forward pass; 0 = auto: 4096 on cpu, 262144 on cuda"
    )
    max_wait_ms: float = option(5.0, "how long a forward pass waits for requests already on their way, ms")
    dynamic_batching: bool = option(
        True, "merge concurrent requests into one forward pass (off = one at a time)"
    )
    grade_threads: int = option(2, "threads computing rule rewards (the event loop never grades)")
    symbolic_workers: int = option(2, "math-verify worker processes for the grader's symbolic checks")
    grading_policy: str = option(
        "",
        'GradingPolicy fields as JSON, e.g. {"timeout_s": 1, "last_number_fallback": false}',
    )
    max_lines: int = option(
        4,
        "most named lines holding their own RMs (e.g. one iterative-RL run's retrained PRM); loading "
        "into one more evicts the least recently used line with no call in flight",
    )

    def validate(self) -> None:
        super().validate()
        if self.max_batch_tokens < 0:
            raise ConfigError(f"max_batch_tokens {self.max_batch_tokens} must be >= 0 (0 = auto)")
        for name in (
            "max_items",
            "max_text_bytes",
            "max_tokens",
            "max_batch",
            "grade_threads",
            "symbolic_workers",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be >= 1")
        if self.max_lines < 0:
            raise ConfigError(f"max_lines {self.max_lines} must be >= 0 (--max-lines)")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms {self.max_wait_ms} must be >= 0")
        for name in ("orm_path", "prm_path"):
            path = getattr(self, name)
            if path and not Path(path).is_dir():
                raise ConfigError(f"{name} {path} is not a directory (--{name.replace('_', '-')})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device {self.device!r} is not auto, cpu or cuda")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"dtype {self.dtype!r} is not auto, float32 or bfloat16")
        if not self.step_separator:
            raise ConfigError("step_separator must not be empty")
        self.policy()

    def policy(self) -> GradingPolicy:
        try:
            values = json.loads(self.grading_policy) if self.grading_policy.strip() else {}
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object of GradingPolicy fields")
            return GradingPolicy.from_mapping(values)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"grading_policy: {exc}") from None
