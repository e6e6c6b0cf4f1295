"""The Redis index store: shared by every replica; check-and-insert is one atomic Lua script.

Keys (all under one hash tag, so a Redis Cluster keeps them in one slot):

    {prefix}:settings   hash   MinHash settings the index was built with (checked on connect)
    {prefix}:count      string documents inserted (also the last document number)
    {prefix}:exact      hash   exact key (8 bytes) -> document number
    {prefix}:band       hash   band key (8 bytes) -> document numbers (packed uint32)
    {prefix}:sig        hash   document number -> signature (num_perm x uint32)
    {prefix}:id         hash   document number -> document id

The script looks the document up (exact key, then band candidates ranked by estimated Jaccard) and,
when asked to insert and nothing matched, inserts it, all in one step on the server: of two replicas
racing with near-duplicate documents, the second to run sees the first's insert, so exactly one is
kept. Durability is Redis's own: run it with appendonly yes (the chart does) and appendfsync always
for "acknowledged means on disk", or everysec to trade up to a second of inserts for speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from mathforge.dedup.fingerprint import Fingerprint, NearDuplicatePolicy
from mathforge.dedup.stores.base import DedupStore, StoreError, StoreSettings, StoreVerdict

# KEYS: exact, band, sig, id, count.  ARGV: insert (0/1), exact key, signature, band keys
# (8 bytes each, concatenated), threshold, verify (0/1), document id.
# Returns {kind, other id, jaccard}: kind 1 = exact duplicate, 2 = near duplicate, 3 = inserted, 0 = new.
_CHECK_AND_INSERT = """
local number = redis.call('HGET', KEYS[1], ARGV[2])
if number then
  return {1, redis.call('HGET', KEYS[4], number), '0'}
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
  return {2, redis.call('HGET', KEYS[4], best), tostring(best_score)}
end
if ARGV[1] == '0' then
  return {0, '', '0'}
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
return {3, '', '0'}
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
    ):
        super().__init__(settings, policy)
        self.url = url
        tag = "{" + prefix + "}"
        self._keys = [f"{tag}:exact", f"{tag}:band", f"{tag}:sig", f"{tag}:id", f"{tag}:count"]
        self._settings_key = f"{tag}:settings"
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            self._check_settings()
        except redis.RedisError as exc:
            raise StoreError(f"cannot use Redis at {url}: {exc}") from None
        self._script = self.client.register_script(_CHECK_AND_INSERT)

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
                ]
                self._script(keys=self._keys, args=args, client=pipe)
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self.url}: {exc}") from None
        verdicts = []
        for kind, other, score in replies:
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
            return int(self.client.get(self._keys[4]) or 0)
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self.url}: {exc}") from None

    def stored_bytes(self) -> int:
        """Memory Redis reports for this index's keys (MEMORY USAGE, sampled for the big hashes)."""
        try:
            return sum(int(self.client.memory_usage(key, samples=0) or 0) for key in self._keys)
        except redis.RedisError:
            return 0

    def close(self) -> None:
        self.client.close()
