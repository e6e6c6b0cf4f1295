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

Policy lines: a request may name a `line`, an independent policy with versions of its own (one per
run when several trainers share the service); no name is the default line, the model the service
started with. A named line is created by its first LoadWeights; at most --max-lines are held, one
more evicts the least recently used idle one (runtime/lines.py). The vllm backend serves only the
default line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

import mathforge
from mathforge.runtime.config import ConfigError
from mathforge.runtime.errors import RequestError, check_version, require
from mathforge.runtime.lines import LineTable, check_line, line_label
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import Service
from mathforge.sampler.backend import GenerationJob, Sample, SamplerBackend, WeightsError
from mathforge.sampler.config import BACKENDS, Config, build_backend
from mathforge.sampler.limits import SamplerLimits, check_request
from mathforge.sampler.metrics import SamplerMetrics
from mathforge.sampler.weight_stream import StreamReceiver
from mathforge.sampler.weights import PolicyLine, ServingWeights, WeightsGate
from mathforge.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc

log = logging.getLogger(__name__)
_SPEC = SERVICES["sampler"]
__all__ = ["BACKENDS", "Config", "SamplerService", "build_backend", "create_service"]


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
        self.default: PolicyLine | None = None
        self.lines: LineTable[PolicyLine] = LineTable(config.max_lines, "max-lines", "policy line")
        self.limits: SamplerLimits | None = None
        self._create_lock = asyncio.Lock()  # one new line at a time: two loads never create the same
        self.metrics = SamplerMetrics(self.registry, self.backend.queue_depth, self._weights_bytes)

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
        self.default = PolicyLine("", WeightsGate(initial, drains=backend.swap_drains), StreamReceiver())
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

    def _ready(self) -> tuple[PolicyLine, SamplerLimits]:
        if self.default is None or self.limits is None:
            raise RequestError.unavailable("the sampler model is not loaded yet")
        return self.default, self.limits

    def _line_name(self, name: str) -> str:
        """A request's line, checked: INVALID_ARGUMENT for a malformed name or a named line on a
        backend that serves only the default one."""
        name = check_line(name)
        if name and not self.backend.supports_lines:
            raise RequestError.invalid(
                f"the {self.backend.name} backend serves only the default policy line (one engine holds "
                f"one set of weights), not line {name!r}: run one sampler per line, or send no line"
            )
        return name

    def _held(self, name: str) -> PolicyLine | None:
        default, _ = self._ready()
        return default if not name else self.lines.get(name)

    def _line(self, name: str) -> PolicyLine:
        line = self._held(name)
        if line is None:
            self.metrics.requests.labels("stale").inc()
            raise RequestError.precondition(
                f"policy line {name!r} is not loaded (never, or evicted as the least recently used of "
                f"{self.config.max_lines}, --max-lines); LoadWeights with line={name!r} first"
            )
        return line

    def _weights_bytes(self) -> float:
        names = [""] + [name for name, _ in self.lines.items()]
        return float(sum(self.backend.line_bytes(name) for name in names))

    def _model_name(self) -> str:
        return self.config.model_path or f"random-weights:{self.config.preset}:seed={self.config.seed}"

    # ---- sampling -------------------------------------------------------------------------
    async def _sample(
        self, request: sampler_pb2.GenerateRequest, emit: Callable[[sampler_pb2.Completion], None]
    ) -> tuple[list[list[int]], int]:
        """Validates, admits on the serving weights and samples, passing each finished completion to
        `emit` (from the backend's thread); returns (prompts as token ids, weights version)."""
        _, limits = self._ready()
        name = self._line_name(request.line)
        if sum(len(p.text) for p in request.prompts) > 1 << 20:  # long texts tokenise off the loop
            prompts, settings = await asyncio.to_thread(
                check_request, request, limits, self.backend.tokenizer
            )
        else:
            prompts, settings = check_request(request, limits, self.backend.tokenizer)
        admitted = time.monotonic()
        samples: list[Sample] = []
        gate = self._line(name).gate  # looked up after the last await: admitted at once, so never evicted
        async with gate.use() as weights:
            version = weights.version
            on = f" on line {name!r}" if name else ""
            if request.HasField("require_version") and request.require_version != version:
                self.metrics.requests.labels("stale").inc()
                raise RequestError.precondition(
                    f"weights version {version} is serving{on}, not the required {request.require_version}"
                )
            if request.HasField("min_version") and version < request.min_version:
                self.metrics.requests.labels("stale").inc()
                raise RequestError.precondition(
                    f"weights version {version} is serving{on}, older than the required minimum "
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
        self._ready()
        name = self._line_name(request.line)
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
        line = self._held(name)
        if line is None:
            async with self._create_lock:
                line = self._held(name)
                if line is None:
                    return await self._load(request, source, name, None)
        async with line.load_lock:
            return await self._load(request, source, name, line)

    async def _load(
        self, request: sampler_pb2.LoadWeightsRequest, source: str, name: str, line: PolicyLine | None
    ) -> sampler_pb2.LoadWeightsResponse:
        """Stages and swaps in one version of line `name` (`line` None: a new line, created once its
        weights staged whole, after evicting an idle line if the table is full)."""
        serving = line.gate.current.version if line is not None else 0
        check_version(request.version, serving)
        receiver = line.receiver if line is not None else StreamReceiver()
        started = time.perf_counter()
        try:
            if request.HasField("stream"):
                staged = await self.backend.stage_stream(request.stream, receiver, name)
            else:
                staged = await self.backend.stage_weights(source)

            async def activate() -> ServingWeights:
                handle = await self.backend.activate(staged, name)
                return ServingWeights(request.version, handle, staged.path, checksum=staged.checksum)

            if line is not None:
                await line.gate.swap(activate)
            else:
                for evicted, _ in self.lines.make_room(name, lambda held: held.busy):
                    self._evicted(evicted, name)
                weights = await activate()
                self.lines.put(
                    name, PolicyLine(name, WeightsGate(weights, self.backend.swap_drains), receiver)
                )
        except WeightsError as exc:
            self.metrics.weight_loads.labels("failed").inc()
            log.warning(
                "weights rejected",
                extra={
                    "fields": {"source": source, "line": name, "error": str(exc), "serving_version": serving}
                },
            )
            still = f"still serving version {serving}" if line is not None else "the line was not created"
            raise RequestError.precondition(
                f"could not load version {request.version} of {line_label(name)} from {source}; "
                f"{still}: {exc}"
            ) from None
        seconds = time.perf_counter() - started
        self.metrics.loaded(name, request.version, seconds, staged.bytes, len(self.lines))
        log.info(
            "weights loaded",
            extra={
                "fields": {
                    "version": request.version,
                    "line": name,
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

    def _evicted(self, name: str, for_line: str) -> None:
        self.backend.drop_line(name)
        self.metrics.evicted(name)
        log.warning(
            "policy line evicted",
            extra={"fields": {"line": name, "for": for_line, "max_lines": self.config.max_lines}},
        )

    async def Info(
        self, request: common_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        default, limits = self._ready()
        gate = default.gate
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
            models=[self._served(default), *(self._served(line) for _, line in self.lines.items())],
        )

    def _served(self, line: PolicyLine) -> common_pb2.ServedModel:
        weights = line.gate.current
        return common_pb2.ServedModel(
            kind="policy",
            version=weights.version,
            path=weights.path,
            checksum=weights.checksum,
            dtype=self.backend.served_dtype(),
            line=line.name,
            bytes=self.backend.line_bytes(line.name),
        )


def create_service(config: Config) -> SamplerService:
    return SamplerService(config)
