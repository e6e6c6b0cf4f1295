"""Classifier service on a real loopback server: order, limits, bad input, streaming, hot reload."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from mathforge.classifier.model import MathModel, TrainSettings, train_classifier
from mathforge.classifier.service import Config, create_service
from mathforge.classifier.web import iter_pages
from mathforge.runtime.clients.classifier import ClassifierClient
from mathforge.runtime.server import ServerThread
from mathforge.v1 import classifier_pb2, common_pb2

SETTINGS = TrainSettings(dim=16, epoch=10, bucket=1 << 14, min_count=2)


@pytest.fixture(scope="module")
def pages() -> list[dict[str, object]]:
    return list(iter_pages(1200, seed=7))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, pages: list[dict[str, object]]) -> tuple[Path, Path]:
    """Two models that disagree: `math` is a real classifier, `inverted` learnt the labels swapped."""
    directory = tmp_path_factory.mktemp("models")
    math = [str(p["text"]) for p in pages if p["is_math"]]
    other = [str(p["text"]) for p in pages if not p["is_math"]]
    train_classifier(math, other, directory / "math.bin", SETTINGS)
    train_classifier(other, math, directory / "inverted.bin", SETTINGS)
    return directory / "math.bin", directory / "inverted.bin"


@pytest.fixture(scope="module")
def server(models: tuple[Path, Path]):
    config = Config(
        port=0, metrics_port=-1, model_path=str(models[0]), max_items=64, max_doc_bytes=8192, batch_size=16
    )
    with ServerThread(create_service(config)) as running:
        yield running


@pytest.fixture()
def client(server: ServerThread):
    with ClassifierClient(server.target, timeout_s=20) as c:
        yield c


def _texts(pages: list[dict[str, object]], n: int) -> list[str]:
    return [str(p["text"])[:4000] for p in pages[:n]]


def test_scores_keep_request_order_and_match_in_process_model(client, models, pages) -> None:
    texts = _texts(pages, 50)
    served = client.score(texts, batch_size=64)
    local = MathModel.load(models[0]).score(texts)
    np.testing.assert_allclose(served, local, atol=1e-6)
    truth = [bool(p["is_math"]) for p in pages[:50]]
    assert sum((s >= 0.5) == t for s, t in zip(served, truth, strict=True)) >= 40
    backwards = client.score(list(reversed(texts)), batch_size=64)
    assert backwards == pytest.approx(list(reversed(served)), abs=1e-6)


def _code_and_message(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_empty_batch_is_invalid_argument(client) -> None:
    code, message = _code_and_message(lambda: client.call("Score", classifier_pb2.ScoreRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "no documents" in message


def test_empty_document_is_named(client) -> None:
    code, message = _code_and_message(lambda: client.score(["fine text", "   "]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "document 1 is empty" in message


def test_huge_document_names_limit_and_flag(client) -> None:
    code, message = _code_and_message(lambda: client.score(["ok", "x" * 9000]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "document 1" in message and "8 KB" in message and "--max-doc-bytes" in message


def test_too_many_documents_names_limit(client) -> None:
    code, message = _code_and_message(lambda: client.score(["a"] * 65, batch_size=65))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "65 documents" in message and "--max-items" in message


def test_binary_document_is_rejected(client) -> None:
    code, message = _code_and_message(lambda: client.score(["text", "PK\x03\x04\x00\x00binary"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "document 1 looks like binary" in message


def test_invalid_utf8_bytes_are_invalid_argument_and_server_survives(server, client) -> None:
    text = b"\x12\x03\xff\xfe\xfd"  # Document.text (field 2) holding bytes that are not UTF-8
    request = b"\x0a" + bytes([len(text)]) + text  # ScoreRequest.documents (field 1)
    with grpc.insecure_channel(server.target) as channel:
        raw = channel.unary_unary("/mathforge.v1.Classifier/Score")
        with pytest.raises(grpc.RpcError) as info:
            raw(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in info.value.details()
    assert len(client.score(["still serving"])) == 1


def test_stream_answers_each_message_in_order(client, models, pages) -> None:
    texts = _texts(pages, 60)
    batches = [texts[i : i + 20] for i in range(0, 60, 20)]
    answers = list(client.score_stream(iter(batches)))
    local = MathModel.load(models[0]).score(texts)
    assert [len(a) for a in answers] == [20, 20, 20]
    np.testing.assert_allclose(np.concatenate(answers), local, atol=1e-6)


def test_reload_of_bad_file_keeps_serving_old_model(client, tmp_path) -> None:
    before = client.info().model_version
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    code, message = _code_and_message(lambda: client.reload(str(bad)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "still serving version" in message
    code, _ = _code_and_message(lambda: client.reload(str(tmp_path / "missing.bin")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert client.info().model_version == before


def test_reload_during_stream_of_calls_loses_none(server, models, pages) -> None:
    texts = _texts(pages, 24)
    expected = {path: MathModel.load(path).score(texts) for path in models}
    request = classifier_pb2.ScoreRequest(documents=[common_pb2.Document(text=t) for t in texts])
    results: list[tuple[int, list[float]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller() -> None:
        with ClassifierClient(server.target, timeout_s=30) as c:
            while not stop.is_set():
                try:
                    reply = c.call("Score", request)
                    results.append((reply.model_version, list(reply.scores)))
                except BaseException as exc:  # every failure is a lost call
                    errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    versions = []
    with ClassifierClient(server.target, timeout_s=30) as admin:
        start_version = admin.info().model_version
        for i in range(6):
            versions.append(admin.reload(str(models[(i + 1) % 2])).model_version)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert versions == list(range(start_version + 1, start_version + 7))
    seen = {version for version, _ in results}
    assert len(results) > 10 and len(seen) >= 2
    for version, scores in results:
        # Versions alternate inverted/math after the start; each answer matches the model of its version.
        path = models[0] if (version - start_version) % 2 == 0 else models[1]
        np.testing.assert_allclose(scores, expected[path], atol=1e-6)


def test_info_reports_model_limits_and_counts(server, client) -> None:
    info = client.info()
    assert info.service == "mathforge.v1.Classifier" and info.backend == "fasttext"
    assert info.limits["max_items"] == 64 and info.limits["max_doc_bytes"] == 8192
    assert info.details["dim"] == "16"
    scored = server.service.registry.get_sample_value("mathforge_classifier_documents_total")
    assert scored and scored > 0


def test_without_a_model_path_the_service_trains_and_serves_a_builtin_model(tmp_path) -> None:
    config = Config(port=0, metrics_port=-1, builtin_model_dir=str(tmp_path))
    with ServerThread(create_service(config)) as running, ClassifierClient(running.target) as c:
        info = c.info()
        assert info.details["model_source"].startswith("built-in") and not info.random_weights
        assert Path(info.model).parent == tmp_path
        math, shop = c.score(
            [
                r"Let $G$ be a group. Prove that \frac{1}{n} \sum_k a_k converges.",
                "Free shipping on cotton shirts, buy 2 get 1 free, 19.99 dollars",
            ]
        )
        assert math > 0.5 > shop


def test_config_rejects_a_missing_model_file_and_bad_limits(tmp_path) -> None:
    from mathforge.runtime.config import ConfigError

    with pytest.raises(ConfigError, match="--model-path"):
        Config.from_mapping({"model_path": str(tmp_path / "missing.bin")})
    with pytest.raises(ConfigError, match="max_items 0"):
        Config.from_mapping({"max_items": 0})


def test_reload_while_a_score_stream_is_open_answers_every_message(server, models, pages) -> None:
    texts = _texts(pages, 8)
    sent = threading.Event()

    def batches():
        for i in range(12):
            if i == 4:
                sent.set()
            yield classifier_pb2.ScoreRequest(documents=[common_pb2.Document(text=t) for t in texts])

    with ClassifierClient(server.target, timeout_s=30) as c, ClassifierClient(server.target) as admin:
        before = admin.info().model_version
        reloader = threading.Thread(target=lambda: sent.wait(10) and admin.reload(str(models[0])))
        reloader.start()
        replies = list(c.stub.ScoreStream(batches(), timeout=30))
        reloader.join()
        assert admin.info().model_version == before + 1
    assert len(replies) == 12 and all(len(r.scores) == 8 for r in replies)
    assert {r.model_version for r in replies} <= {before, before + 1}
