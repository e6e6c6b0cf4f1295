"""Stable 64-bit hashes of tokens and of token windows (n-grams, shingles), computed with numpy.

Hashes are the same in every process and on every machine (no Python `hash()`, which is salted per
process), so replicas sharing a Redis index agree. A token's hash is a polynomial over its UTF-8
bytes; a window's hash is a polynomial over its tokens' hashes; both are computed for all tokens or
windows of a text at once from one prefix sum:

    S[k] = sum_{j<k} v_j * P^j (mod 2^64),  window [i, i+n) = (S[i+n] - S[i]) * P^-i

which equals sum_k v_{i+k} * P^k wherever the window sits (P is odd, so P^-1 exists mod 2^64).
The splitmix64 finaliser then spreads the bits.
"""

from __future__ import annotations

import threading

import numpy as np

# Odd 64-bit multipliers (fixed: changing them changes every stored hash).
BYTE_BASE = 0x9E3779B97F4A7C15
TOKEN_BASE = 0xC2B2AE3D27D4EB4F
U64 = np.uint64


class _Powers:
    """P^j and P^-j mod 2^64 for j < size, grown on demand and shared by all callers."""

    def __init__(self, base: int):
        self.base = base
        self.inverse = pow(base, -1, 1 << 64)
        self.forward = np.ones(1, dtype=U64)
        self.backward = np.ones(1, dtype=U64)
        self._lock = threading.Lock()

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        forward, backward = self.forward, self.backward
        if len(forward) >= size:
            return forward, backward
        with self._lock:
            if len(self.forward) < size:
                grown = max(size, 2 * len(self.forward), 4096)
                f = np.full(grown, self.base, dtype=U64)
                f[0] = 1
                b = np.full(grown, self.inverse, dtype=U64)
                b[0] = 1
                self.forward, self.backward = np.cumprod(f, dtype=U64), np.cumprod(b, dtype=U64)
            return self.forward, self.backward


_BYTE_POWERS = _Powers(BYTE_BASE)
_TOKEN_POWERS = _Powers(TOKEN_BASE)


def mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser applied element-wise (returns a new uint64 array)."""
    x = values.astype(U64, copy=True)
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


def _prefix(values: np.ndarray, powers: _Powers) -> tuple[np.ndarray, np.ndarray]:
    forward, backward = powers.get(len(values) + 1)
    prefix = np.zeros(len(values) + 1, dtype=U64)
    np.cumsum(values * forward[: len(values)], out=prefix[1:])
    return prefix, backward


def token_hashes(tokens: list[str]) -> np.ndarray:
    """One stable, well-mixed uint64 hash per token, of its text without whitespace (a gram's value);
    tokens must not contain NUL."""
    if not tokens:
        return np.empty(0, dtype=U64)
    # str.split() splits on the same whitespace as the regexes' \s, and is much faster than re.sub.
    joined = "".join(("\x00".join(tokens) + "\x00").split())
    data = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    ends = np.flatnonzero(data == 0)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    prefix, backward = _prefix(data.astype(U64), _BYTE_POWERS)
    raw = (prefix[ends] - prefix[starts]) * backward[starts]
    return mix64(raw ^ (ends - starts).astype(U64) << U64(56))


class WindowHasher:
    """Hashes windows of several lengths over one token sequence from a single prefix sum."""

    def __init__(self, values: np.ndarray):
        self.length = len(values)
        self._prefix, self._backward = _prefix(values, _TOKEN_POWERS)

    def windows(self, n: int) -> np.ndarray:
        """Unmixed hashes of every window of `n` tokens (len - n + 1 of them; none if shorter)."""
        count = self.length - n + 1
        if n < 1 or count < 1:
            return np.empty(0, dtype=U64)
        return (self._prefix[n:] - self._prefix[:count]) * self._backward[:count]

    def windows_at(self, starts: np.ndarray, n: int) -> np.ndarray:
        """Unmixed hashes of the windows of `n` tokens beginning at `starts` (each + n <= length)."""
        return (self._prefix[starts + n] - self._prefix[starts]) * self._backward[starts]
