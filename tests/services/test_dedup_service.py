"""The dedup service on a real loopback server: RPCs, limits, errors, and Redis replicas racing."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import grpc
import pytest
from mathforge.dedup.service import Config, create_service
from mathforge.runtime.clients.dedup import DedupClient
from mathforge.runtime.server import ServerThread

from tests.services.redis_server import RedisServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
BASE = " ".join(f"token{i}" for i in range(300))
NEAR = BASE.replace("token150 ", "changed ")
GSM8K_QUESTION = "Tom has 3 boxes with 14 pencils each. He gives away 10 pencils. How many are left?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = Config(
        port=0,
        metrics_port=0,
        store_path=str(tmp_path_factory.mktemp("store")),
        max_items=8,
        max_doc_bytes=4096,
        benchmarks=[str(FIXTURES)],
    )
    with ServerThread(create_service(config)) as running:
        yield running


@pytest.fixture()
def client(server):
    with DedupClient(server.target, timeout_s=30) as dedup:
        yield dedup


def test_check_and_insert_keeps_the_first_and_names_it_for_duplicates(client):
    a, b, c = client.check_and_insert([("svc-a", BASE), ("svc-b", BASE.upper()), ("svc-c", NEAR)])
    assert a.inserted and not b.inserted and not c.inserted
    assert b.exact_duplicate_of == "svc-a"
    assert c.near_duplicate_of == "svc-a" and c.jaccard >= 0.8
    (again,) = client.check([("svc-d", NEAR)])
    assert again.near_duplicate_of == "svc-a" and not again.inserted


def test_check_with_contamination_reports_benchmark_matches(client):
    (verdict,) = client.check([("web", "From a forum: " + GSM8K_QUESTION.lower())], check_contamination=True)
    assert verdict.contaminated
    (match,) = verdict.matches
    assert (match.benchmark, match.item) == ("gsm8k", "gsm8k-0")
    assert match.span == GSM8K_QUESTION.lower()[:-1] and match.start == len("From a forum: ")


def test_decontaminate_cuts_the_matched_segment(client):
    text = f"Intro. {GSM8K_QUESTION} Outro."
    (result,) = client.decontaminate([("d", text)], cut=True)
    assert result.contaminated and result.cleaned_text == "Intro. ? Outro."
    (clean,) = client.decontaminate([("e", "Nothing from any benchmark, just x^2 + 1 = 2.")], cut=True)
    assert not clean.contaminated and clean.cleaned_text == "Nothing from any benchmark, just x^2 + 1 = 2."


@pytest.mark.parametrize(
    ("documents", "code", "needle"),
    [
        ([(f"n{i}", f"text {i}") for i in range(9)], grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-items"),
        ([("big", "x " * 3000)], grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-doc-bytes"),
        ([("same", "one text"), ("same", "other text")], grpc.StatusCode.INVALID_ARGUMENT, "appears twice"),
        ([("", "no id")], grpc.StatusCode.INVALID_ARGUMENT, "empty id"),
        ([("i" * 1025, "long id")], grpc.StatusCode.INVALID_ARGUMENT, "over the 1024 limit"),
    ],
)
def test_a_rejected_batch_names_the_problem_and_changes_nothing(client, documents, code, needle):
    before = client.stats().documents
    with pytest.raises(grpc.RpcError) as error:
        client.check_and_insert([("fresh-before-bad", "a brand new document that is fine"), *documents])
    assert error.value.code() == code and needle in error.value.details()
    assert client.stats().documents == before


def test_load_benchmarks_rejects_a_missing_file_and_keeps_the_index(client):
    items_before = client.stats().benchmark_items
    with pytest.raises(grpc.RpcError) as error:
        client.load_benchmarks([str(FIXTURES / "gsm8k_test.jsonl"), "/nonexistent/bench.jsonl"])
    assert (
        error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "/nonexistent/bench.jsonl" in error.value.details()
    )
    assert client.stats().benchmark_items == items_before
    with pytest.raises(grpc.RpcError) as error:
        client.load_benchmarks([str(FIXTURES)])
    assert "is not a file" in error.value.details()


def test_decontaminate_without_an_index_is_failed_precondition_until_loaded(tmp_path):
    config = Config(port=0, metrics_port=-1, store_path=str(tmp_path))
    with ServerThread(create_service(config)) as running, DedupClient(running.target) as dedup:
        with pytest.raises(grpc.RpcError) as error:
            dedup.decontaminate([("d", GSM8K_QUESTION)])
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        loaded = dedup.load_benchmarks([("grade-school", str(FIXTURES / "gsm8k_test.jsonl"))])
        assert dict(loaded.items) == {"grade-school": 3} and loaded.ngrams > 0
        (result,) = dedup.decontaminate([("d", GSM8K_QUESTION)])
        assert result.matches[0].benchmark == "grade-school"
        replaced = dedup.load_benchmarks([str(FIXTURES / "cmath_test.jsonl")], replace=True)
        assert dict(replaced.items) == {"cmath": 3}
        assert not dedup.decontaminate([("d", GSM8K_QUESTION)])[0].contaminated


def test_stats_info_and_metrics_describe_the_index(server, client):
    stats = client.stats()
    assert (stats.store, stats.num_perm, stats.bands, stats.rows, stats.shingle_size) == (
        "embedded",
        128,
        16,
        8,
        5,
    )
    assert stats.benchmark_items == 21 and stats.store_bytes > 0
    info = client.info()
    assert info.backend == "embedded" and info.limits["max_items"] == 8
    assert "NFKC" in info.details["normalization"]
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    )
    assert "mathforge_dedup_documents_total" in body and "mathforge_dedup_duplicates_total" in body


def test_two_redis_replicas_racing_on_near_duplicates_keep_exactly_one(tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server:
        replicas = [
            ServerThread(
                create_service(
                    Config(
                        port=0,
                        metrics_port=-1,
                        store="redis",
                        redis_url=redis_server.url,
                        redis_prefix="race",
                    )
                )
            )
            for _ in range(2)
        ]
        for replica in replicas:
            replica.start()
        try:
            clients = [DedupClient(r.target) for r in replicas]
            for round_number in range(12):
                base = " ".join(f"r{round_number}w{i}" for i in range(200))
                variants = [base.replace(f"w{10 * k} ", f"edit{k} ") for k in range(1, 7)]
                results: list[list] = [[], []]
                barrier = threading.Barrier(2)

                def send(side: int, docs: list[tuple[str, str]], barrier=barrier, results=results) -> None:
                    barrier.wait()
                    for doc in docs:  # one document per call, to interleave the two replicas
                        results[side].extend(clients[side].check_and_insert([doc]))

                threads = [
                    threading.Thread(
                        target=send,
                        args=(
                            side,
                            [(f"r{round_number}-{side}-{k}", v) for k, v in enumerate(variants[side::2])],
                        ),
                    )
                    for side in (0, 1)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                inserted = [v.id for side in results for v in side if v.inserted]
                assert len(inserted) == 1, (round_number, inserted)
                assert all(
                    v.near_duplicate_of == inserted[0] for side in results for v in side if not v.inserted
                )
            assert clients[0].stats().documents == 12 == clients[1].stats().documents
        finally:
            for replica in replicas:
                replica.stop()
