"""The dedup service: exact and near-duplicate checks over a shared index, and decontamination.

    mathforge serve dedup --store embedded --store-path .cache/dedup --benchmarks gsm8k,math \\
        --benchmark-dir tests/fixtures/benchmarks
    mathforge serve dedup --store redis --redis-url redis://redis:6379/0     # replicas share the index

Budgets come before work: a request's size (max_request_bytes) is checked before any text is read,
each document's (max_doc_bytes) before it is shingled. If the Redis index vanishes (Redis back
empty, another index, fewer documents than acknowledged), every index call is refused with
FAILED_PRECONDITION and readiness turns NOT_SERVING, until an operator restores it or restarts the
service with redis_new_index.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter

import mathforge
from mathforge.dedup.benchmark_sources import expand_sources, load_files
from mathforge.dedup.config import Config
from mathforge.dedup.decontam import BenchmarkIndex, ContaminationMatch, cut_matches
from mathforge.dedup.fingerprint import Fingerprinter
from mathforge.dedup.stores import DedupStore, IndexLostError, StoreError, StoreVerdict, mark_retries
from mathforge.evaluator.benchmarks import benchmark_name
from mathforge.runtime.config import redact_url
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
        #: Why the index can no longer be trusted; once set, index calls are refused.
        self.index_lost = ""
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
    def _validate(
        self, request: dedup_pb2.DedupRequest | dedup_pb2.DecontaminateRequest
    ) -> list[tuple[str, str]]:
        documents: Sequence[common_pb2.Document] = request.documents
        check_count(len(documents), self.settings.max_items, "documents", "max-items")
        # ByteSize reads the parsed message's sizes without making a Python string of any text.
        size = request.ByteSize()
        if size > self.settings.max_request_bytes:
            raise RequestError.exhausted(
                f"request is {size} bytes, over the {self.settings.max_request_bytes}-byte limit "
                "(--max-request-bytes); send fewer or smaller documents per call"
            )
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

    def _require_index(self) -> DedupStore:
        if self.index_lost:
            raise RequestError.precondition(self.index_lost)
        assert self.store is not None
        return self.store

    async def _index_error(self, exc: StoreError) -> RequestError:
        """The status for a store failure; a lost index also turns readiness off for good."""
        if not isinstance(exc, IndexLostError):
            return RequestError.unavailable(str(exc))
        if not self.index_lost:
            self.index_lost = str(exc)
            log.error("dedup index lost; refusing to serve", extra={"fields": {"error": str(exc)}})
            await self.set_serving(False)
        return RequestError.precondition(self.index_lost)

    async def _dedup(self, request: dedup_pb2.DedupRequest, insert: bool) -> dedup_pb2.DedupResponse:
        documents = self._validate(request)
        index = self._require_benchmarks() if request.check_contamination else None
        store = self._require_index()
        text_bytes = request.ByteSize()

        def work() -> tuple[list[StoreVerdict], list[list[ContaminationMatch]]]:
            # A slice of text at a time: shingling takes ~50x the text in memory while it runs.
            prints = [fp for part in _slices(documents) for fp in self.fingerprinter.fingerprints(part)]
            verdicts = mark_retries(prints, store.check_and_insert(prints) if insert else store.check(prints))
            matches = index.find_many([text for _, text in documents]) if index is not None else []
            return verdicts, matches

        def work_then_trim() -> tuple[list[StoreVerdict], list[list[ContaminationMatch]]]:
            try:
                return work()
            finally:  # work's shingles and signatures are freed by now
                if text_bytes >= TRIM_AFTER_BYTES:
                    _return_memory()

        try:
            verdicts, matches = await asyncio.to_thread(work_then_trim)
        except StoreError as exc:
            raise await self._index_error(exc) from None
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
                already_inserted=verdict.already_inserted,
                contaminated=bool(found),
                matches=[_match_pb(m) for m in found],
            )
        return response

    async def Decontaminate(
        self, request: dedup_pb2.DecontaminateRequest, context: Any
    ) -> dedup_pb2.DecontaminateResponse:
        documents = self._validate(request)
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
            path = self.access.require_path("benchmark", spec.path, f"file {i}")
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
        store = self._require_index()
        try:
            documents, size = await asyncio.to_thread(lambda: (store.count(), store.stored_bytes()))
        except StoreError as exc:
            raise await self._index_error(exc) from None
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
        details["location"] = s.store_path if s.store == "embedded" else redact_url(s.redis_url)
        store = self.store
        if store is not None and store.kind == "redis":
            details["index_id"] = getattr(store, "identity", "")
            details["persistence"] = getattr(store, "persistence", "")
        if self.index_lost:
            details["index_lost"] = self.index_lost
        return common_pb2.ServiceInfo(
            service=self.name,
            software_version=mathforge.__version__,
            backend=s.store,
            limits={
                "max_items": s.max_items,
                "max_doc_bytes": s.max_doc_bytes,
                "max_request_bytes": s.max_request_bytes,
            },
            details=details,
        )


#: After a request this large, freed memory is handed back to the system rather than kept by malloc.
TRIM_AFTER_BYTES = 1 << 20
#: Text characters fingerprinted at once, which bounds a request's working memory (~50x this).
SLICE_CHARS = 1 << 20


def _slices(documents: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """The documents in order, in runs of about SLICE_CHARS characters (a longer one alone)."""
    run: list[tuple[str, str]] = []
    size = 0
    for doc in documents:
        if run and size + len(doc[1]) > SLICE_CHARS:
            yield run
            run, size = [], 0
        run.append(doc)
        size += len(doc[1])
    if run:
        yield run


_LIBC = ctypes.util.find_library("c")


def _return_memory() -> None:
    """glibc keeps freed heap pages of a big request; malloc_trim gives them back to the system."""
    if _LIBC:
        ctypes.CDLL(_LIBC).malloc_trim(0)


def _match_pb(match: ContaminationMatch) -> dedup_pb2.ContaminationMatch:
    return dedup_pb2.ContaminationMatch(
        benchmark=match.benchmark, item=match.item, start=match.start, end=match.end, span=match.span
    )


def create_service(config: Config) -> Service:
    return DedupService(config)
