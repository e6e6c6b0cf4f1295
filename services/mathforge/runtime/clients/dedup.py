"""Typed client of the dedup service.

with DedupClient("127.0.0.1:50052") as dedup:
    verdicts = dedup.check_and_insert([("doc-1", text1), ("doc-2", text2)])
    dedup.load_benchmarks(["/data/benchmarks/gsm8k_test.jsonl"])
    results = dedup.decontaminate([("doc-3", text3)], cut=True)
"""

from __future__ import annotations

from collections.abc import Sequence

from mathforge.runtime.client import ServiceClient
from mathforge.v1 import common_pb2, dedup_pb2, dedup_pb2_grpc

Documents = Sequence[tuple[str, str]]


def _documents(documents: Documents) -> list[common_pb2.Document]:
    return [common_pb2.Document(id=doc_id, text=text) for doc_id, text in documents]


class DedupClient(ServiceClient):
    """Calls mathforge.v1.Dedup with deadlines and retries on UNAVAILABLE."""

    service_name = "mathforge.v1.Dedup"
    stub_class = dedup_pb2_grpc.DedupStub

    def check(
        self, documents: Documents, check_contamination: bool = False, timeout_s: float | None = None
    ) -> list[dedup_pb2.DocumentVerdict]:
        """Verdicts for (id, text) documents, in order; the index is not changed."""
        request = dedup_pb2.DedupRequest(
            documents=_documents(documents), check_contamination=check_contamination
        )
        return list(self.call("Check", request, timeout_s=timeout_s).verdicts)

    def check_and_insert(
        self, documents: Documents, check_contamination: bool = False, timeout_s: float | None = None
    ) -> list[dedup_pb2.DocumentVerdict]:
        """Verdicts for (id, text) documents; new ones are inserted (verdict.inserted), durably."""
        request = dedup_pb2.DedupRequest(
            documents=_documents(documents), check_contamination=check_contamination
        )
        return list(self.call("CheckAndInsert", request, timeout_s=timeout_s).verdicts)

    def decontaminate(
        self, documents: Documents, cut: bool = False, timeout_s: float | None = None
    ) -> list[dedup_pb2.DecontaminationResult]:
        """Benchmark matches per document; with cut=True also the text with matched spans removed."""
        mode = dedup_pb2.DecontaminateRequest.MODE_CUT if cut else dedup_pb2.DecontaminateRequest.MODE_VERDICT
        request = dedup_pb2.DecontaminateRequest(documents=_documents(documents), mode=mode)
        return list(self.call("Decontaminate", request, timeout_s=timeout_s).results)

    def load_benchmarks(
        self, files: Sequence[str | tuple[str, str]], replace: bool = False, timeout_s: float | None = 300.0
    ) -> dedup_pb2.LoadBenchmarksResponse:
        """Indexes benchmark files readable by the server: paths, or (name, path) pairs."""
        specs = [
            dedup_pb2.BenchmarkFile(path=f)
            if isinstance(f, str)
            else dedup_pb2.BenchmarkFile(name=f[0], path=f[1])
            for f in files
        ]
        return self.call(
            "LoadBenchmarks",
            dedup_pb2.LoadBenchmarksRequest(files=specs, replace=replace),
            timeout_s=timeout_s,
        )

    def stats(self, timeout_s: float | None = None) -> dedup_pb2.DedupStats:
        return self.call("Stats", common_pb2.InfoRequest(), timeout_s=timeout_s)
