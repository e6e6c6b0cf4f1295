"""The Classifier service: P(math) for batches of documents over gRPC, with hot model reload.

    mathforge serve classifier --model-path runs/recall/round-3/model.bin

Score and ScoreStream validate a whole request (count, size, text) before any work, then score it
through a shared batcher on the model that was current when the request arrived. Reload loads the
new file off the event loop and swaps one reference, so calls in flight finish on the old model and
none fail. With no --model-path the service trains a small model on a generated miniature web
(seconds), so `mathforge up` works on a fresh machine; Info says so in details["model_source"].
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import Counter, Gauge, Histogram

import mathforge
from mathforge.classifier.batcher import ScoreBatcher
from mathforge.classifier.model import MathModel
from mathforge.runtime.config import ConfigError, ServiceConfig, option
from mathforge.runtime.errors import RequestError, check_bytes, check_count, require
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import Service
from mathforge.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

log = logging.getLogger(__name__)
_SPEC = SERVICES["classifier"]

#: Share of control characters (other than tab, newline, carriage return, form feed) above which a
#: document is taken for binary data rather than text.
BINARY_CONTROL_SHARE = 0.1


@dataclass
class Config(ServiceConfig):
    """Classifier service: fastText P(math) scoring with hot reload."""

    port: int = option(_SPEC.port, "gRPC port")
    metrics_port: int = option(_SPEC.metrics_port, "Prometheus /metrics port (-1 = off)")
    model_path: str = option("", "fastText .bin model; empty = train a small built-in model at start")
    builtin_model_dir: str = option(".cache/classifier", "where the built-in model is trained and cached")
    max_items: int = option(4096, "most documents in one Score request or stream message")
    max_doc_bytes: int = option(1 << 20, "largest document, bytes of UTF-8")
    batch_size: int = option(512, "documents per internal fastText predict call")
    max_chars: int = option(100_000, "characters of each document the model reads (the rest is ignored)")

    def validate(self) -> None:
        super().validate()
        for name in ("max_items", "max_doc_bytes", "batch_size", "max_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be at least 1")
        if self.model_path and not Path(self.model_path).is_file():
            raise ConfigError(f"model_path {self.model_path} does not exist (--model-path)")


def check_documents(documents: list[common_pb2.Document], config: Config) -> list[str]:
    """Validates a whole batch and returns its texts; RequestError names the first bad document."""
    require(len(documents) > 0, "request has no documents; send at least one")
    check_count(len(documents), config.max_items, "documents", "max-items")
    texts = [d.text for d in documents]
    limit = config.max_doc_bytes
    for i, text in enumerate(texts):
        require(bool(text.strip()), f"document {i} is empty; send text to score")
        if len(text) * 4 > limit:  # a UTF-8 character is at most 4 bytes: only long texts are encoded
            check_bytes(i, len(text.encode("utf-8")), limit, "document", "max-doc-bytes")
        if _looks_binary(text):
            raise RequestError.invalid(
                f"document {i} looks like binary data (NUL or control bytes), not text"
            )
    return texts


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    head = text[:4096]
    controls = sum(1 for c in head if c < " " and c not in "\t\n\r\f")
    return controls > BINARY_CONTROL_SHARE * len(head)


class ClassifierService(Service, classifier_pb2_grpc.ClassifierServicer):
    name = _SPEC.proto_name

    def __init__(self, config: Config):
        super().__init__(config)
        self.config: Config = config
        self.model: MathModel | None = None
        self.model_version = 0
        self.model_source = ""
        self._reload_lock = asyncio.Lock()
        self.batcher = ScoreBatcher(config.batch_size, on_batch=self._observe_batch)
        self.documents = Counter("mathforge_classifier_documents", "Documents scored", registry=self.registry)
        self.reloads = Counter(
            "mathforge_classifier_reloads", "Model reloads by result", ["result"], registry=self.registry
        )
        self.version_gauge = Gauge(
            "mathforge_classifier_model_version", "Reload count of the serving model", registry=self.registry
        )
        self.batch_sizes = Histogram(
            "mathforge_classifier_batch_documents",
            "Documents per fastText batch",
            buckets=(1, 8, 32, 128, 512, 2048, 8192),
            registry=self.registry,
        )

    def _observe_batch(self, size: int) -> None:
        self.documents.inc(size)
        self.batch_sizes.observe(size)

    # ---- lifetime -------------------------------------------------------------------------
    def register(self, server: grpc.aio.Server) -> None:
        classifier_pb2_grpc.add_ClassifierServicer_to_server(self, server)

    async def start(self) -> None:
        if self.config.model_path:
            path, self.model_source = self.config.model_path, "file"
        else:
            from mathforge.classifier.builtin import builtin_model_path

            path = str(await asyncio.to_thread(builtin_model_path, Path(self.config.builtin_model_dir)))
            self.model_source = "built-in (trained on a generated miniature web)"
        self.model = await asyncio.to_thread(MathModel.load, path, self.config.max_chars)
        self.batcher.start()
        log.info(
            "model loaded",
            extra={
                "fields": {
                    "path": path,
                    "source": self.model_source,
                    "dim": self.model.dim,
                    "words": self.model.words,
                }
            },
        )

    async def stop(self) -> None:
        await self.batcher.close()

    # ---- RPCs -----------------------------------------------------------------------------
    async def _score(self, request: classifier_pb2.ScoreRequest) -> classifier_pb2.ScoreResponse:
        texts = check_documents(list(request.documents), self.config)
        model, version = self._current()
        scores = await self.batcher.score(model, texts)
        return classifier_pb2.ScoreResponse(scores=scores.tolist(), model_version=version)

    def _current(self) -> tuple[MathModel, int]:
        if self.model is None:
            raise RequestError.unavailable("the classifier model is not loaded yet")
        return self.model, self.model_version

    async def Score(
        self, request: classifier_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ScoreResponse:
        return await self._score(request)

    async def ScoreStream(
        self, request_iterator: AsyncIterator[classifier_pb2.ScoreRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[classifier_pb2.ScoreResponse]:
        async for request in request_iterator:
            yield await self._score(request)

    async def Info(
        self, request: common_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ServiceInfo:
        model, version = self._current()
        config = self.config
        return common_pb2.ServiceInfo(
            service=self.name,
            software_version=mathforge.__version__,
            model=model.path,
            model_version=version,
            backend="fasttext",
            random_weights=False,
            limits={
                "max_items": config.max_items,
                "max_doc_bytes": config.max_doc_bytes,
                "max_message_bytes": config.max_message_bytes,
                "max_chars": config.max_chars,
            },
            details={
                "dim": str(model.dim),
                "words": str(model.words),
                "batch_size": str(config.batch_size),
                "model_source": self.model_source,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(model.loaded_at)),
            },
        )

    async def Reload(
        self, request: classifier_pb2.ReloadRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ReloadResponse:
        current, _ = self._current()
        if request.model_path:
            path = str(self.access.require_path("model", request.model_path, "model_path"))
        else:
            path = self.config.model_path or current.path
        async with self._reload_lock:
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(MathModel.load, path, self.config.max_chars)
            except ValueError as exc:
                self.reloads.labels("failed").inc()
                raise RequestError.precondition(
                    f"reload failed, still serving version {self.model_version}: {exc}"
                ) from None
            # One assignment each: a call reads (model, version) in _current without awaiting between.
            self.model, self.model_version = model, self.model_version + 1
            if request.model_path:
                self.model_source = "file"
            seconds = time.perf_counter() - started
        self.reloads.labels("ok").inc()
        self.version_gauge.set(self.model_version)
        log.info(
            "model reloaded",
            extra={
                "fields": {
                    "path": path,
                    "model_version": self.model_version,
                    "load_seconds": round(seconds, 3),
                }
            },
        )
        return classifier_pb2.ReloadResponse(model_version=self.model_version, load_seconds=seconds)


def create_service(config: Config) -> ClassifierService:
    return ClassifierService(config)
