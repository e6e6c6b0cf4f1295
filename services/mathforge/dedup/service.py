"""The dedup service: exact and near-duplicate checks over a shared index, and decontamination.

    mathforge serve dedup --store embedded --store-path .cache/dedup --benchmarks gsm8k,math \\
        --benchmark-dir tests/fixtures/benchmarks
    mathforge serve dedup --store redis --redis-url redis://redis:6379/0     # replicas share the index
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter

import mathforge
from mathforge.dedup.benchmark_sources import expand_sources, load_files
from mathforge.dedup.config import Config
from mathforge.dedup.decontam import BenchmarkIndex, ContaminationMatch, cut_matches
from mathforge.dedup.fingerprint import Fingerprinter
from mathforge.dedup.stores import DedupStore, StoreError, StoreVerdict
from mathforge.evaluator.benchmarks import benchmark_name
from mathforge.runtime.errors import RequestError, check_bytes, check_count, require
from mathforge.runtime.registry import SERVICES
from mathforge.runtime.server import Service
from mathforge.v1 import common_pb2, dedup_pb2, dedup_pb2_grpc

log = logging.getLogger(__name__)
_SPEC = SERVICES["dedup"]
#: Longest document id accepted (ids are stored in the index).
MAX_ID_BYTES = 1024
__all__ = ["Config", "DedupService", "create_service"]


class DedupService(Service, dedup_pb2_grpc.DedupServicer):
    name = _SPEC.proto_name

    def __init__(self, config: Config):
        super().__init__(config)
        self.settings = config
        self.fingerprinter = Fingerprinter(config.normalizer(), config.minhasher())
        self.store: DedupStore | None = None
        self.benchmarks: BenchmarkIndex = config.benchmark_index()
        self._benchmark_lock = asyncio.Lock()
        self.checked = Counter(
            "mathforge_dedup_documents", "Documents checked, by RPC", ["method"], registry=self.registry
        )
        self.duplicates = Counter(
            "mathforge_dedup_duplicates",
            "Duplicates found, by kind (exact, near)",
            ["kind"],
            registry=self.registry,
        )
        self.inserted = Counter(
            "mathforge_dedup_inserted", "Documents inserted into the index", registry=self.registry
        )
        self.contaminated = Counter(
            "mathforge_dedup_contaminated", "Documents with benchmark matches", registry=self.registry
        )

    def register(self, server: grpc.aio.Server) -> None:
        dedup_pb2_grpc.add_DedupServicer_to_server(self, server)

    async def start(self) -> None:
        self.store = await asyncio.to_thread(self.settings.open_store)
        if self.settings.benchmarks:
            files = expand_sources(self.settings.benchmarks, self.settings.benchmark_dir)
            index = self.benchmarks.copy()
            added = await asyncio.to_thread(load_files, index, files)
            self.benchmarks = index
            log.info("benchmarks loaded", extra={"fields": {"items": added, "ngrams": index.ngrams}})

    async def stop(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    # ---- validation -----------------------------------------------------------------------
    def _validate(self, documents: Sequence[common_pb2.Document]) -> list[tuple[str, str]]:
        check_count(len(documents), self.settings.max_items, "documents", "max-items")
        seen: set[str] = set()
        for i, doc in enumerate(documents):
            require(bool(doc.id), f"document {i} has an empty id")
            id_bytes = len(doc.id.encode("utf-8"))
            require(
                id_bytes <= MAX_ID_BYTES,
                f"document {i}: id of {id_bytes} bytes is over the {MAX_ID_BYTES} limit",
            )
            require(doc.id not in seen, f"document {i}: id {doc.id!r} appears twice in the request")
            seen.add(doc.id)
            check_bytes(
                i, len(doc.text.encode("utf-8")), self.settings.max_doc_bytes, "document", "max-doc-bytes"
            )
        return [(doc.id, doc.text) for doc in documents]

    def _require_benchmarks(self) -> BenchmarkIndex:
        index = self.benchmarks
        if not index.loaded:
            raise RequestError.precondition(
                "no benchmark index is loaded: call LoadBenchmarks or start with --benchmarks"
            )
        return index

    # ---- RPCs -----------------------------------------------------------------------------
    async def Check(self, request: dedup_pb2.DedupRequest, context: Any) -> dedup_pb2.DedupResponse:
        return await self._dedup(request, insert=False)

    async def CheckAndInsert(self, request: dedup_pb2.DedupRequest, context: Any) -> dedup_pb2.DedupResponse:
        return await self._dedup(request, insert=True)

    async def _dedup(self, request: dedup_pb2.DedupRequest, insert: bool) -> dedup_pb2.DedupResponse:
        documents = self._validate(request.documents)
        index = self._require_benchmarks() if request.check_contamination else None
        assert self.store is not None
        store = self.store

        def work() -> tuple[list[StoreVerdict], list[list[ContaminationMatch]]]:
            prints = self.fingerprinter.fingerprints(documents)
            try:
                verdicts = store.check_and_insert(prints) if insert else store.check(prints)
            except StoreError as exc:
                raise RequestError.unavailable(str(exc)) from None
            matches = index.find_many([text for _, text in documents]) if index is not None else []
            return verdicts, matches

        verdicts, matches = await asyncio.to_thread(work)
        self.checked.labels("CheckAndInsert" if insert else "Check").inc(len(documents))
        response = dedup_pb2.DedupResponse()
        for i, ((doc_id, _), verdict) in enumerate(zip(documents, verdicts, strict=True)):
            found = matches[i] if matches else []
            if verdict.exact_duplicate_of:
                self.duplicates.labels("exact").inc()
            elif verdict.near_duplicate_of:
                self.duplicates.labels("near").inc()
            self.inserted.inc(int(verdict.inserted))
            self.contaminated.inc(int(bool(found)))
            response.verdicts.add(
                id=doc_id,
                exact_duplicate_of=verdict.exact_duplicate_of,
                near_duplicate_of=verdict.near_duplicate_of,
                jaccard=verdict.jaccard,
                inserted=verdict.inserted,
                contaminated=bool(found),
                matches=[_match_pb(m) for m in found],
            )
        return response

    async def Decontaminate(
        self, request: dedup_pb2.DecontaminateRequest, context: Any
    ) -> dedup_pb2.DecontaminateResponse:
        documents = self._validate(request.documents)
        require(
            request.mode
            in (dedup_pb2.DecontaminateRequest.MODE_VERDICT, dedup_pb2.DecontaminateRequest.MODE_CUT),
            f"unknown mode {request.mode}",
        )
        index = self._require_benchmarks()
        found = await asyncio.to_thread(index.find_many, [text for _, text in documents])
        self.checked.labels("Decontaminate").inc(len(documents))
        response = dedup_pb2.DecontaminateResponse()
        cut = request.mode == dedup_pb2.DecontaminateRequest.MODE_CUT
        for (doc_id, text), matches in zip(documents, found, strict=True):
            self.contaminated.inc(int(bool(matches)))
            response.results.add(
                id=doc_id,
                contaminated=bool(matches),
                matches=[_match_pb(m) for m in matches],
                cleaned_text=cut_matches(text, matches) if cut else "",
            )
        return response

    async def LoadBenchmarks(
        self, request: dedup_pb2.LoadBenchmarksRequest, context: Any
    ) -> dedup_pb2.LoadBenchmarksResponse:
        require(len(request.files) > 0, "LoadBenchmarks needs at least one file")
        files: list[tuple[str, Path]] = []
        for i, spec in enumerate(request.files):
            require(bool(spec.path), f"file {i} has an empty path")
            path = Path(spec.path)
            require(path.is_file(), f"file {i}: {spec.path} is not a file the server can read")
            require(path.suffix == ".jsonl", f"file {i}: {spec.path} is not a .jsonl file")
            files.append((spec.name or benchmark_name(path), path))
        async with self._benchmark_lock:
            index = self.settings.benchmark_index() if request.replace else self.benchmarks.copy()
            try:
                added = await asyncio.to_thread(load_files, index, files)
            except (ValueError, OSError) as exc:
                raise RequestError.invalid(str(exc)) from None
            self.benchmarks = index  # swapped whole: a failed load above left the old index in place
        return dedup_pb2.LoadBenchmarksResponse(
            items=added, ngrams=index.ngrams, short_texts=index.short_texts
        )

    async def Stats(self, request: common_pb2.InfoRequest, context: Any) -> dedup_pb2.DedupStats:
        assert self.store is not None
        store = self.store
        try:
            documents, size = await asyncio.to_thread(lambda: (store.count(), store.stored_bytes()))
        except StoreError as exc:
            raise RequestError.unavailable(str(exc)) from None
        s = self.settings
        return dedup_pb2.DedupStats(
            documents=documents,
            store=store.kind,
            num_perm=s.num_perm,
            bands=s.bands,
            rows=s.rows,
            threshold=s.threshold,
            shingle_size=s.shingle_size,
            benchmark_ngrams=self.benchmarks.ngrams,
            benchmark_items=len(self.benchmarks.items),
            store_bytes=size,
        )

    async def Info(self, request: common_pb2.InfoRequest, context: Any) -> common_pb2.ServiceInfo:
        s = self.settings
        details = {
            "store": s.store,
            "threshold": str(s.threshold),
            "num_perm": str(s.num_perm),
            "bands_x_rows": f"{s.bands}x{s.rows}",
            "shingle_size": str(s.shingle_size),
            "ngram_size": str(s.ngram_size),
            "normalization": s.normalizer_description(),
            "benchmarks": ",".join(f"{k}={v}" for k, v in self.benchmarks.items_per_benchmark.items()),
        }
        details["location"] = s.store_path if s.store == "embedded" else s.redis_url
        return common_pb2.ServiceInfo(
            service=self.name,
            software_version=mathforge.__version__,
            backend=s.store,
            limits={"max_items": s.max_items, "max_doc_bytes": s.max_doc_bytes},
            details=details,
        )


def _match_pb(match: ContaminationMatch) -> dedup_pb2.ContaminationMatch:
    return dedup_pb2.ContaminationMatch(
        benchmark=match.benchmark, item=match.item, start=match.start, end=match.end, span=match.span
    )


def create_service(config: Config) -> Service:
    return DedupService(config)
