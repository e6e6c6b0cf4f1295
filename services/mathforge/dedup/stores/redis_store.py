"""The Redis index store: shared by every replica; check-and-insert is one atomic Lua script.

Keys (all under one hash tag, so a Redis Cluster keeps them in one slot):

    {prefix}:settings   hash   MinHash settings the index was built with (checked on connect)
    {prefix}:count      string documents inserted (also the last document number)
    {prefix}:exact      hash   exact key (8 bytes) -> document number
    {prefix}:band       hash   band key (8 bytes) -> document numbers (packed uint32)
    {prefix}:sig        hash   document number -> signature (num_perm x uint32)
    {prefix}:id         hash   document number -> document id
    {prefix}:identity   string a random id of this index, made when the index is created

Every script call first checks the identity and returns the document count: a Redis that came back
empty (restarted without its data) or holding another index, or whose count fell below one this
process saw, raises IndexLostError instead of answering against the wrong index. At connect the
store refuses a Redis without append-only persistence (CONFIG GET appendonly), where a restart
loses acknowledged inserts, unless told to accept it.

The script looks the document up (exact key, then band candidates ranked by estimated Jaccard) and,
when asked to insert and nothing matched, inserts it, all in one step on the server: of two replicas
racing with near-duplicate documents, the second to run sees the first's insert, so exactly one is
kept. Durability is Redis's own: run it with appendonly yes (the chart does) and appendfsync always
for "acknowledged means on disk", or everysec to trade up to a second of inserts for speed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import redis

from mathforge.dedup.fingerprint import Fingerprint, NearDuplicatePolicy
from mathforge.dedup.stores.base import DedupStore, IndexLostError, StoreError, StoreSettings, StoreVerdict
from mathforge.runtime.config import redact_url

log = logging.getLogger(__name__)

# KEYS: exact, band, sig, id, count, identity.  ARGV: insert (0/1), exact key, signature, band keys
# (8 bytes each, concatenated), threshold, verify (0/1), document id, index identity.
# Returns {kind, other id, jaccard, count}: kind 1 = exact duplicate, 2 = near duplicate,
# 3 = inserted, 0 = new, -1 = the identity is not ours (other id = the identity found, or empty).
_CHECK_AND_INSERT = """
local identity = redis.call('GET', KEYS[6])
local count = tonumber(redis.call('GET', KEYS[5]) or '0')
if identity ~= ARGV[8] then
  return {-1, identity or '', '0', count}
end
local number = redis.call('HGET', KEYS[1], ARGV[2])
if number then
  return {1, redis.call('HGET', KEYS[4], number), '0', count}
end
local sig = ARGV[3]
local nperm = #sig / 4
local bands = ARGV[4]
local best, best_score = nil, -1
local seen = {}
for b = 0, #bands / 8 - 1 do
  local members = redis.call('HGET', KEYS[2], string.sub(bands, b * 8 + 1, b * 8 + 8))
  if members then
    for m = 0, #members / 4 - 1 do
      local other = struct.unpack('<I4', members, m * 4 + 1)
      if not seen[other] then
        seen[other] = true
        local other_sig = redis.call('HGET', KEYS[3], other)
        local equal = 0
        for k = 1, #sig, 4 do
          if string.sub(sig, k, k + 3) == string.sub(other_sig, k, k + 3) then equal = equal + 1 end
        end
        local score = equal / nperm
        if score > best_score then best, best_score = other, score end
      end
    end
  end
end
if best and (ARGV[6] == '0' or best_score >= tonumber(ARGV[5])) then
  return {2, redis.call('HGET', KEYS[4], best), tostring(best_score), count}
end
if ARGV[1] == '0' then
  return {0, '', '0', count}
end
local new = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], ARGV[2], new)
redis.call('HSET', KEYS[3], new, sig)
redis.call('HSET', KEYS[4], new, ARGV[7])
local packed = struct.pack('<I4', new)
for b = 0, #bands / 8 - 1 do
  local field = string.sub(bands, b * 8 + 1, b * 8 + 8)
  local members = redis.call('HGET', KEYS[2], field)
  redis.call('HSET', KEYS[2], field, (members or '') .. packed)
end
return {3, '', '0', new}
"""


class RedisStore(DedupStore):
    """The index in a Redis server shared by all replicas."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        prefix: str,
        settings: StoreSettings,
        policy: NearDuplicatePolicy,
        timeout_s: float = 10.0,
        *,
        password: str | None = None,
        accept_volatile: bool = False,
        new_index: bool = False,
        index_id: str = "",
    ):
        super().__init__(settings, policy)
        self.url = redact_url(url)  # the URL as errors and logs show it
        tag = "{" + prefix + "}"
        names = ("exact", "band", "sig", "id", "count", "identity")
        self._keys = [f"{tag}:{name}" for name in names]
        self._settings_key = f"{tag}:settings"
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, password=password
        )
        self.identity = ""
        #: The highest document count this process has seen: a lower one later means lost inserts.
        self.seen_count = 0
        try:
            self.persistence = self._check_persistence(accept_volatile)
            self._check_settings()
            self._open_identity(index_id, new_index)
        except redis.RedisError as exc:
            raise StoreError(f"cannot use Redis at {url}: {exc}") from None
        self._script = self.client.register_script(_CHECK_AND_INSERT)

    def _check_persistence(self, accept_volatile: bool) -> str:
        """Redis's persistence settings; StoreError when a restart would lose acknowledged inserts."""
        try:
            config: dict[str, str] = self.client.config_get("appendonly")  # type: ignore[assignment]
            config.update(self.client.config_get("appendfsync"))  # type: ignore[arg-type]
            config.update(self.client.config_get("save"))  # type: ignore[arg-type]
        except redis.ResponseError as exc:
            if accept_volatile:
                return "unknown"
            raise StoreError(
                f"cannot read the persistence settings of Redis at {self.url} (CONFIG GET: {exc}); "
                "allow CONFIG GET, or set redis_accept_volatile if you know it keeps its data"
            ) from None
        found = " ".join(f"{k}={v!r}" for k, v in sorted(config.items()))
        if config.get("appendonly") != "yes" and not accept_volatile:
            raise StoreError(
                f"Redis at {self.url} runs without append-only persistence ({found}): a restart loses "
                "the inserts since its last snapshot, which CheckAndInsert acknowledged as durable. Run "
                "it with appendonly yes and appendfsync always (the chart does), or set "
                "redis_accept_volatile for a throwaway index"
            )
        return found

    def _check_settings(self) -> None:
        wanted = {k: str(v) for k, v in vars(self.settings).items()}
        for key, value in wanted.items():
            self.client.hsetnx(self._settings_key, key, value)
        raw: dict[bytes, bytes] = self.client.hgetall(self._settings_key)  # type: ignore[assignment]
        stored = {k.decode(): v.decode() for k, v in raw.items()}
        if any(stored.get(k) != v for k, v in wanted.items()):
            found = " ".join(f"{k}={stored.get(k)}" for k in wanted)
            raise StoreError(
                f"the Redis index at {self.url} was built with {found}, but the service is "
                f"configured with {self.settings.describe()}; use another --redis-prefix"
            )

    def _open_identity(self, expected: str, new_index: bool) -> None:
        """Reads (or, for a new index, writes) the index identity and count."""
        identity_key, count_key = self._keys[5], self._keys[4]
        raw = self.client.get(identity_key)
        count = int(self.client.get(count_key) or 0)  # type: ignore[arg-type]
        found = raw.decode() if isinstance(raw, bytes) else ""
        if found and expected and found != expected:
            raise StoreError(
                f"Redis at {self.url} holds index {found}, not the expected {expected} "
                "(redis_index_id); point the service at the right Redis or --redis-prefix"
            )
        if not found:
            if expected and not new_index:
                raise IndexLostError(
                    f"Redis at {self.url} holds no dedup index, but index {expected} is expected "
                    "(redis_index_id): its data was lost or this is another server. Restore it, or "
                    "set redis_new_index to start a new, empty index"
                )
            made = expected or uuid.uuid4().hex
            self.client.set(identity_key, made, nx=True)
            found = (self.client.get(identity_key) or b"").decode()  # type: ignore[union-attr]
            log.warning(
                "dedup index %s %s in Redis at %s (%d documents)",
                found,
                "adopted" if count else "created",
                self.url,
                count,
            )
        self.identity = found
        self.seen_count = count

    def _lost(self, found: str, count: int) -> IndexLostError:
        if not found:
            what = "came back empty (no index identity)"
        elif found != self.identity:
            what = f"now holds another index ({found})"
        else:
            what = f"has {count} documents, fewer than the {self.seen_count} seen before"
        return IndexLostError(
            f"the dedup index {self.identity} in Redis at {self.url} is gone: Redis {what}, so "
            "acknowledged inserts were lost. Refusing to serve; restore Redis's data, or restart "
            "the service with redis_new_index to start a new, empty index"
        )

    def _observe(self, kind: int, other: object, count: int) -> None:
        if kind == -1:
            raise self._lost(other.decode() if isinstance(other, bytes) else str(other or ""), count)
        if count < self.seen_count:
            raise self._lost(self.identity, count)
        self.seen_count = count

    def _run(self, prints: Sequence[Fingerprint], insert: bool) -> list[StoreVerdict]:
        if not prints:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for fp in prints:
                args = [
                    "1" if insert else "0",
                    fp.exact_bytes,
                    fp.signature.astype("<u4").tobytes(),
                    fp.band_keys.astype("<u8").tobytes(),
                    repr(self.policy.threshold),
                    "1" if self.policy.verify else "0",
                    fp.id,
                    self.identity,
                ]
                self._script(keys=self._keys, args=args, client=pipe)
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self.url}: {exc}") from None
        verdicts = []
        for kind, other, score, count in replies:
            self._observe(kind, other, count)
            other_id = other.decode("utf-8") if isinstance(other, bytes) else str(other or "")
            if kind == 1:
                verdicts.append(StoreVerdict(exact_duplicate_of=other_id))
            elif kind == 2:
                verdicts.append(StoreVerdict(near_duplicate_of=other_id, jaccard=float(score)))
            else:
                verdicts.append(StoreVerdict(inserted=kind == 3))
        return verdicts

    def check(self, prints: Sequence[Fingerprint]) -> list[StoreVerdict]:
        return self._run(prints, insert=False)

    def check_and_insert(self, prints: Sequence[Fingerprint]) -> list[StoreVerdict]:
        return self._run(prints, insert=True)

    def count(self) -> int:
        try:
            raw, found = self.client.mget(self._keys[4], self._keys[5])  # type: ignore[misc]
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self.url}: {exc}") from None
        count = int(raw or 0)
        identity = found.decode() if isinstance(found, bytes) else ""
        self._observe(-1 if identity != self.identity else 0, identity, count)
        return count

    def stored_bytes(self) -> int:
        """Memory Redis reports for this index's keys (MEMORY USAGE, sampled for the big hashes)."""
        try:
            return sum(int(self.client.memory_usage(key, samples=0) or 0) for key in self._keys[:5])
        except redis.RedisError:
            return 0

    def close(self) -> None:
        self.client.close()
