"""Near-duplicate detection on planted pairs with known edit rates, against exact shingle Jaccard."""

from __future__ import annotations

import random

import numpy as np
import pytest
from mathforge.dedup.fingerprint import Fingerprinter, NearDuplicatePolicy
from mathforge.dedup.minhash import MinHasher, candidate_probability, estimated_jaccard, verified_probability
from mathforge.dedup.normalize import TextNormalizer
from mathforge.dedup.stores.embedded import EmbeddedStore

NORM = TextNormalizer()
EDIT_RATES = (0.0, 0.003, 0.006, 0.01, 0.015, 0.02, 0.05, 0.1, 0.2, 0.4)


def _shingles(text: str, k: int = 5) -> set[tuple[str, ...]]:
    words = NORM.token_values(text)
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


def _planted(seed: int = 7, bases: int = 150) -> tuple[list[str], list[tuple[int, str, float]]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20000)]
    documents = [" ".join(rng.choices(vocab, k=rng.randint(250, 400))) for _ in range(bases)]
    variants = []
    for base_number, base in enumerate(documents):
        words = base.split()
        for rate in EDIT_RATES:
            edited = list(words)
            for position in rng.sample(range(len(words)), round(rate * len(words))):
                edited[position] = rng.choice(vocab)
            variants.append((base_number, " ".join(edited), _jaccard(base, " ".join(edited))))
    return documents, variants


@pytest.fixture(scope="module")
def planted_results(tmp_path_factory):
    bases, variants = _planted()
    hasher = MinHasher()
    fingerprinter = Fingerprinter(NORM, hasher)
    store = EmbeddedStore(tmp_path_factory.mktemp("index"), hasher, NearDuplicatePolicy(), fsync=False)
    try:
        inserted = store.check_and_insert(
            fingerprinter.fingerprints([(f"base-{i}", t) for i, t in enumerate(bases)])
        )
        assert all(v.inserted for v in inserted)
        verdicts = store.check(
            fingerprinter.fingerprints([(f"v-{i}", t) for i, (_, t, _) in enumerate(variants)])
        )
    finally:
        store.close()
    return variants, verdicts


def test_near_duplicate_recall_is_at_least_95_percent_above_jaccard_085(planted_results):
    variants, verdicts = planted_results
    close = [(base, v) for (base, _, j), v in zip(variants, verdicts, strict=True) if j >= 0.85]
    assert len(close) >= 300
    found = sum(1 for base, v in close if f"base-{base}" in (v.near_duplicate_of, v.exact_duplicate_of))
    assert found / len(close) >= 0.95, f"recall {found / len(close):.3f} over {len(close)} pairs"


def test_false_positives_are_at_most_1_percent_below_jaccard_05(planted_results):
    variants, verdicts = planted_results
    far = [v for (_, _, j), v in zip(variants, verdicts, strict=True) if j < 0.5]
    assert len(far) >= 300
    reported = sum(1 for v in far if v.near_duplicate_of or v.exact_duplicate_of)
    assert reported / len(far) <= 0.01, f"false positives {reported}/{len(far)}"


def test_minhash_estimate_tracks_exact_jaccard():
    bases, variants = _planted(seed=3, bases=20)
    hasher = MinHasher()
    sigs_base = hasher.signatures([NORM.tokens(t) for t in bases])
    sigs = hasher.signatures([NORM.tokens(t) for _, t, _ in variants])
    diffs = np.array([estimated_jaccard(sigs_base[b], sigs[i]) - j for i, (b, _, j) in enumerate(variants)])
    assert abs(diffs.mean()) < 0.02
    assert np.abs(diffs).mean() < 0.05


@pytest.mark.parametrize("chunk", [256, 7])
def test_batched_signatures_equal_signatures_one_document_at_a_time(monkeypatch, chunk):
    monkeypatch.setattr("mathforge.dedup.minhash._CHUNK_DOCUMENTS", chunk)
    hasher = MinHasher()
    texts = ["", "one", "a b c", " ".join(f"w{i}" for i in range(40)), "x y z w v u", "小红有5个苹果"]
    long_texts = [" ".join(f"d{d}w{i}" for i in range(400)) for d in range(100)]  # > one numpy chunk
    token_lists = [NORM.tokens(t) for t in texts + long_texts + texts]
    batched = hasher.signatures(token_lists)
    single = np.vstack([hasher.signatures([tokens]) for tokens in token_lists])
    assert (batched == single).all()
    assert (batched[0] == 0xFFFFFFFF).all() and not (batched[1] == 0xFFFFFFFF).all()


def test_s_curve_of_the_defaults_favours_recall_and_verification_removes_far_pairs():
    assert candidate_probability(0.85, 16, 8) > 0.99
    assert candidate_probability(0.5, 16, 8) < 0.07
    assert verified_probability(0.5, 16, 8, 0.8) < 1e-6
    assert verified_probability(0.95, 16, 8, 0.8) > 0.999


def test_document_without_tokens_is_only_an_exact_duplicate(tmp_path):
    hasher = MinHasher()
    fingerprinter = Fingerprinter(NORM, hasher)
    store = EmbeddedStore(tmp_path, hasher, NearDuplicatePolicy(), fsync=False)
    first, second, third = store.check_and_insert(
        fingerprinter.fingerprints([("a", ""), ("b", "  \n"), ("c", "...")])
    )
    store.close()
    assert first.inserted and second.exact_duplicate_of == "a"
    assert third.inserted and not third.near_duplicate_of
