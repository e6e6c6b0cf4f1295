"""What every sampler backend takes and gives: a job of prompts with sampling settings in, one
`Sample` per (prompt, sample index) out, and policy weights loaded in two phases.

    backend = TransformersBackend(...)          # or VllmBackend(...)
    weights = await backend.start()             # the weights it serves first
    await backend.generate(job, weights, on_sample)
    staged = await backend.stage_weights(path)  # while the old weights keep serving
    staged = await backend.stage_stream(stream, receiver)  # or: over the collective
    weights = await backend.activate(staged)    # the swap itself
    weights = await backend.activate(staged, line="run-a")  # a named policy line (if supports_lines)

Loading is split so the service can do the slow part (reading and checking the checkpoint) while
requests keep flowing and the swap itself at a moment it chooses: at once for a backend whose calls
hold their own weights (`swap_drains = False`), or once calls in flight have finished for one whose
weights live in a single engine (`swap_drains = True`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import PreTrainedTokenizerBase

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass(frozen=True)
class SamplingSettings:
    """One request's sampling parameters, already defaulted and validated by the service."""

    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off
    max_tokens: int = 16
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class GenerationJob:
    """The prompts of one request (token ids, BOS included) and how to sample them."""

    prompts: Sequence[Sequence[int]]
    settings: SamplingSettings
    #: Index of prompts[0] in the request this job is part of (Sample.prompt_index counts from it).
    prompt_offset: int = 0
    #: time.monotonic() when the backend sampled this job's first token (set by the backend).
    first_token_at: float | None = None
    #: Set when the caller went away (cancelled, deadline passed): a backend may stop its work.
    cancelled: bool = False


@dataclass
class Sample:
    """One finished completion: the sampled tokens, log pi(token | prefix) of each under the raw
    model (before temperature, top-k and top-p), the decoded text and why it ended."""

    prompt_index: int
    sample_index: int
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


SampleCallback = Callable[[Sample], None]


@dataclass
class StagedWeights:
    """A checkpoint read and checked by `stage_weights`, ready for `activate`."""

    path: str
    bytes: int
    seconds: float
    #: Backend-specific payload (a loaded model for transformers, nothing for vLLM).
    payload: Any = None
    details: dict[str, str] = field(default_factory=dict)
    #: Checksum of the staged weights (models/transfer.py), reported by Info once they serve.
    checksum: str = ""


class WeightsError(RuntimeError):
    """A checkpoint could not be staged or activated; the weights serving before keep serving."""


class SamplerBackend(abc.ABC):
    """A model that samples completions, and the way new weights reach it."""

    #: Short name shown by Info, e.g. "transformers" or "vllm".
    name: ClassVar[str] = ""
    #: True when activating new weights must wait for calls in flight to finish first.
    swap_drains: ClassVar[bool] = False
    #: True when it can hold several policy lines at once (service.py); otherwise only the default.
    supports_lines: ClassVar[bool] = True

    tokenizer: PreTrainedTokenizerBase
    #: The longest prompt + completion the model takes, in tokens.
    max_model_len: int
    #: Size of the model's output layer; token ids must be below it.
    vocab_size: int

    @abc.abstractmethod
    async def start(self) -> Any:
        """Builds or loads the initial model and returns its weights handle."""

    @abc.abstractmethod
    async def generate(self, job: GenerationJob, weights: Any, on_sample: SampleCallback) -> None:
        """Samples every (prompt, sample index) of `job` on `weights`, calling `on_sample` from any
        thread as each completion finishes; returns once all have."""

    @abc.abstractmethod
    async def stage_weights(self, path: str) -> StagedWeights:
        """Reads and checks the checkpoint at `path` without disturbing the serving weights; raises
        WeightsError naming the problem."""

    async def stage_stream(self, stream: Any, receiver: Any, line: str = "") -> StagedWeights:
        """Stages weights the trainer streams over the collective for policy `line`: `stream` is the
        request's WeightStream, `receiver` the line's StreamReceiver (weight_stream.py), which keeps
        the transfer group between versions. WeightsError when this backend cannot receive them."""
        raise WeightsError(f"the {self.name} backend cannot receive weights over the collective; use a path")

    @abc.abstractmethod
    async def activate(self, staged: StagedWeights, line: str = "") -> Any:
        """Makes staged weights the serving ones of policy `line` (a new line starts with them) and
        returns their handle; on WeightsError the previous weights still serve."""

    def drop_line(self, line: str) -> None:
        """Releases a named line's weights (calls in flight on them finish first)."""

    def line_bytes(self, line: str = "") -> int:
        """Memory the line's weights take in this process (0 when the backend does not measure)."""
        return 0

    def served_dtype(self) -> str:
        """Element type of the serving weights, e.g. "bfloat16" (what a trainer must stream)."""
        return getattr(self, "dtype", "")

    def queue_depth(self) -> int:
        """Prompts accepted but not yet being decoded."""
        return 0

    def describe(self) -> dict[str, str]:
        """Facts for Info's details (device, dtype...)."""
        return {}

    async def close(self) -> None:
        """Releases the model and any worker threads or processes."""
