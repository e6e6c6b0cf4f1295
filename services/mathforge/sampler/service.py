"""The Sampler service: n completions per prompt with token ids and log-probabilities, from
versioned policy weights that LoadWeights replaces while requests keep flowing.

    mathforge serve sampler                                      # tiny random-weight model, CPU
    mathforge serve sampler --model-path runs/sft/final
    mathforge serve sampler --backend vllm --model-path /models/sft --dtype bfloat16 \\
        --tensor-parallel-size 2

A request is validated whole (limits.py) before any work. It is then admitted on the serving
weights (weights.py), sampled by the backend off the event loop, and every completion is tagged
with the version that produced it; `min_version` (or an exact `require_version`) turns a stale call
into FAILED_PRECONDITION. LoadWeights stages the new weights while the old ones serve, read from a
checkpoint path or received over the trainer's collective (weight_stream.py), and swaps only when
they arrived whole and match their checksum, so a bad version changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

import mathforge
from mathforge.runtime.config import ConfigError, ServiceConfig, option
from mathforge.runtime.errors import RequestError, check_version, require
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import Service
from mathforge.sampler.backend import GenerationJob, Sample, SamplerBackend, WeightsError
from mathforge.sampler.limits import SamplerLimits, check_request
from mathforge.sampler.metrics import SamplerMetrics
from mathforge.sampler.weight_stream import StreamReceiver
from mathforge.sampler.weights import ServingWeights, WeightsGate
from mathforge.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc

log = logging.getLogger(__name__)
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


def completion_message(sample: Sample, version: int) -> sampler_pb2.Completion:
    return sampler_pb2.Completion(
        prompt_index=sample.prompt_index,
        sample_index=sample.sample_index,
        token_ids=sample.token_ids,
        logprobs=sample.logprobs,
        text=sample.text,
        finish_reason=sample.finish_reason,
        weights_version=version,
    )


class SamplerService(Service, sampler_pb2_grpc.SamplerServicer):
    name = _SPEC.proto_name

    def __init__(self, config: Config, backend: SamplerBackend | None = None):
        super().__init__(config)
        self.config: Config = config
        self.backend = backend or build_backend(config)
        self.gate: WeightsGate | None = None
        self.limits: SamplerLimits | None = None
        self._load_lock = asyncio.Lock()
        self.receiver = StreamReceiver()
        self.metrics = SamplerMetrics(self.registry, self.backend.queue_depth)

    # ---- lifetime -------------------------------------------------------------------------
    def register(self, server: grpc.aio.Server) -> None:
        sampler_pb2_grpc.add_SamplerServicer_to_server(self, server)

    async def start(self) -> None:
        try:
            handle = await self.backend.start()
        except WeightsError as exc:
            raise ConfigError(f"cannot load --model-path: {exc}") from exc
        config, backend = self.config, self.backend
        checksum = getattr(backend, "initial_checksum", "")
        initial = ServingWeights(0, handle, config.model_path, checksum=checksum)
        self.gate = WeightsGate(initial, drains=backend.swap_drains)
        self.limits = SamplerLimits(
            max_batch=config.max_batch,
            max_n=config.max_n,
            max_prompt_tokens=min(config.max_prompt_tokens, backend.max_model_len - 1),
            max_new_tokens=config.max_new_tokens,
            default_max_tokens=config.default_max_tokens,
            max_stop_strings=config.max_stop_strings,
            max_stop_chars=256,
            max_model_len=backend.max_model_len,
            vocab_size=backend.vocab_size,
        )
        self.metrics.weights_version.set(0)
        log.info(
            "model ready",
            extra={"fields": {"backend": backend.name, "model": self._model_name(), **backend.describe()}},
        )

    async def stop(self) -> None:
        await self.backend.close()

    def _ready(self) -> tuple[WeightsGate, SamplerLimits]:
        if self.gate is None or self.limits is None:
            raise RequestError.unavailable("the sampler model is not loaded yet")
        return self.gate, self.limits

    def _model_name(self) -> str:
        return self.config.model_path or f"random-weights:{self.config.preset}:seed={self.config.seed}"

    # ---- sampling -------------------------------------------------------------------------
    async def _sample(
        self, request: sampler_pb2.GenerateRequest, emit: Callable[[sampler_pb2.Completion], None]
    ) -> tuple[list[list[int]], int]:
        """Validates, admits on the serving weights and samples, passing each finished completion to
        `emit` (from the backend's thread); returns (prompts as token ids, weights version)."""
        gate, limits = self._ready()
        if sum(len(p.text) for p in request.prompts) > 1 << 20:  # long texts tokenise off the loop
            prompts, settings = await asyncio.to_thread(
                check_request, request, limits, self.backend.tokenizer
            )
        else:
            prompts, settings = check_request(request, limits, self.backend.tokenizer)
        admitted = time.monotonic()
        samples: list[Sample] = []
        async with gate.use() as weights:
            version = weights.version
            if request.HasField("require_version") and request.require_version != version:
                self.metrics.requests.labels("stale").inc()
                raise RequestError.precondition(
                    f"weights version {version} is serving, not the required {request.require_version}"
                )
            if request.HasField("min_version") and version < request.min_version:
                self.metrics.requests.labels("stale").inc()
                raise RequestError.precondition(
                    f"weights version {version} is serving, older than the required minimum "
                    f"{request.min_version}"
                )

            def collect(sample: Sample) -> None:
                samples.append(sample)
                emit(completion_message(sample, version))

            job = GenerationJob(prompts, settings)
            try:
                await self.backend.generate(job, weights.handle, collect)
            except Exception:
                self.metrics.requests.labels("error").inc()
                raise
        self.metrics.observe_request(samples, len(prompts), admitted, job.first_token_at, time.monotonic())
        return prompts, version

    async def Generate(
        self, request: sampler_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> sampler_pb2.GenerateResponse:
        completions: list[sampler_pb2.Completion] = []
        prompts, version = await self._sample(request, completions.append)
        results = [sampler_pb2.PromptResult(prompt_token_ids=ids) for ids in prompts]
        for completion in sorted(completions, key=lambda c: (c.prompt_index, c.sample_index)):
            results[completion.prompt_index].completions.append(completion)
        return sampler_pb2.GenerateResponse(results=results, weights_version=version)

    async def GenerateStream(
        self, request: sampler_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sampler_pb2.Completion]:
        loop = asyncio.get_running_loop()
        finished: asyncio.Queue[sampler_pb2.Completion] = asyncio.Queue()

        def emit(completion: sampler_pb2.Completion) -> None:
            loop.call_soon_threadsafe(finished.put_nowait, completion)

        task = asyncio.ensure_future(self._sample(request, emit))
        try:
            while not (task.done() and finished.empty()):
                getter = asyncio.ensure_future(finished.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            task.result()  # the call's error, if it failed
        finally:
            if not task.done():
                task.cancel()

    # ---- weights --------------------------------------------------------------------------
    async def LoadWeights(
        self, request: sampler_pb2.LoadWeightsRequest, context: grpc.aio.ServicerContext
    ) -> sampler_pb2.LoadWeightsResponse:
        gate, _ = self._ready()
        streamed = request.HasField("stream")
        require(
            bool(request.path) != streamed,
            "set exactly one of path (a checkpoint directory) and stream (the trainer's collective)",
        )
        if streamed:
            # the sampler connects out to the trainer's store: only to one on the allow-list
            self.access.require_target("weight_store", request.stream.store_address, "stream.store_address")
            source = f"stream group {request.stream.group_id}"
        else:
            source = str(self.access.require_path("model", request.path))
        async with self._load_lock:
            serving = gate.current.version
            check_version(request.version, serving)
            started = time.perf_counter()
            try:
                if streamed:
                    staged = await self.backend.stage_stream(request.stream, self.receiver)
                else:
                    staged = await self.backend.stage_weights(source)

                async def activate() -> ServingWeights:
                    handle = await self.backend.activate(staged)
                    return ServingWeights(request.version, handle, staged.path, checksum=staged.checksum)

                await gate.swap(activate)
            except WeightsError as exc:
                self.metrics.weight_loads.labels("failed").inc()
                log.warning(
                    "weights rejected",
                    extra={"fields": {"source": source, "error": str(exc), "serving_version": serving}},
                )
                raise RequestError.precondition(
                    f"could not load version {request.version} from {source}; still serving version "
                    f"{serving}: {exc}"
                ) from None
            seconds = time.perf_counter() - started
        self.metrics.weight_loads.labels("ok").inc()
        self.metrics.weights_version.set(request.version)
        self.metrics.load_seconds.set(seconds)
        self.metrics.load_bytes_per_second.set(staged.bytes / seconds if seconds > 0 else 0)
        log.info(
            "weights loaded",
            extra={
                "fields": {
                    "version": request.version,
                    "source": source,
                    "bytes": staged.bytes,
                    "checksum": staged.checksum,
                    "load_seconds": round(seconds, 3),
                }
            },
        )
        return sampler_pb2.LoadWeightsResponse(
            version=request.version, load_seconds=seconds, bytes=staged.bytes, checksum=staged.checksum
        )

    async def Info(
        self, request: common_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        gate, limits = self._ready()
        weights = gate.current
        details = {
            **self.backend.describe(),
            "weights_path": weights.path,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(weights.loaded_at)),
            "in_flight": str(gate.in_flight),
        }
        return common_pb2.ServiceInfo(
            service=self.name,
            software_version=mathforge.__version__,
            model=weights.path or self._model_name(),
            model_version=weights.version,
            backend=self.backend.name,
            random_weights=not self.config.model_path and weights.version == 0,
            limits={**limits.as_info(), "max_message_bytes": self.config.max_message_bytes},
            details=details,
            models=[
                common_pb2.ServedModel(
                    kind="policy",
                    version=weights.version,
                    path=weights.path,
                    checksum=weights.checksum,
                    dtype=self.backend.served_dtype(),
                )
            ],
        )


def create_service(config: Config) -> SamplerService:
    return SamplerService(config)
