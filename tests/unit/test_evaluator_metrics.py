"""pass@k against exact enumeration, maj@k voting and tie-break, and the metrics table."""

from __future__ import annotations

import itertools
import math

import pytest
from mathforge.evaluator.metrics import (
    MAJ_CYCLIC,
    MAJ_DEFINITIONS,
    MAJ_FIRST_K,
    ItemSamples,
    accuracy,
    compute_metrics,
    k_values,
    maj_at_k,
    maj_at_k_item,
    maj_vote,
    pass_at_k,
)


def enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (c correct) holding at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(enumerated_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_exact_for_thousands_of_samples() -> None:
    n, c, k = 4096, 3, 1024
    expected = 1 - math.prod((n - c - i) / (n - i) for i in range(k))
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)
    assert pass_at_k(5000, 1, 1) == pytest.approx(1 / 5000, rel=1e-12)
    assert pass_at_k(5000, 0, 2500) == 0.0
    assert pass_at_k(5000, 2501, 2500) == 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def test_maj_vote_picks_the_most_common_answer() -> None:
    assert maj_vote(["3", "2", "2"], [False, True, True], 3)
    assert not maj_vote(["3", "3", "2"], [False, False, True], 3)


def test_maj_vote_tie_goes_to_the_earliest_answer() -> None:
    assert maj_vote(["2", "3", "3", "2"], [True, False, False, True], 4)
    assert not maj_vote(["3", "2", "2", "3"], [False, True, True, False], 4)


def test_maj_vote_groups_equivalent_answers() -> None:
    answers, correct = ["\\frac12", "3", "0.5", "3"], [True, False, True, False]
    assert not maj_vote(answers, correct, 4)  # ungrouped, "3" has two votes and the halves one each
    same = {("\\frac12", "0.5")}
    # grouped, the halves tie "3" at two votes and came first
    assert maj_vote(answers, correct, 4, same=lambda a, b: (a, b) in same or a == b) is True


def test_maj_at_k_averages_cyclic_windows_and_empty_answers_do_not_vote() -> None:
    items = [(["1", "2"], [True, False]), (["", "4", "4"], [False, True, True])]
    # k = 1: every sample alone, so maj@1 is pass@1: (1/2 + 2/3) / 2
    assert maj_at_k(items, 1, definition=MAJ_CYCLIC) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # k = 2: item 1 windows (1,2) (2,1) split on the tie; item 2 windows ("",4) (4,4) (4,"") all vote 4
    assert maj_at_k(items, 2, definition=MAJ_CYCLIC) == pytest.approx((1 / 2 + 1) / 2)
    assert maj_at_k([(["", "4", "4"], [False, True, True])], 3, definition=MAJ_CYCLIC) == 1.0
    with pytest.raises(ValueError, match="k=3, n=2"):
        maj_at_k(items, 3, definition=MAJ_CYCLIC)


def test_maj_at_k_default_is_the_vote_over_the_first_k_samples() -> None:
    # lm-eval (take_first_k, then majority) and Qwen2.5-Math (pred[:k]) vote over samples 0..k-1
    items = [(["1", "2", "2"], [True, False, False]), (["", "4", "5"], [False, True, False])]
    assert maj_at_k(items, 1) == 0.5  # item 1 sample 0 right; item 2 sample 0 empty: no vote, wrong
    assert maj_at_k(items, 2) == 1.0  # item 1 tie (1, 2) goes to "1", first; item 2 only "4" votes
    assert maj_at_k(items, 3) == 0.5  # "2" outvotes "1": wrong; "4" and "5" tie, "4" came first: right
    assert maj_at_k([items[1]], 3) == 1.0 and maj_at_k([items[0]], 3) == 0.0
    assert maj_at_k([(["", ""], [False, False])], 2) == 0.0  # nobody votes: wrong


def test_tie_rules_of_both_definitions_on_an_even_tie() -> None:
    # [A, A, B, B, C] with A right: the first-k vote sees A first and says right; the cyclic mean is
    # not an even split either: A comes before B in the windows starting at samples 0, 1 and 4
    answers, correct = ["A", "A", "B", "B", "C"], [True, True, False, False, False]
    assert maj_at_k_item(answers, correct, [5], definition=MAJ_FIRST_K)[5] == 1
    assert maj_at_k_item(answers, correct, [5], definition=MAJ_CYCLIC)[5] == pytest.approx(0.6)
    assert maj_at_k_item(["B", "B", "A", "A", "C"], [False, False, True, True, False], [5])[5] == 0
    assert maj_at_k_item(answers, correct, [4], definition=MAJ_FIRST_K)[4] == 1  # A, A, B, B
    assert maj_at_k_item(answers, correct, [3], definition=MAJ_FIRST_K)[3] == 1  # A, A, B


def test_maj_definitions_are_named_and_an_unknown_one_is_refused() -> None:
    assert set(MAJ_DEFINITIONS) == {MAJ_FIRST_K, MAJ_CYCLIC}
    assert "first k" in MAJ_DEFINITIONS[MAJ_FIRST_K] and "cyclic" in MAJ_DEFINITIONS[MAJ_CYCLIC]
    with pytest.raises(ValueError, match="'median' is not one of first_k, cyclic"):
        maj_at_k([(["1"], [True])], 1, definition="median")
    with pytest.raises(ValueError, match="'median'"):
        compute_metrics([ItemSamples([True], ["1"])], maj_definition="median")
    with pytest.raises(ValueError, match="2 answers and 1 verdicts"):
        maj_at_k_item(["1", "2"], [True], [1])


def test_maj_at_k_item_matches_brute_force_over_windows() -> None:
    answers = ["3", "\\frac12", "3", "0.5", "", "7", "0.5"]
    correct = [False, True, False, True, False, False, True]
    same = lambda a, b: {a, b} == {"\\frac12", "0.5"}  # noqa: E731
    n = len(answers)
    got = maj_at_k_item(answers, correct, [1, 2, 4, 7], same, definition=MAJ_CYCLIC)
    for k, value in got.items():
        windows = [[answers[(s + j) % n] for j in range(k)] for s in range(n)]
        rights = [[correct[(s + j) % n] for j in range(k)] for s in range(n)]
        votes = [maj_vote(a, c, k, same) for a, c in zip(windows, rights, strict=True)]
        assert value == pytest.approx(sum(votes) / n)
    assert got[1] == pytest.approx(3 / 7)
    assert got[7] == 1.0  # the halves: three votes against two for "3"


def test_k_values_are_powers_of_two_up_to_n() -> None:
    assert k_values(1) == [1]
    assert k_values(8) == [1, 2, 4, 8]
    assert k_values(6) == [1, 2, 4, 6]


def test_compute_metrics_reports_acc_pass_maj_and_breakdowns() -> None:
    items = [
        ItemSamples([True, False, False, False], ["1", "2", "2", "2"], {"subject": "Algebra", "level": "1"}),
        ItemSamples([False, True, True, False], ["5", "6", "6", "7"], {"subject": "Geometry", "level": "1"}),
    ]
    metrics = compute_metrics(items)
    assert metrics["acc"] == 0.5
    assert metrics["pass@1"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert metrics["pass@4"] == 1.0
    assert metrics["maj@4"] == 0.5
    assert metrics["acc/subject=Algebra"] == 1.0 and metrics["acc/subject=Geometry"] == 0.0
    assert metrics["acc/level=1"] == 0.5
    assert metrics["count"] == 2 and isinstance(metrics["count"], int)
    assert accuracy([]) == 0.0


def test_means_are_exact_not_float_sums() -> None:
    # 1/3 + 1/6 summed as floats is 0.49999999999999994; the metrics sum Fractions and round once
    items = [
        ItemSamples([True, False, False], ["1", "2", "3"]),
        ItemSamples([False, False, False, False, False, True], ["4", "5", "6", "7", "8", "9"]),
    ]
    metrics = compute_metrics(items, maj_definition=MAJ_CYCLIC)
    assert metrics["maj@1"] == 0.25 and metrics["pass@1"] == 0.25
    thirds = [ItemSamples([True, False, False], ["1", "2", "3"])] * 3
    thirds.append(ItemSamples([True, True, True], ["1"] * 3))
    assert compute_metrics(thirds, maj_definition=MAJ_CYCLIC)["pass@1"] == 0.5


def test_greedy_first_keeps_greedy_for_acc_and_votes_over_the_samples_only() -> None:
    # Greedy right; samples: wrong, right, right. Without greedy_first the greedy answer counts as
    # sample 1; with it, maj@k and pass@k are over the sampled answers only.
    items = [ItemSamples(correct=[True, False, True, True], answers=["5", "4", "5", "5"])]
    mixed = compute_metrics(items, maj_definition=MAJ_CYCLIC)
    sampled = compute_metrics(items, greedy_first=True, maj_definition=MAJ_CYCLIC)
    assert mixed["acc"] == sampled["acc"] == 1.0
    assert mixed["maj@1"] == pytest.approx(3 / 4) and sampled["maj@1"] == pytest.approx(2 / 3)
    # sampled windows of two: (4, 5) votes 4 (tie, first), (5, 5) and (5, 4) vote 5
    assert sampled["maj@2"] == pytest.approx(2 / 3) and "maj@3" in sampled and sampled["maj@3"] == 1.0
    # over the first k: the greedy answer alone when it is a sample; the first sampled answer, "4", else
    assert compute_metrics(items)["maj@1"] == 1.0
    first = compute_metrics(items, greedy_first=True)
    assert first["maj@1"] == 0.0 and first["maj@2"] == 0.0 and first["maj@3"] == 1.0
    assert sampled["pass@1"] == pytest.approx(2 / 3) and mixed["pass@1"] == pytest.approx(3 / 4)
    assert "pass@4" in mixed and "pass@4" not in sampled
