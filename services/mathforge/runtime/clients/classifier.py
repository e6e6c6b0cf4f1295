"""Typed client of the Classifier service.

with ClassifierClient("127.0.0.1:50051") as classifier:
    classifier.wait_ready()
    scores = classifier.score(["Let $x^2 = 2$ ...", "Free shipping on all orders"])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from mathforge.runtime.client import ServiceClient
from mathforge.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


def _request(texts: Sequence[str]) -> classifier_pb2.ScoreRequest:
    return classifier_pb2.ScoreRequest(documents=[common_pb2.Document(text=t) for t in texts])


class ClassifierClient(ServiceClient):
    service_name = "mathforge.v1.Classifier"
    stub_class = classifier_pb2_grpc.ClassifierStub

    def score(
        self, texts: Sequence[str], *, batch_size: int = 512, timeout_s: float | None = None
    ) -> list[float]:
        """P(math) per text, in order; `batch_size` texts per call (at most the server's max_items)."""
        scores: list[float] = []
        for start in range(0, len(texts), batch_size):
            reply = self.call("Score", _request(texts[start : start + batch_size]), timeout_s=timeout_s)
            scores.extend(reply.scores)
        return scores

    def score_stream(
        self, batches: Iterable[Sequence[str]], *, timeout_s: float | None = None
    ) -> Iterator[list[float]]:
        """Scores batches over one ScoreStream call: yields one list of P(math) per batch, in order.

        Not retried: the batches are consumed as they are sent, so a broken stream raises grpc.RpcError
        and the caller resumes from the first batch it did not get an answer for.
        """
        requests = (_request(batch) for batch in batches)
        for reply in self.stub.ScoreStream(
            requests, timeout=self.timeout_s if timeout_s is None else timeout_s
        ):
            yield list(reply.scores)

    def reload(
        self, model_path: str = "", *, timeout_s: float | None = None
    ) -> classifier_pb2.ReloadResponse:
        """Swaps the server's model for `model_path` (empty = its configured one); the new version."""
        return self.call("Reload", classifier_pb2.ReloadRequest(model_path=model_path), timeout_s=timeout_s)
