"""The sampler service's configuration and the backend it names.

config = Config.from_args(["--model-path", "runs/sft/final"])   # flags and MATHFORGE_* variables
backend = build_backend(config)                                  # transformers, or vllm on GPU
"""

from __future__ import annotations

from dataclasses import dataclass

from mathforge.runtime.config import ConfigError, ServiceConfig, option
from mathforge.runtime.registry import SERVICES
from mathforge.sampler.backend import SamplerBackend

_SPEC = SERVICES["sampler"]
BACKENDS = ("transformers", "vllm")


@dataclass
class Config(ServiceConfig):
    """Sampler service: n samples per prompt with logprobs, versioned policy weights."""

    port: int = option(_SPEC.port, "gRPC port")
    metrics_port: int = option(_SPEC.metrics_port, "Prometheus /metrics port (-1 = off)")
    backend: str = option("transformers", "transformers (CPU, small runs) or vllm (GPU)")
    model_path: str = option("", "policy checkpoint directory; empty = a random-weight preset model")
    preset: str = option("tiny", "model preset built with random weights when model_path is empty")
    seed: int = option(0, "seed of the random-weight model (the same seed builds the same model)")
    dtype: str = option("float32", "weights dtype: float32, bfloat16 or float16")
    device: str = option("cpu", "transformers backend device: cpu or cuda[:n]")
    max_batch: int = option(256, "most prompts in one Generate request")
    max_n: int = option(64, "most samples per prompt (DeepSeekMath §4: G = 64)")
    max_prompt_tokens: int = option(2048, "longest prompt, tokens")
    max_new_tokens: int = option(1024, "most new tokens per completion (DeepSeekMath §4: max length 1024)")
    default_max_tokens: int = option(256, "new tokens per completion when a request sets max_tokens 0")
    max_stop_strings: int = option(16, "most stop strings per request")
    max_batch_rows: int = option(512, "transformers: most sample rows in the running batch")
    batch_wait_ms: float = option(
        2.0, "transformers: how long a request finding the decoder idle waits for others to batch with"
    )
    torch_threads: int = option(0, "transformers: torch intra-op threads (0 = torch's default)")
    tensor_parallel_size: int = option(1, "vllm: GPUs one engine spans (tensor parallel)")
    gpu_memory_utilization: float = option(0.9, "vllm: share of GPU memory the engine may take")
    max_model_len: int = option(0, "vllm: context length, prompt + completion (0 = the model's)")
    enforce_eager: bool = option(False, "vllm: no CUDA graphs (faster start, slower decoding)")
    weight_transfer: bool = option(
        False, "vllm: accept weights streamed by the trainer over NCCL (vLLM's weight-transfer engine)"
    )
    max_lines: int = option(
        4,
        "transformers: most named policy lines held besides the default (a model copy each); loading "
        "one more evicts the least recently used line with no call in flight",
    )

    def validate(self) -> None:
        super().validate()
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)} (--backend)")
        if self.backend == "vllm" and not self.model_path:
            raise ConfigError("the vllm backend needs a checkpoint (--model-path)")
        for name in (
            "max_batch",
            "max_n",
            "max_prompt_tokens",
            "max_new_tokens",
            "default_max_tokens",
            "max_stop_strings",
            "max_batch_rows",
            "tensor_parallel_size",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} {getattr(self, name)} must be at least 1 (--{name.replace('_', '-')})"
                )
        if self.max_batch_rows < self.max_n:
            raise ConfigError(
                f"max_batch_rows {self.max_batch_rows} is below max_n {self.max_n}: one prompt's samples "
                "must fit in a micro-batch (--max-batch-rows)"
            )
        if self.max_lines < 0:
            raise ConfigError(f"max_lines {self.max_lines} must be at least 0 (--max-lines)")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"batch_wait_ms {self.batch_wait_ms} must be in [0, 1000] (--batch-wait-ms)")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization {self.gpu_memory_utilization} must be in (0, 1]")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype {self.dtype!r} is not float32, bfloat16 or float16 (--dtype)")


def build_backend(config: Config) -> SamplerBackend:
    """The backend `config.backend` names; vLLM is imported only when chosen."""
    if config.backend == "vllm":
        from mathforge.sampler.vllm_backend import VllmBackend

        return VllmBackend(
            config.model_path,
            dtype=config.dtype,
            seed=config.seed,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
            weight_transfer=config.weight_transfer,
        )
    from mathforge.sampler.transformers_backend import TransformersBackend

    return TransformersBackend(
        config.model_path,
        config.preset,
        config.dtype,
        config.device,
        config.seed,
        config.max_batch_rows,
        config.torch_threads,
        config.batch_wait_ms / 1000,
    )
