"""The Reward service: rule, outcome-RM, process-RM and mixed rewards over gRPC, with dynamic
batching across concurrent requests and atomic reward-model swaps.

    mathforge serve reward                                    # rule reward only
    mathforge serve reward --orm-path runs/rm/final --prm-path runs/prm/final
    mathforge serve reward --random-model-preset tiny         # random-weight RMs (benchmarks, smoke tests)

Score checks a whole request first (count, sizes, references, weights, token lengths), then runs its
components concurrently: the rule reward on grading threads, the RMs through one dynamic batcher
whose forward passes run on their own thread, never on the event loop. With no ORM (PRM) loaded,
REWARD_ORM (REWARD_PRM), and a mix that weights it, are FAILED_PRECONDITION; the rule reward always
works. LoadModel loads a new version off the event loop and swaps one reference: calls admitted
before it finish on the old model, later ones use the new, and a load that fails keeps the old one.
Lines: LoadModel and Score may name a line whose own ORM/PRM (e.g. one iterative-RL run's retrained
PRM) replaces the default line's for its calls only; at most --max-lines named lines are held, one
more evicts the least recently used idle one (runtime/lines.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

import mathforge
from mathforge.evaluator import symbolic
from mathforge.evaluator.grading import GradingPolicy
from mathforge.evaluator.policy_message import policy_from_message
from mathforge.models.checkpoint import CheckpointError
from mathforge.reward.batcher import DynamicBatcher
from mathforge.reward.encoding import EncodedItem, encode, score_encoded
from mathforge.reward.model import KINDS, RewardModel, init_reward_model, load_reward_model
from mathforge.reward.rule import RuleScore, rule_rewards
from mathforge.reward.scoring import Limits, Plan, combine, plan_request
from mathforge.reward.service_config import Config
from mathforge.runtime.errors import RequestError, check_version, require
from mathforge.runtime.lines import LineTable, check_line, line_label
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import Service
from mathforge.v1 import common_pb2, reward_pb2, reward_pb2_grpc

log = logging.getLogger(__name__)
_SPEC = SERVICES["reward"]
__all__ = ["Config", "RewardService", "create_service"]
REWARD_BUCKETS = (-1.0, -0.5, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0)
#: Requests with fewer characters than this are tokenised on the event loop (well under a millisecond).
INLINE_ENCODE_CHARS = 4096
CPU_BATCH_TOKENS = 4096
CUDA_BATCH_TOKENS = 262_144
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Served:
    """A reward model in service and its version."""

    model: RewardModel
    version: int

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.network.state_dict().values())


@dataclass
class RewardLine:
    """A named line's own reward models (by kind) and its Score calls in flight."""

    models: dict[str, Served] = field(default_factory=dict)
    in_flight: int = 0


class RewardService(Service, reward_pb2_grpc.RewardServicer):
    name = _SPEC.proto_name

    def __init__(self, config: Config):
        super().__init__(config)
        self.config: Config = config
        self.policy = config.policy()
        self.limits = Limits(config.max_items, config.max_text_bytes)
        self.models: dict[str, Served] = {}  # the default line's
        self.lines: LineTable[RewardLine] = LineTable(config.max_lines, "max-lines", "reward-model line")
        self.device = torch.device(
            "cuda"
            if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
            else "cpu"
        )
        self.dtype = (
            config.dtype
            if config.dtype != "auto"
            else ("bfloat16" if self.device.type == "cuda" else "float32")
        )
        # CPUs lose cache locality on large padded batches; GPUs want them as large as memory allows.
        auto_tokens = CUDA_BATCH_TOKENS if self.device.type == "cuda" else CPU_BATCH_TOKENS
        self.max_batch_tokens = config.max_batch_tokens or auto_tokens
        self._load_lock = asyncio.Lock()
        self._grader = ThreadPoolExecutor(max_workers=config.grade_threads, thread_name_prefix="grade")
        self.batcher = DynamicBatcher(
            score_encoded,
            config.max_batch,
            config.max_wait_ms / 1000,
            merge=config.dynamic_batching,
            max_batch_tokens=self.max_batch_tokens,
            on_batch=self._observe_batch,
        )
        r = self.registry
        self.items = Counter("mathforge_reward_items", "Items scored, by request kind", ["kind"], registry=r)
        self.batch_items = Histogram(
            "mathforge_reward_batch_items",
            "Items per RM forward pass",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.forward_seconds = Histogram(
            "mathforge_reward_forward_seconds", "RM forward pass time", ["model"], registry=r
        )
        self.queue_seconds = Histogram(
            "mathforge_reward_queue_wait_seconds", "Time items wait for a forward pass", ["model"], registry=r
        )
        self.score_seconds = Histogram(
            "mathforge_reward_score_seconds", "Score latency by request kind", ["kind"], registry=r
        )
        self.rewards = Histogram(
            "mathforge_reward_value",
            "Scalar rewards returned, by request kind",
            ["kind"],
            buckets=REWARD_BUCKETS,
            registry=r,
        )
        self.versions = Gauge(
            "mathforge_reward_model_version", "Version of the served RM", ["model"], registry=r
        )
        self.loads = Counter(
            "mathforge_reward_loads", "LoadModel calls by model and result", ["model", "result"], registry=r
        )
        # one series per (named line, kind), removed when the line is evicted: bounded by --max-lines
        self.line_versions = Gauge(
            "mathforge_reward_line_model_version",
            "Version of each named line's own RM",
            ["line", "model"],
            registry=r,
        )
        self.line_count = Gauge("mathforge_reward_lines", "Named lines holding their own RMs", registry=r)
        self.line_evictions = Counter(
            "mathforge_reward_line_evictions",
            "Named lines evicted to make room for another (--max-lines)",
            registry=r,
        )

    def _observe_batch(self, model: RewardModel, size: int, wait_s: float, forward_s: float) -> None:
        self.batch_items.labels(model.kind).observe(size)
        self.forward_seconds.labels(model.kind).observe(forward_s)
        self.queue_seconds.labels(model.kind).observe(wait_s)

    # ---- lifetime -------------------------------------------------------------------------
    def register(self, server: grpc.aio.Server) -> None:
        reward_pb2_grpc.add_RewardServicer_to_server(self, server)

    async def start(self) -> None:
        os.environ.setdefault("MATHFORGE_SYMBOLIC_WORKERS", str(self.config.symbolic_workers))
        await asyncio.to_thread(symbolic.default_pool().warm)
        for kind in KINDS:
            path = getattr(self.config, f"{kind}_path")
            if path:
                model = await asyncio.to_thread(self._load, kind, path)
            elif self.config.random_model_preset:
                model = await asyncio.to_thread(self._random, kind)
            else:
                continue
            self._serve(kind, model, 0)
        self.batcher.start()
        log.info("reward models", extra={"fields": {k: s.model.path for k, s in self.models.items()}})

    async def stop(self) -> None:
        await self.batcher.close()
        self._grader.shutdown(wait=False, cancel_futures=True)

    def _load(self, kind: str, path: str) -> RewardModel:
        return load_reward_model(path, expect_kind=kind, dtype=self.dtype, device=str(self.device))

    def _random(self, kind: str) -> RewardModel:
        model = init_reward_model(
            kind,
            self.config.random_model_preset,
            self.config.step_separator,
            seed=KINDS.index(kind),
            dtype=self.dtype,
        )
        model.network.to(self.device).eval()
        return model

    def _serve(self, kind: str, model: RewardModel, version: int, line: str = "") -> None:
        served = Served(model, version)
        if not line:
            self.models = {**self.models, kind: served}  # one assignment: a request reads it once
            self.versions.labels(kind).set(version)
            return
        held = self.lines.get(line)
        if held is None:
            for name, evicted in self.lines.make_room(line, lambda held: held.in_flight > 0):
                for gone in evicted.models:
                    self.line_versions.remove(name, gone)
                self.line_evictions.inc()
                log.warning("reward-model line evicted", extra={"fields": {"line": name, "for": line}})
            held = RewardLine()
            self.lines.put(line, held)
        held.models = {**held.models, kind: served}
        self.line_versions.labels(line, kind).set(version)
        self.line_count.set(len(self.lines))

    def _line_models(self, name: str) -> tuple[dict[str, Served], RewardLine | None]:
        """The models a Score call on line `name` uses (its own, else the default line's)."""
        held = self.lines.get(name) if name else None
        return ({**self.models, **held.models} if held is not None else self.models), held

    # ---- Score ----------------------------------------------------------------------------
    def _encode_all(self, model: RewardModel, plan: Plan) -> list[EncodedItem]:
        limit = min(self.config.max_tokens, model.max_positions)
        encoded = []
        for i, (question, response) in enumerate(zip(plan.questions, plan.responses, strict=True)):
            try:
                item = encode(model, question, response)
            except ValueError as exc:  # a step the tokenizer gives no token (e.g. only dropped characters)
                raise RequestError.invalid(f"item {i}: {exc}") from None
            if len(item) > limit:
                flag = "--max-tokens" if limit == self.config.max_tokens else "the model's context length"
                raise RequestError.exhausted(
                    f"item {i} is {len(item)} tokens for the {model.kind} (prompt + response), "
                    f"over the {limit} limit ({flag})"
                )
            encoded.append(item)
        return encoded

    async def _encode(self, model: RewardModel, plan: Plan) -> list[EncodedItem]:
        # Tokenising a few short texts takes microseconds: a thread hop (and a GIL hand-over) would
        # cost more than the work. Large requests go to a thread so the event loop stays responsive.
        if (
            sum(len(q) + len(r) for q, r in zip(plan.questions, plan.responses, strict=True))
            < INLINE_ENCODE_CHARS
        ):
            return self._encode_all(model, plan)
        return await asyncio.to_thread(self._encode_all, model, plan)

    async def _rule(self, plan: Plan, policy: GradingPolicy) -> list[RuleScore]:
        """Rule rewards, the items split over the grading threads: a symbolic check waiting on its
        worker process then holds up only its own share."""
        pairs = list(zip(plan.responses, plan.references, strict=True))
        parts = min(self.config.grade_threads, len(pairs))
        size = -(-len(pairs) // parts)
        loop = asyncio.get_running_loop()
        chunks = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._grader, rule_rewards, pairs[i : i + size], policy, plan.format_penalty
                )
                for i in range(0, len(pairs), size)
            )
        )
        return [score for chunk in chunks for score in chunk]

    async def Score(self, request: reward_pb2.RewardRequest, context: Any) -> reward_pb2.RewardResponse:
        began = time.perf_counter()
        plan = plan_request(request, self.limits)
        # The request's policy overrides the server's (--grading-policy) field by field.
        policy = policy_from_message(request.policy, base=self.policy)
        models, line = self._line_models(check_line(request.line))
        served = {}
        for kind in KINDS:
            if kind in plan.weights:
                if kind not in models:
                    raise RequestError.precondition(
                        f"no {kind} reward model is loaded; start the service with --{kind}-path or call "
                        f"LoadModel(kind={kind!r}); the rule reward needs no model"
                    )
                served[kind] = models[kind]
        if line is None:
            return await self._score(plan, policy, served, began)
        line.in_flight += 1  # no eviction while its calls run
        try:
            return await self._score(plan, policy, served, began)
        finally:
            line.in_flight -= 1

    async def _score(
        self, plan: Plan, policy: GradingPolicy, served: dict[str, Served], began: float
    ) -> reward_pb2.RewardResponse:
        pending: dict[str, Any] = {}
        steps = None
        with self.batcher.expecting():
            encoded = {kind: await self._encode(s.model, plan) for kind, s in served.items()}
            for kind, items in encoded.items():
                pending[kind] = self.batcher.submit(served[kind].model, items)
        if "prm" in encoded:
            steps = [item.steps for item in encoded["prm"]]
        if "rule" in plan.weights:
            pending["rule"] = self._rule(plan, policy)
        names = list(pending)
        outputs = dict(zip(names, await asyncio.gather(*(pending[n] for n in names)), strict=True))
        results = combine(plan, outputs.get("rule"), outputs.get("orm"), outputs.get("prm"), steps)
        self.items.labels(plan.kind).inc(len(results))
        for result in results:
            self.rewards.labels(plan.kind).observe(result.reward)
        self.score_seconds.labels(plan.kind).observe(time.perf_counter() - began)
        return reward_pb2.RewardResponse(
            results=results, model_versions={k: s.version for k, s in served.items()}
        )

    # ---- LoadModel and Info ---------------------------------------------------------------
    async def LoadModel(
        self, request: reward_pb2.LoadRewardModelRequest, context: Any
    ) -> reward_pb2.LoadRewardModelResponse:
        kind = request.kind
        require(kind in KINDS, f"kind {kind!r} is not one of {', '.join(KINDS)}")
        require(bool(request.path), "path is empty; give the reward model directory to load")
        name = check_line(request.line)
        path = str(self.access.require_path("model", request.path))
        async with self._load_lock:
            held = self.lines.get(name) if name else None
            own = self.models if not name else (held.models if held is not None else {})
            current = own.get(kind)
            current_version = current.version if current else 0
            check_version(request.version, current_version if current else -1, kind)
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(self._load, kind, path)
            except (CheckpointError, OSError, ValueError) as exc:
                self.loads.labels(kind, "failed").inc()
                still = f"still serving version {current_version}" if current else "no model is serving"
                on = f" for {line_label(name)}" if name else ""
                raise RequestError.precondition(
                    f"loading {kind}{on} from {request.path} failed, {still}: {exc}"
                ) from None
            self._serve(kind, model, request.version, name)
            seconds = time.perf_counter() - started
        self.loads.labels(kind, "ok").inc()
        log.info(
            "reward model loaded",
            extra={
                "fields": {
                    "kind": kind,
                    "line": name,
                    "version": request.version,
                    "path": request.path,
                    "load_seconds": round(seconds, 3),
                }
            },
        )
        return reward_pb2.LoadRewardModelResponse(kind=kind, version=request.version, load_seconds=seconds)

    async def Info(self, request: common_pb2.InfoRequest, context: Any) -> common_pb2.ServiceInfo:
        c = self.config
        models = dict(self.models)
        details = {
            "device": str(self.device),
            "dtype": self.dtype,
            "dynamic_batching": str(c.dynamic_batching),
            "max_batch": str(c.max_batch),
            "max_batch_tokens": str(self.max_batch_tokens),
            "max_wait_ms": str(c.max_wait_ms),
            "grading_policy": repr(self.policy),
        }
        for kind, served in models.items():
            details[f"{kind}_path"] = served.model.path
            details[f"{kind}_version"] = str(served.version)
            if kind == "prm":
                details["step_separator"] = served.model.step_separator
        return common_pb2.ServiceInfo(
            service=self.name,
            software_version=mathforge.__version__,
            model=",".join(f"{k}={s.model.path}" for k, s in models.items()),
            model_version=max((s.version for s in models.values()), default=0),
            backend="transformers" if models else "rule",
            random_weights=any(s.model.random_weights for s in models.values()),
            limits={
                "max_items": c.max_items,
                "max_text_bytes": c.max_text_bytes,
                "max_tokens": c.max_tokens,
                "max_batch": c.max_batch,
                "max_message_bytes": c.max_message_bytes,
            },
            details=details,
            models=[
                common_pb2.ServedModel(
                    kind=kind,
                    version=served.version,
                    path=served.model.path,
                    dtype=self.dtype,
                    line=line,
                    bytes=served.bytes,
                )
                for line, own in [("", models), *((n, held.models) for n, held in self.lines.items())]
                for kind, served in own.items()
            ],
        )


def create_service(config: Config) -> RewardService:
    return RewardService(config)
