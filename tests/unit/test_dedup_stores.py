"""The two index stores behave alike; the embedded one survives reopening and torn writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mathforge.dedup.compact_map import CompactMultiMap
from mathforge.dedup.fingerprint import Fingerprinter, NearDuplicatePolicy
from mathforge.dedup.minhash import MinHasher
from mathforge.dedup.normalize import TextNormalizer
from mathforge.dedup.stores import StoreError, StoreSettings
from mathforge.dedup.stores.embedded import EmbeddedStore
from mathforge.dedup.stores.redis_store import RedisStore

from tests.services.redis_server import RedisServer

HASHER = MinHasher()
PRINTS = Fingerprinter(TextNormalizer(), HASHER)
SETTINGS = StoreSettings(128, 16, 8, 5, 1)
BASE = " ".join(f"token{i}" for i in range(300))
NEAR = BASE.replace("token150 ", "changed ")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(params=["embedded", "redis"])
def store(request, tmp_path, redis_url):
    if request.param == "embedded":
        opened = EmbeddedStore(tmp_path / "index", HASHER, NearDuplicatePolicy(), fsync=False)
    else:
        opened = RedisStore(redis_url, f"test:{tmp_path.name}", SETTINGS, NearDuplicatePolicy())
    yield opened
    opened.close()


def test_check_and_insert_keeps_first_of_exact_and_near_duplicates_in_order(store):
    docs = [("a", BASE), ("b", BASE.upper() + "  "), ("c", NEAR), ("d", "something else entirely " * 9)]
    verdicts = store.check_and_insert(PRINTS.fingerprints(docs))
    assert [v.inserted for v in verdicts] == [True, False, False, True]
    assert verdicts[1].exact_duplicate_of == "a"
    assert verdicts[2].near_duplicate_of == "a" and 0.8 <= verdicts[2].jaccard < 1.0
    assert store.count() == 2


def test_check_reports_without_inserting(store):
    (verdict,) = store.check(PRINTS.fingerprints([("a", BASE)]))
    assert not verdict.inserted and not verdict.exact_duplicate_of
    assert store.count() == 0
    store.check_and_insert(PRINTS.fingerprints([("a", BASE)]))
    (again,) = store.check(PRINTS.fingerprints([("z", NEAR)]))
    assert again.near_duplicate_of == "a" and store.count() == 1


def test_without_verification_any_lsh_candidate_is_a_near_duplicate(tmp_path):
    store = EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy(threshold=0.99, verify=False), fsync=False)
    store.check_and_insert(PRINTS.fingerprints([("a", BASE)]))
    (verdict,) = store.check(PRINTS.fingerprints([("b", NEAR)]))
    store.close()
    assert verdict.near_duplicate_of == "a" and verdict.jaccard < 0.99


def test_embedded_store_reopens_with_every_insert(tmp_path):
    store = EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy())
    texts = [" ".join(f"t{i}x{j}" for j in range(30)) for i in range(40)]
    for start in range(0, 40, 10):  # several batches, several frames
        store.check_and_insert(
            PRINTS.fingerprints([(f"doc-{i}", texts[i]) for i in range(start, start + 10)])
        )
    store.close()
    reopened = EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy())
    verdicts = reopened.check(PRINTS.fingerprints([(f"x{i}", text) for i, text in enumerate(texts)]))
    reopened.close()
    assert [v.exact_duplicate_of for v in verdicts] == [f"doc-{i}" for i in range(40)]


def test_embedded_store_cuts_a_torn_last_batch_and_keeps_the_rest(tmp_path):
    store = EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy())
    store.check_and_insert(PRINTS.fingerprints([("a", BASE)]))
    store.close()
    log_path = tmp_path / "index.log"
    good_size = log_path.stat().st_size
    with open(log_path, "ab") as log:
        log.write(b"\x40\x00\x00\x00\x01\x02\x03\x04partial")  # a frame header promising more bytes
    reopened = EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy())
    assert reopened.count() == 1 and log_path.stat().st_size == good_size
    assert reopened.check_and_insert(PRINTS.fingerprints([("b", "new text " * 20)]))[0].inserted
    reopened.close()
    assert EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy()).count() == 2


def test_embedded_store_refuses_other_settings_and_a_second_opener(tmp_path):
    store = EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy())
    with pytest.raises(StoreError, match=rf"in use by process {os.getpid()} \("):
        EmbeddedStore(tmp_path, HASHER, NearDuplicatePolicy())
    store.close()
    with pytest.raises(StoreError, match="num_perm=64"):
        EmbeddedStore(tmp_path, MinHasher(num_perm=64, bands=8, rows=8), NearDuplicatePolicy())


def test_redis_store_refuses_an_index_built_with_other_settings(redis_url):
    RedisStore(redis_url, "settings-test", SETTINGS, NearDuplicatePolicy()).close()
    with pytest.raises(StoreError, match="redis-prefix"):
        RedisStore(redis_url, "settings-test", StoreSettings(64, 8, 8, 5, 1), NearDuplicatePolicy())


def test_redis_store_reports_an_unreachable_server():
    with pytest.raises(StoreError, match="cannot use Redis"):
        RedisStore("redis://127.0.0.1:1/0", "x", SETTINGS, NearDuplicatePolicy(), timeout_s=0.5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 2**32 - 1)), max_size=12000))
def test_compact_map_returns_what_a_dict_of_lists_would(pairs):
    compact, reference = CompactMultiMap(), {}
    for key, value in pairs:
        compact.add(np.array([key], dtype=np.uint64), value)
        reference.setdefault(key, set()).add(value)
    for key in range(62):
        assert compact.get(np.array([key], dtype=np.uint64)) == sorted(reference.get(key, ()))
    assert len(compact) == len(pairs)


def test_compact_map_stays_correct_across_flushes_and_merges():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 5000, 30000).astype(np.uint64)
    compact, reference = CompactMultiMap(), {}
    compact.extend(keys[:5000], np.arange(5000, dtype=np.uint32))
    for number, key in enumerate(keys.tolist()):
        reference.setdefault(key, []).append(number)
        if number >= 5000:
            compact.add(np.array([key], dtype=np.uint64), number)
    assert len(compact._runs) <= 6 and compact.nbytes >= 12 * 28000
    for key in rng.integers(0, 5100, 300).tolist():
        assert compact.get(np.array([key], dtype=np.uint64)) == sorted(reference.get(key, []))
    queries = rng.integers(0, 5100, (50, 4)).astype(np.uint64)
    assert compact.get_many(queries) == [compact.get(row) for row in queries]


def test_embedded_and_redis_stores_give_the_same_verdicts(tmp_path, redis_url):
    rng = np.random.default_rng(5)
    bases = [" ".join(f"b{b}w{i}" for i in range(120)) for b in range(12)]
    docs = []
    for number in range(80):
        words = bases[int(rng.integers(0, 12))].split()
        for position in rng.choice(len(words), int(rng.integers(0, 30)), replace=False):
            words[position] = f"e{number}x{position}"
        docs.append((f"doc-{number}", " ".join(words)))
    prints = PRINTS.fingerprints(docs)
    embedded = EmbeddedStore(tmp_path / "index", HASHER, NearDuplicatePolicy(), fsync=False)
    shared = RedisStore(redis_url, f"same:{tmp_path.name}", SETTINGS, NearDuplicatePolicy())
    try:
        results = []
        for store in (embedded, shared):
            verdicts = [
                v for start in range(0, 80, 7) for v in store.check_and_insert(prints[start : start + 7])
            ]
            results.append(
                [
                    (v.exact_duplicate_of, v.near_duplicate_of, v.inserted, round(v.jaccard, 6))
                    for v in verdicts
                ]
            )
    finally:
        embedded.close()
        shared.close()
    assert results[0] == results[1]
    assert 12 <= sum(inserted for _, _, inserted, _ in results[0]) < 80
