"""A servicer defined for the runtime tests: the Classifier API, scoring each document by its
length, with test hooks in the text ("sleep:1.5" sleeps before answering). Runnable as a script
so tests can SIGTERM a real server process:

    python tests/services/echo_service.py --port 0 --grace-s 5
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import grpc
from mathforge.runtime.config import ServiceConfig, option
from mathforge.runtime.errors import check_bytes, check_count
from mathforge.runtime.server import Service, serve_forever
from mathforge.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


@dataclasses.dataclass
class EchoConfig(ServiceConfig):
    max_items: int = option(8, "documents per request")
    max_doc_bytes: int = option(1024, "bytes per document")


class EchoService(Service, classifier_pb2_grpc.ClassifierServicer):
    name = "mathforge.v1.Classifier"

    def __init__(self, config: EchoConfig, ready: asyncio.Event | None = None):
        super().__init__(config)
        self.config: EchoConfig = config
        self.ready_gate = ready
        self.finished_calls = 0

    def register(self, server: grpc.aio.Server) -> None:
        classifier_pb2_grpc.add_ClassifierServicer_to_server(self, server)

    async def start(self) -> None:
        if self.ready_gate is not None:
            await self.ready_gate.wait()

    async def Score(self, request, context):
        check_count(len(request.documents), self.config.max_items, "documents", "max-items")
        for i, doc in enumerate(request.documents):
            check_bytes(i, len(doc.text.encode()), self.config.max_doc_bytes, "document", "max-doc-bytes")
        for doc in request.documents:
            if doc.text.startswith("sleep:"):
                await asyncio.sleep(float(doc.text.split(":", 1)[1]))
        self.finished_calls += 1
        return classifier_pb2.ScoreResponse(scores=[float(len(d.text)) for d in request.documents])

    async def ScoreStream(self, request_iterator, context):
        async for request in request_iterator:
            yield classifier_pb2.ScoreResponse(scores=[float(len(d.text)) for d in request.documents])

    async def Info(self, request, context):
        return common_pb2.ServiceInfo(service=self.name, backend="echo")


if __name__ == "__main__":
    sys.exit(serve_forever(EchoService(EchoConfig.from_args(sys.argv[1:]))))
