"""Benchmark decontamination by DeepSeekMath §2.1: 10-grams of every question and answer, whole-text
matches for benchmark texts of 3 to 9 grams, nothing for shorter ones; spans in the original text."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from mathforge.dedup.benchmark_sources import load_sources
from mathforge.dedup.decontam import BenchmarkIndex, cut_matches
from mathforge.evaluator.benchmarks import load_benchmark

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
WEB_BEFORE = "Posted by admin on a forum about homework help. Here is what my teacher gave us today:\n\n"
WEB_AFTER = "\n\nCan anyone help? Thanks in advance, and please like and subscribe for more."


def _index(texts: dict[str, str]) -> BenchmarkIndex:
    index = BenchmarkIndex()
    for item_id, text in texts.items():
        index.add_texts("synthetic", item_id, [text])
    return index


def _respace(text: str, rng: random.Random) -> str:
    spaced = re.sub(r"\s+", lambda _: rng.choice([" ", "  ", "\n", " \t "]), text)
    return re.sub(r"([+=])", lambda m: rng.choice(["", " "]) + m.group(1) + rng.choice(["", " "]), spaced)


# ---- the 3-to-9-gram rule -------------------------------------------------------------------
def test_text_holding_any_10_gram_of_a_benchmark_text_is_contaminated():
    words = [f"word{i}" for i in range(14)]
    index = _index({"long": " ".join(words)})
    assert index.find("intro " + " ".join(words[3:13]) + " outro")
    assert not index.find("intro " + " ".join(words[3:12]) + " outro")  # only 9 consecutive grams


def test_benchmark_text_of_3_to_9_grams_matches_only_whole_and_on_word_boundaries():
    index = _index({"five": "the positive root is three", "three": "alpha beta gamma"})
    (match,) = index.find("So we know the positive root is three here.")
    assert (match.item, match.span) == ("five", "the positive root is three")
    assert not index.find("so we know the positive root is")
    assert not index.find("we know the positive root is threefold")
    assert not index.find("alphabet beta gamma")
    assert [m.item for m in index.find("ALPHA  beta\ngamma")] == ["three"]


def test_benchmark_text_under_3_grams_is_ignored():
    index = _index({"two": "positive root", "one": "18"})
    assert index.ngrams == 0 and index.short_texts == 0
    assert not index.find("the positive root is 18")


def test_a_long_formula_of_under_3_grams_matches_whole_unless_turned_off():
    # With one gram per formula (formula_grams=False) this question is 2 grams: the extension's case.
    question = "Compute: $1-2+3-4+5- \\dots +99-100$."
    index = BenchmarkIndex(formula_grams=False)
    index.add_texts("synthetic", "formula", [question])
    (match,) = index.find("Homework: compute $1 - 2 + 3 - 4 + 5 - \\dots + 99 - 100$ please")
    assert match.item == "formula" and match.span.startswith("compute $1")
    plain = BenchmarkIndex(min_short_chars=0, formula_grams=False)
    plain.add_texts("synthetic", "formula", [question])
    assert plain.short_texts == 0 and not plain.find(question)


def test_cut_removes_exactly_the_matched_segments():
    words = " ".join(f"w{i}" for i in range(12))
    index = _index({"a": words, "b": "one two three four"})
    text = f"keep this. {words} and this; one two three four. end"
    matches = index.find(text)
    assert [m.item for m in matches] == ["a", "b"]
    assert cut_matches(text, matches) == "keep this.  and this; . end"
    assert cut_matches("clean", []) == "clean"


def test_spans_are_offsets_into_the_original_text_even_when_normalisation_changes_length():
    index = _index({"q": "find the value of x if x^2 + 1 = 10 and x is positive"})
    text = "ﬁrst ＡＢＣ Straße: FIND THE VALUE OF X IF X ^ 2+1=10 AND X IS POSITIVE."
    (match,) = index.find(text)
    assert (
        text[match.start : match.end] == match.span == "FIND THE VALUE OF X IF X ^ 2+1=10 AND X IS POSITIVE"
    )


def test_chinese_grams_are_characters(tmp_path):
    items = load_benchmark(FIXTURES / "cmath_test.jsonl")
    index = BenchmarkIndex()
    index.add_items(items)
    question = items[0].question
    assert index.find("今天老师布置的作业：" + question + "大家加油")[0].item == items[0].id
    assert not index.find("今天老师布置的作业：" + question[:9])


# ---- real benchmarks (../shared/benchmarks) -------------------------------------------------
@pytest.fixture(scope="module")
def real_index(shared_benchmarks):
    index = BenchmarkIndex()
    load_sources(index, ["gsm8k", "math", "cmath"], benchmark_dir=str(shared_benchmarks))
    return index


@pytest.mark.parametrize("benchmark", ["gsm8k", "math"])
def test_planted_questions_and_answers_are_caught_also_respaced_and_recased(
    shared_benchmarks, real_index, benchmark
):
    rng = random.Random(5)
    items = load_benchmark(shared_benchmarks / f"{benchmark}_test.jsonl")
    for item in rng.sample(items, 25):
        for field in ("question", "solution"):
            planted = getattr(item, field)
            if not real_index.indexable(real_index.normalizer.tokens(planted)):
                continue  # too short for the rule (none of GSM8K's or MATH's questions and solutions)
            for variant in (planted, _respace(planted, rng), planted.upper(), _respace(planted.lower(), rng)):
                text = WEB_BEFORE + variant + WEB_AFTER
                matches = real_index.find(text)
                assert any(m.item == item.id and m.benchmark == benchmark for m in matches), (item.id, field)
                assert all(
                    len(WEB_BEFORE) <= m.start < m.end <= len(WEB_BEFORE) + len(variant) for m in matches
                )


def test_math_text_sharing_only_common_formulas_is_clean(real_index):
    texts = [
        "By the Pythagorean theorem, $a^2 + b^2 = c^2$, so a right triangle with legs 3 and 4 has "
        "a hypotenuse of length 5.",
        "The quadratic formula says $x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}$ whenever $a \\neq 0$.",
        "Recall that $(a+b)^2 = a^2 + 2ab + b^2$ and $\\sin^2 x + \\cos^2 x = 1$ for every real $x$.",
        "The area of a circle is $\\pi r^2$, and $1 + 2 + \\cdots + n = \\frac{n(n+1)}{2}$.",
        "Two dice show a sum of 7 with probability 6/36 = 1/6, the most likely sum.",
        "设等差数列的首项为a，公差为d，则第n项为a+(n-1)d，前n项和为n(2a+(n-1)d)/2。",
    ]
    assert [real_index.find(t) for t in texts] == [[]] * len(texts)


@pytest.mark.parametrize("sorted_probe", [False, True])
def test_batched_matching_equals_one_text_at_a_time_and_never_spans_two_texts(monkeypatch, sorted_probe):
    if sorted_probe:  # the path large tables take
        monkeypatch.setattr("mathforge.dedup.decontam._SORT_QUERIES_ABOVE", 0)
    words = [f"word{i}" for i in range(12)]
    index = _index({"long": " ".join(words), "short": "alpha beta gamma"})
    texts = [
        "clean text " * 20,
        "x " + " ".join(words[:10]),
        " ".join(words[:5]),  # this text ends with the first half of a 10-gram ...
        " ".join(words[5:10]) + " and alpha",  # ... and this one starts with the second half
        "beta gamma alpha beta gamma",
        "",
    ]
    batched = index.find_many(texts)
    assert batched == [index.find(t) for t in texts]
    assert [bool(m) for m in batched] == [False, True, False, False, True, False]


# ---- formula-heavy text (our own MATH-style solution, not a benchmark item) -------------------
SOLUTION = (
    "Completing the square gives $x^2 + 6x + 5 = (x+3)^2 - 4$, so the equation becomes "
    "\\[ (x+3)^2 - 4 = y^2 - 2y + 1 = (y-1)^2, \\] and hence $(x+3)^2 - (y-1)^2 = 4$. Factoring the "
    "difference of squares, \\begin{align*} (x+3-y+1)(x+3+y-1) &= 4 \\\\ (x-y+4)(x+y+2) &= 4, "
    "\\end{align*} so by the Pythagorean theorem $a^2 + b^2 = c^2$ the answer is $\\boxed{13}$."
)


def test_latex_heavy_fragments_of_12_words_are_caught_where_one_gram_per_formula_misses():
    index = _index({"sq": SOLUTION})
    glued = BenchmarkIndex(formula_grams=False)
    glued.add_texts("synthetic", "sq", [SOLUTION])
    words = SOLUTION.split()
    caught = glued_caught = 0
    for start in range(len(words) - 12 + 1):
        fragment = " ".join(words[start : start + 12])
        document = WEB_BEFORE + fragment + WEB_AFTER
        caught += bool(index.find(document))
        glued_caught += bool(glued.find(document))
    windows = len(words) - 12 + 1
    # Misses: windows made mostly of an align block's layout (&=, \\, \begin{align*}), which is
    # dropped so that layouts alone never match; one gram per formula catches a sixth.
    assert caught >= 0.8 * windows, (caught, windows)
    assert glued_caught <= 0.25 * windows, (glued_caught, windows)
    (match,) = index.find(WEB_BEFORE + "so the equation becomes \\[ (x+3)^2 - 4 = y^2 - 2y + 1" + WEB_AFTER)
    assert match.span == "so the equation becomes \\[ (x+3)^2 - 4 = y^2 - 2y + 1"


def test_novel_math_prose_sharing_only_common_formulas_is_clean():
    index = _index({"sq": SOLUTION})
    prose = [
        "Recall that by the Pythagorean theorem $a^2 + b^2 = c^2$ for every right triangle we draw.",
        "Our notes: the equation becomes $(x+3)^2 = 0$ when we shift the parabola, so x is -3.",
        "Factoring the difference of squares is the trick: $a^2 - b^2 = (a-b)(a+b)$ always.",
        "Completing the square gives $x^2 + 2x + 1 = (x+1)^2$, the simplest case of all.",
    ]
    assert [index.find(text) for text in prose] == [[]] * len(prose)
