"""The dedup configuration: one dataclass for the service, the CLI jobs and the YAML recipes, with
`build` methods for the pieces it configures (normaliser, MinHasher, benchmark index, store).

Paper numbers (DeepSeekMath §2.1): ngram_size 10 and min_short_ngrams 3 are the decontamination rule.
The MinHash settings are our choice (the paper gives none); docs/dedup.md has the S-curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mathforge.dedup.decontam import BenchmarkIndex
from mathforge.dedup.fingerprint import NearDuplicatePolicy
from mathforge.dedup.minhash import MinHasher
from mathforge.dedup.normalize import DEFAULT_DROP_CHARS, UNICODE_FORMS, TextNormalizer
from mathforge.dedup.stores.base import DedupStore, StoreError, StoreSettings
from mathforge.runtime.config import ConfigError, ServiceConfig, option
from mathforge.runtime.registry import SERVICES

STORES = ("embedded", "redis")


@dataclass
class Config(ServiceConfig):
    """Dedup service: exact and MinHash-LSH near-duplicate detection, benchmark decontamination."""

    port: int = option(SERVICES["dedup"].port, "gRPC port (0 = any free port, printed at start)")
    metrics_port: int = option(SERVICES["dedup"].metrics_port, "Prometheus /metrics port (0 = any, -1 = off)")
    # ---- index store
    store: str = option(
        "embedded", "index store: embedded (durable local files) or redis (shared by replicas)"
    )
    store_path: str = option(".cache/dedup", "embedded store directory (one process at a time)")
    fsync: bool = option(
        True, "embedded store: fsync every acknowledged batch (off only for throwaway indexes)"
    )
    redis_url: str = option("redis://127.0.0.1:6379/0", "redis store: server URL")
    redis_prefix: str = option("mathforge:dedup", "redis store: key prefix (one index per prefix)")
    redis_password_file: str = option("", "redis store: file holding the Redis password (a mounted Secret)")
    redis_accept_volatile: bool = option(
        False, "redis store: serve even when Redis runs without append-only persistence (throwaway index)"
    )
    redis_new_index: bool = option(
        False,
        "redis store: start a new, empty index when Redis holds none, even though redis_index_id "
        "expects one (after a deliberate wipe)",
    )
    redis_index_id: str = option(
        "", "redis store: the identity the index must have (Info and the start log show it); empty = any"
    )
    # ---- near duplicates (our choice; see docs/dedup.md for the S-curve)
    num_perm: int = option(128, "MinHash permutations (= bands x rows)")
    bands: int = option(16, "LSH bands")
    rows: int = option(8, "LSH rows per band")
    threshold: float = option(0.8, "Jaccard similarity at which documents are near duplicates")
    verify: bool = option(True, "keep an LSH candidate only if its estimated Jaccard >= threshold")
    shingle_size: int = option(5, "word shingle size for MinHash")
    seed: int = option(1, "MinHash permutation seed (an index is tied to its settings)")
    # ---- decontamination (DeepSeekMath §2.1)
    ngram_size: int = option(10, "n of the benchmark n-grams (DeepSeekMath §2.1: 10)")
    min_short_ngrams: int = option(
        3, "benchmark texts of this many to ngram_size-1 grams match whole (DeepSeekMath §2.1: 3)"
    )
    min_short_chars: int = option(
        20,
        "benchmark texts under min_short_ngrams grams still match whole if they hold this many characters "
        "(0 = ignore them all, the plain rule)",
    )
    index_final_answers: bool = option(
        False, "also index extracted final answers of sets with full solutions"
    )
    benchmarks: list[str] = option(
        [], "benchmark files, directories or names (with benchmark_dir) to load at start"
    )
    benchmark_dir: str = option(
        "", "directory that benchmark names (gsm8k, math, cmath, ...) resolve against"
    )
    # ---- normalisation
    unicode_form: str = option("NFKC", "Unicode normal form: NFKC, NFC, NFKD, NFD or none")
    lowercase: bool = option(True, "case-fold text before comparing")
    drop_chars: str = option(DEFAULT_DROP_CHARS, "punctuation that separates grams like whitespace")
    glue_operators: bool = option(True, "whitespace around math operators does not separate grams")
    # ---- limits
    max_items: int = option(1024, "documents per request")
    max_doc_bytes: int = option(1024 * 1024, "bytes per document")
    max_request_bytes: int = option(
        16 * 1024 * 1024,
        "bytes of a whole request, checked before any text is read (fingerprinting takes about "
        "20x this in memory while the request runs)",
    )
    max_message_bytes: int = option(32 * 1024 * 1024, "largest gRPC message accepted or sent, bytes")

    def validate(self) -> None:
        super().validate()
        if self.store not in STORES:
            raise ConfigError(f"store {self.store!r} is not one of {', '.join(STORES)}")
        if self.bands < 1 or self.rows < 1 or self.bands * self.rows != self.num_perm:
            raise ConfigError(
                f"bands x rows = {self.bands} x {self.rows} must equal num_perm {self.num_perm}"
            )
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold {self.threshold} must be in (0, 1]")
        if self.shingle_size < 1:
            raise ConfigError(f"shingle_size {self.shingle_size} must be at least 1")
        if self.ngram_size < 2:
            raise ConfigError(f"ngram_size {self.ngram_size} must be at least 2")
        if not 1 <= self.min_short_ngrams <= self.ngram_size:
            raise ConfigError(
                f"min_short_ngrams {self.min_short_ngrams} must be in 1..ngram_size ({self.ngram_size})"
            )
        if self.min_short_chars < 0:
            raise ConfigError(f"min_short_chars {self.min_short_chars} must be >= 0")
        if self.unicode_form not in UNICODE_FORMS:
            raise ConfigError(f"unicode_form {self.unicode_form!r} is not one of {', '.join(UNICODE_FORMS)}")
        if self.max_items < 1 or self.max_doc_bytes < 1 or self.max_request_bytes < 1:
            raise ConfigError("max_items, max_doc_bytes and max_request_bytes must be at least 1")
        if self.store == "embedded" and not self.store_path:
            raise ConfigError("store_path is empty (the embedded store needs a directory)")

    # ---- builders ---------------------------------------------------------------------------
    def normalizer(self) -> TextNormalizer:
        return TextNormalizer(self.unicode_form, self.lowercase, self.drop_chars, self.glue_operators)

    def normalizer_description(self) -> str:
        parts = [
            self.unicode_form,
            "casefold" if self.lowercase else "case kept",
            "whitespace collapsed",
            "math operators glued" if self.glue_operators else "operators split by whitespace",
        ]
        return ", ".join(parts)

    def minhasher(self) -> MinHasher:
        return MinHasher(self.num_perm, self.shingle_size, self.bands, self.rows, self.seed)

    def policy(self) -> NearDuplicatePolicy:
        return NearDuplicatePolicy(self.threshold, self.verify)

    def benchmark_index(self) -> BenchmarkIndex:
        return BenchmarkIndex(
            self.normalizer(),
            ngram_size=self.ngram_size,
            min_short_ngrams=self.min_short_ngrams,
            min_short_chars=self.min_short_chars,
            index_final_answers=self.index_final_answers,
        )

    def open_store(self) -> DedupStore:
        """Opens the configured store (StoreError when it cannot be used)."""
        if self.store == "redis":
            from mathforge.dedup.stores.redis_store import RedisStore

            settings = StoreSettings(self.num_perm, self.bands, self.rows, self.shingle_size, self.seed)
            password = None
            if self.redis_password_file:
                try:
                    password = Path(self.redis_password_file).read_text().strip()
                except OSError as exc:
                    raise StoreError(f"cannot read redis_password_file: {exc.strerror}") from None
            return RedisStore(
                self.redis_url,
                self.redis_prefix,
                settings,
                self.policy(),
                password=password,
                accept_volatile=self.redis_accept_volatile,
                new_index=self.redis_new_index,
                index_id=self.redis_index_id,
            )
        from mathforge.dedup.stores.embedded import EmbeddedStore

        return EmbeddedStore(self.store_path, self.minhasher(), self.policy(), fsync=self.fsync)
