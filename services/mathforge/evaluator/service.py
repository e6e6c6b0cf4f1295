"""The Evaluator gRPC service: Grade, GradeBatch, Extract, RunProgram (sandbox) and Evaluate (a
benchmark run against a sampler, streamed).

    mathforge serve evaluator --port 50055 --benchmark-dir tests/fixtures/benchmarks
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter

import mathforge
from mathforge.evaluator import symbolic
from mathforge.evaluator.benchmarks import KNOWN_BENCHMARKS, load_benchmark, resolve_benchmark
from mathforge.evaluator.confine import LAYERS, REQUIRED_LAYERS
from mathforge.evaluator.confine import process as confine_process
from mathforge.evaluator.grading import extract_answer, grade
from mathforge.evaluator.policy import GradingPolicy
from mathforge.evaluator.policy_message import policy_from_message
from mathforge.evaluator.prompts import PROMPT_STYLES
from mathforge.evaluator.run import RunResult, RunSettings, run_benchmark, sampler_generate
from mathforge.evaluator.sandbox import SandboxLimits, SandboxSettings, missing_layers, probe, run_program
from mathforge.runtime.admission import Admission
from mathforge.runtime.client import RetryPolicy
from mathforge.runtime.config import ConfigError, ServiceConfig, option
from mathforge.runtime.errors import RequestError, check_bytes, check_count, check_range, require
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import Service
from mathforge.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc

log = logging.getLogger(__name__)
_SPEC = SERVICES["evaluator"]
_VERDICTS = {
    name: evaluator_pb2.RunProgramResponse.Verdict.Value(name.upper())
    for name in ("ok", "error", "timeout", "memory", "output_limit", "forbidden")
}


@dataclass
class Config(ServiceConfig):
    """Evaluator service: grading, program sandbox and benchmark runs."""

    port: int = option(_SPEC.port, "gRPC port")
    metrics_port: int = option(_SPEC.metrics_port, "Prometheus /metrics port (-1 = off)")
    benchmark_dir: str = option(
        "", "directory holding the benchmark JSONL files known by name; empty = only file paths"
    )
    max_items: int = option(4096, "pairs per GradeBatch request")
    max_text_bytes: int = option(256 * 1024, "bytes per prediction, gold answer or extracted text")
    grade_threads: int = option(4, "threads grading requests (the event loop never grades)")
    symbolic_workers: int = option(2, "math-verify worker processes for symbolic checks")
    max_code_bytes: int = option(256 * 1024, "bytes of program source per RunProgram request")
    program_wall_time_s: float = option(10.0, "default wall-time limit of a program, seconds")
    max_program_wall_time_s: float = option(60.0, "largest wall-time limit a request may ask for")
    program_cpu_time_s: float = option(5.0, "default CPU-time limit of a program, seconds")
    max_program_cpu_time_s: float = option(60.0, "largest CPU-time limit a request may ask for")
    program_memory_bytes: int = option(1 << 30, "default address-space limit of a program")
    max_program_memory_bytes: int = option(4 << 30, "largest memory limit a request may ask for")
    program_output_bytes: int = option(64 * 1024, "default output cap of a program")
    max_program_output_bytes: int = option(16 << 20, "largest output cap a request may ask for")
    max_concurrent_programs: int = option(4, "programs running at once; more wait their turn")
    sandbox_required_layers: list[str] = option(
        list(REQUIRED_LAYERS),
        "isolation layers every program needs, else RunProgram refuses (docs/security.md); drop "
        f"landlock only on kernels without it, e.g. under gVisor (known: {', '.join(LAYERS)})",
    )
    sandbox_library_paths: list[str] = option([], "extra read-only directories programs may import from")
    sandbox_work_root: str = option(
        "", "directory for the programs' private work directories (empty = temp dir)"
    )
    max_waiting_programs: int = option(32, "programs waiting their turn; more are RESOURCE_EXHAUSTED")
    max_k: int = option(256, "samples per question an Evaluate request may ask for")
    sampler_retry_budget_s: float = option(60.0, "time to keep retrying an UNAVAILABLE sampler, seconds")
    sampler_timeout_s: float = option(600.0, "deadline of one Generate call to the sampler, seconds")
    default_max_tokens: int = option(1024, "new tokens per sample when the request leaves max_tokens 0")

    def validate(self) -> None:
        super().validate()
        try:
            self.sandbox_settings()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for name in (
            "max_items",
            "max_text_bytes",
            "grade_threads",
            "symbolic_workers",
            "max_code_bytes",
            "max_concurrent_programs",
            "max_waiting_programs",
            "max_k",
            "default_max_tokens",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be >= 1")
        for default, maximum in (
            ("program_wall_time_s", "max_program_wall_time_s"),
            ("program_cpu_time_s", "max_program_cpu_time_s"),
            ("program_memory_bytes", "max_program_memory_bytes"),
            ("program_output_bytes", "max_program_output_bytes"),
        ):
            if not 0 < getattr(self, default) <= getattr(self, maximum):
                raise ConfigError(
                    f"{default} {getattr(self, default)} must be > 0 and <= {maximum} "
                    f"{getattr(self, maximum)}"
                )

    def sandbox_settings(self) -> SandboxSettings:
        return SandboxSettings(
            required_layers=tuple(self.sandbox_required_layers),
            library_paths=tuple(self.sandbox_library_paths),
            work_root=self.sandbox_work_root,
        )


class EvaluatorService(Service, evaluator_pb2_grpc.EvaluatorServicer):
    name = _SPEC.proto_name

    def __init__(self, config: Config):
        super().__init__(config)
        self.config: Config = config
        self._executor = ThreadPoolExecutor(max_workers=config.grade_threads, thread_name_prefix="grade")
        self._programs = Admission(
            config.max_concurrent_programs, config.max_waiting_programs, "programs", "max-waiting-programs"
        )
        self._sandbox = config.sandbox_settings()
        self._sandbox_layers: tuple[str, ...] = ()
        self._sandbox_refusal = ""
        self.graded = Counter(
            "mathforge_evaluator_graded",
            "Answers graded, by deciding rule",
            ["reason"],
            registry=self.registry,
        )
        self.programs_run = Counter(
            "mathforge_evaluator_programs",
            "Sandboxed programs, by verdict",
            ["verdict"],
            registry=self.registry,
        )
        self.evaluations = Counter(
            "mathforge_evaluator_evaluations",
            "Benchmark runs, by outcome",
            ["outcome"],
            registry=self.registry,
        )

    def register(self, server: grpc.aio.Server) -> None:
        evaluator_pb2_grpc.add_EvaluatorServicer_to_server(self, server)

    async def start(self) -> None:
        os.environ.setdefault("MATHFORGE_SYMBOLIC_WORKERS", str(self.config.symbolic_workers))
        await asyncio.to_thread(symbolic.default_pool().warm)
        self._sandbox_layers = (await asyncio.to_thread(probe, self._sandbox)).layers
        missing = await asyncio.to_thread(missing_layers, self._sandbox)
        if missing:
            reasons = "; ".join(f"{name}: {why}" for name, why in missing.items())
            self._sandbox_refusal = (
                f"the program sandbox lacks required layers ({reasons}); RunProgram is refused "
                "until they hold or sandbox_required_layers leaves them out (docs/security.md)"
            )
        fields = {
            "layers": ",".join(self._sandbox_layers),
            "required": ",".join(self._sandbox.required_layers),
        }
        log.log(
            logging.WARNING if missing else logging.INFO,
            self._sandbox_refusal or "program sandbox ready",
            extra={"fields": fields},
        )

    async def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- grading ------------------------------------------------------------------------
    def _check_pair(self, index: int, item: evaluator_pb2.GradeRequest) -> GradingPolicy:
        limit = self.config.max_text_bytes
        check_bytes(index, len(item.prediction.encode()), limit, "prediction", "max-text-bytes")
        check_bytes(index, len(item.gold.encode()), limit, "gold answer", "max-text-bytes")
        return policy_from_message(item.policy)

    def _grade_all(self, items: list[tuple[str, str, GradingPolicy]]) -> list[evaluator_pb2.GradeResponse]:
        results = []
        for prediction, gold, policy in items:
            verdict = grade(prediction, gold, policy)
            self.graded.labels(verdict.reason).inc()
            results.append(
                evaluator_pb2.GradeResponse(
                    equivalent=verdict.equivalent,
                    pred_answer=verdict.pred_answer,
                    gold_answer=verdict.gold_answer,
                    reason=verdict.reason,
                    timed_out=verdict.timed_out,
                )
            )
        return results

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def Grade(self, request: evaluator_pb2.GradeRequest, context: Any) -> evaluator_pb2.GradeResponse:
        policy = self._check_pair(0, request)
        (result,) = await self._run(self._grade_all, [(request.prediction, request.gold, policy)])
        return result

    async def GradeBatch(
        self, request: evaluator_pb2.GradeBatchRequest, context: Any
    ) -> evaluator_pb2.GradeBatchResponse:
        check_count(len(request.items), self.config.max_items, "items", "max-items")
        items = [(it.prediction, it.gold, self._check_pair(i, it)) for i, it in enumerate(request.items)]
        return evaluator_pb2.GradeBatchResponse(results=await self._run(self._grade_all, items))

    async def Extract(
        self, request: evaluator_pb2.ExtractRequest, context: Any
    ) -> evaluator_pb2.ExtractResponse:
        check_bytes(0, len(request.text.encode()), self.config.max_text_bytes, "text", "max-text-bytes")
        extraction = await self._run(extract_answer, request.text, policy_from_message(request.policy))
        return evaluator_pb2.ExtractResponse(answer=extraction.answer, method=extraction.method)

    # ---- programs -----------------------------------------------------------------------
    def _limits(self, request: evaluator_pb2.RunProgramRequest) -> SandboxLimits:
        c = self.config

        def pick(value: float, default: float, maximum: float, what: str, flag: str) -> float:
            check_range(value, 0, maximum, what, flag)
            return value or default

        return SandboxLimits(
            wall_time_s=pick(
                request.wall_time_s,
                c.program_wall_time_s,
                c.max_program_wall_time_s,
                "wall_time_s",
                "max-program-wall-time-s",
            ),
            cpu_time_s=pick(
                request.cpu_time_s,
                c.program_cpu_time_s,
                c.max_program_cpu_time_s,
                "cpu_time_s",
                "max-program-cpu-time-s",
            ),
            memory_bytes=int(
                pick(
                    request.memory_bytes,
                    c.program_memory_bytes,
                    c.max_program_memory_bytes,
                    "memory_bytes",
                    "max-program-memory-bytes",
                )
            ),
            output_bytes=int(
                pick(
                    request.output_bytes,
                    c.program_output_bytes,
                    c.max_program_output_bytes,
                    "output_bytes",
                    "max-program-output-bytes",
                )
            ),
        )

    async def RunProgram(
        self, request: evaluator_pb2.RunProgramRequest, context: Any
    ) -> evaluator_pb2.RunProgramResponse:
        check_bytes(0, len(request.code.encode()), self.config.max_code_bytes, "program", "max-code-bytes")
        check_bytes(0, len(request.stdin.encode()), self.config.max_text_bytes, "stdin", "max-text-bytes")
        require(bool(request.code.strip()), "code is empty")
        limits = self._limits(request)
        if self._sandbox_refusal:
            raise RequestError.precondition(self._sandbox_refusal)
        async with self._programs:
            result = await asyncio.to_thread(run_program, request.code, limits, request.stdin, self._sandbox)
        self.programs_run.labels(result.verdict).inc()
        return evaluator_pb2.RunProgramResponse(
            verdict=_VERDICTS[result.verdict],
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            wall_seconds=result.wall_seconds,
            detail=result.detail,
        )

    # ---- benchmark runs -----------------------------------------------------------------
    def _settings(self, request: evaluator_pb2.EvaluateRequest) -> RunSettings:
        k = request.k or 1
        check_range(k, 1, self.config.max_k, "k", "max-k")
        check_range(request.limit, 0, 2**31 - 1, "limit")
        check_range(request.max_tokens, 0, 1 << 20, "max_tokens")
        style = request.prompt_style or "zero_shot"
        require(style in PROMPT_STYLES, f"prompt_style {style!r} is not one of {', '.join(PROMPT_STYLES)}")
        require(bool(request.sampler), "sampler (host:port) is required")
        self.access.require_target("sampler", request.sampler, "sampler")
        return RunSettings(
            k=k,
            temperature=request.temperature or 0.7,
            max_tokens=request.max_tokens or self.config.default_max_tokens,
            prompt_style=style,
            seed=request.seed,
            policy=policy_from_message(request.policy),
        )

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, context: Any):  # type: ignore[no-untyped-def]
        settings = self._settings(request)
        try:
            benchmark = request.benchmark
            if benchmark not in KNOWN_BENCHMARKS:  # a path: it must lie under the benchmark roots
                benchmark = str(self.access.require_path("benchmark", benchmark, "benchmark"))
            path = resolve_benchmark(benchmark, self.config.benchmark_dir)
            items = load_benchmark(path, limit=request.limit or None)
        except (ValueError, OSError) as exc:
            raise RequestError.invalid(str(exc)) from None
        require(bool(items), f"benchmark {request.benchmark!r} has no items")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def progress(done: int, total: int, accuracy: float) -> None:
            loop.call_soon_threadsafe(
                events.put_nowait, evaluator_pb2.EvaluateProgress(done=done, total=total, accuracy=accuracy)
            )

        task = asyncio.ensure_future(
            asyncio.to_thread(self._evaluate, request.sampler, items, settings, progress)
        )
        task.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))
        while (event := await events.get()) is not None:
            yield evaluator_pb2.EvaluateEvent(progress=event)
        try:
            result: RunResult = task.result()
        except grpc.RpcError as exc:
            self.evaluations.labels("sampler_error").inc()
            raise RequestError.precondition(
                f"sampler {request.sampler}: {exc.code().name}: {exc.details()}"
            ) from None
        self.evaluations.labels("ok").inc()
        yield evaluator_pb2.EvaluateEvent(
            result=evaluator_pb2.EvaluateResult(
                metrics=result.metrics,
                seconds=result.seconds,
                items=[
                    evaluator_pb2.ItemRecord(
                        id=r.id,
                        gold=r.gold,
                        samples=r.samples,
                        correct=r.correct,
                        answers=r.answers,
                        tags=r.tags,
                    )
                    for r in result.items
                ],
            )
        )

    def _evaluate(self, sampler: str, items: list[Any], settings: RunSettings, progress: Any) -> RunResult:
        from mathforge.runtime.clients.sampler import SamplerClient

        client = SamplerClient(
            sampler,
            timeout_s=self.config.sampler_timeout_s,
            retry=RetryPolicy(budget_s=self.config.sampler_retry_budget_s),
        )

        try:
            return run_benchmark(items, sampler_generate(client), settings, progress)
        finally:
            client.close()

    async def Info(self, request: common_pb2.InfoRequest, context: Any) -> common_pb2.ServiceInfo:
        c = self.config
        pool = symbolic.default_pool()
        return common_pb2.ServiceInfo(
            service=self.name,
            software_version=mathforge.__version__,
            backend="math-verify+fast-path",
            limits={
                "max_items": c.max_items,
                "max_text_bytes": c.max_text_bytes,
                "max_code_bytes": c.max_code_bytes,
                "max_k": c.max_k,
                "max_concurrent_programs": c.max_concurrent_programs,
                "max_waiting_programs": c.max_waiting_programs,
                "max_program_memory_bytes": c.max_program_memory_bytes,
            },
            details={
                "benchmark_dir": c.benchmark_dir,
                "symbolic_workers": str(pool.size),
                "symbolic_timeouts": str(pool.timeouts),
                "sandbox_layers": ",".join(self._sandbox_layers),
                "sandbox_required_layers": ",".join(self._sandbox.required_layers),
                "sandbox_refusal": self._sandbox_refusal,
                "sandbox_evaluator_dumpable": str(confine_process.is_dumpable()).lower(),
            },
        )


def create_service(config: Config) -> EvaluatorService:
    return EvaluatorService(config)
