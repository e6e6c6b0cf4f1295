"""The dedup index cannot vanish silently: a real redis-server restarted empty, restored from an
older copy, or run without append-only persistence makes the service refuse, and a retried
CheckAndInsert is told apart from a duplicate."""

from __future__ import annotations

import shutil

import grpc
import pytest
from mathforge.dedup.service import Config, create_service
from mathforge.dedup.stores import StoreError
from mathforge.runtime.client import NO_RETRY
from mathforge.runtime.clients.dedup import DedupClient
from mathforge.runtime.server import ServerThread

from tests.services.redis_server import RedisServer

TEXTS = [" ".join(f"w{i}x{j}" for j in range(60)) for i in range(6)]


def _config(redis: RedisServer, **fields) -> Config:
    fields.setdefault("store", "redis")
    return Config(port=0, metrics_port=-1, redis_url=redis.url, **fields)


def _refused(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def test_a_redis_restarted_empty_makes_dedup_refuse_and_not_serving(tmp_path):
    with RedisServer(tmp_path / "redis") as redis, ServerThread(create_service(_config(redis))) as server:
        client = DedupClient(server.target, retry=NO_RETRY)
        assert all(v.inserted for v in client.check_and_insert([("a", TEXTS[0]), ("b", TEXTS[1])]))
        redis.restart(wipe=True)
        error = _refused(lambda: client.check_and_insert([("c", TEXTS[2])]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "came back empty" in error.details() and "redis_new_index" in error.details()
        assert client.health() == "NOT_SERVING"
        # Every index call is refused from now on, and nothing was written into the empty Redis.
        assert _refused(lambda: client.check([("a", TEXTS[0])])).code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _refused(lambda: client.stats()).code() == grpc.StatusCode.FAILED_PRECONDITION
        assert redis.client().dbsize() == 0
        assert "came back empty" in client.info().details["index_lost"]


def test_a_redis_restored_from_an_older_copy_is_refused(tmp_path):
    with RedisServer(tmp_path / "redis") as redis, ServerThread(create_service(_config(redis))) as server:
        client = DedupClient(server.target, retry=NO_RETRY)
        client.check_and_insert([("a", TEXTS[0])])
        redis.stop()
        shutil.copytree(redis.directory, tmp_path / "older")
        redis.start(port=redis.port)
        client.check_and_insert([("b", TEXTS[1]), ("c", TEXTS[2])])
        assert client.stats().documents == 3
        redis.stop()
        shutil.rmtree(redis.directory)
        shutil.copytree(tmp_path / "older", redis.directory)
        redis.start(port=redis.port)
        error = _refused(lambda: client.check([("d", TEXTS[3])]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "1 documents, fewer than the 3 seen before" in error.details()


def test_a_redis_without_append_only_persistence_is_refused_unless_accepted(tmp_path):
    with RedisServer(tmp_path / "redis", appendonly=False) as redis:
        with pytest.raises(StoreError, match="without append-only persistence") as err:
            ServerThread(create_service(_config(redis))).start()
        assert "appendonly='no'" in str(err.value) and "redis_accept_volatile" in str(err.value)
        with ServerThread(create_service(_config(redis, redis_accept_volatile=True))) as server:
            (verdict,) = DedupClient(server.target).check_and_insert([("a", TEXTS[0])])
            assert verdict.inserted


def test_an_expected_index_must_be_there_unless_a_new_one_is_asked_for(tmp_path):
    with RedisServer(tmp_path / "redis") as redis:
        with pytest.raises(StoreError, match="holds no dedup index"):
            ServerThread(create_service(_config(redis, redis_index_id="idx-1"))).start()
        fresh = _config(redis, redis_index_id="idx-1", redis_new_index=True)
        with ServerThread(create_service(fresh)) as server:
            client = DedupClient(server.target)
            client.check_and_insert([("a", TEXTS[0])])
            assert client.info().details["index_id"] == "idx-1"
        with pytest.raises(StoreError, match="holds index idx-1, not the expected idx-2"):
            ServerThread(create_service(_config(redis, redis_index_id="idx-2"))).start()
        with ServerThread(create_service(_config(redis, redis_index_id="idx-1"))) as server:
            (again,) = DedupClient(server.target).check([("a", TEXTS[0])])
            assert again.already_inserted


def test_a_password_protected_redis_needs_the_password_file(tmp_path):
    with RedisServer(tmp_path / "redis", password="s3cret-pass") as redis:
        with pytest.raises(StoreError, match="cannot use Redis"):
            ServerThread(create_service(_config(redis))).start()
        secret = tmp_path / "password"
        secret.write_text("s3cret-pass\n")
        with ServerThread(create_service(_config(redis, redis_password_file=str(secret)))) as server:
            assert DedupClient(server.target).check_and_insert([("a", TEXTS[0])])[0].inserted


@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_a_retried_check_and_insert_reports_already_inserted_not_a_duplicate(tmp_path, store):
    with RedisServer(tmp_path / "redis") as redis:
        config = _config(redis, store=store, store_path=str(tmp_path / "index"))
        with ServerThread(create_service(config)) as server:
            client = DedupClient(server.target)
            batch = [("a", TEXTS[0]), ("b", TEXTS[1])]
            first = client.check_and_insert(batch)
            retried = client.check_and_insert(batch)
            copy = client.check_and_insert([("copy-of-a", TEXTS[0])])
    assert [v.inserted for v in first] == [True, True]
    assert [(v.already_inserted, v.inserted, v.exact_duplicate_of) for v in retried] == [
        (True, False, "")
    ] * 2
    assert (copy[0].already_inserted, copy[0].exact_duplicate_of) == (False, "a")
