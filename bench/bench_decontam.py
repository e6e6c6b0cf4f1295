"""Decontamination recall on planted benchmark passages and false positives on novel math prose.

    PYTHONPATH=services .venv/bin/python bench/bench_decontam.py --benchmark-dir ../shared/benchmarks

Real GSM8K and MATH test items are read at run time from --benchmark-dir (never stored in the
project). Passages of them (whole questions and solutions, and word windows of 12 to 40 words that
may start and end inside a formula) are planted in web-like documents generated here; negatives are
novel math prose written around common formulas (the Pythagorean theorem, the quadratic formula,
sum of the first n integers...) plus math pages of the miniature web generator. Every document is
checked against an index of all GSM8K and MATH items by three gram rules on the same documents:

- ours: formula grams (normalize.py: a formula cut at relation signs and math delimiters),
- glued: one gram per formula (the rule before formula grams),
- whitespace: whitespace-separated grams with punctuation split off.

Targets (ours): recall >= 0.96 and false-positive rate <= 0.02. The last line is the ratio of our
recall to the glued rule's.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from mathforge.classifier.web_text import MATH_WRITERS
from mathforge.dedup.benchmark_sources import load_sources
from mathforge.dedup.decontam import BenchmarkIndex
from mathforge.dedup.normalize import TextNormalizer
from mathforge.evaluator.benchmarks import load_benchmark

REPO = Path(__file__).resolve().parents[1]

# Web-page chrome and chatter around a planted passage.
CHATTER = (
    "posted by a member in the homework section",
    "can anyone help me with this one",
    "my teacher gave us this problem today and I am stuck",
    "thanks in advance for any hints",
    "I tried this for an hour and got a different answer",
    "here is what the answer key says",
    "reply quote report",
    "we use cookies to improve your experience accept all manage settings",
    "share this page on social media",
    "related questions you may like",
)
# Formulas every textbook and forum uses; a benchmark solution may hold the same ones.
COMMON_FORMULAS = (
    "$a^2 + b^2 = c^2$",
    "$x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}$",
    "$(a+b)^2 = a^2 + 2ab + b^2$",
    "$1 + 2 + \\cdots + n = \\frac{n(n+1)}{2}$",
    "$\\sin^2 x + \\cos^2 x = 1$",
    "$A = \\pi r^2$",
    "$e^{i\\pi} + 1 = 0$",
    "$\\frac{d}{dx} x^n = n x^{n-1}$",
    "$y = mx + b$",
    "$a^2 - b^2 = (a-b)(a+b)$",
    "\\[ \\binom{n}{k} = \\frac{n!}{k!(n-k)!} \\]",
    "$d = \\sqrt{(x_2 - x_1)^2 + (y_2 - y_1)^2}$",
    "$\\sum_{k=0}^{n} \\binom{n}{k} = 2^n$",
    "$A = P(1 + r)^t$",
    "$V = \\frac{4}{3}\\pi r^3$",
    "$\\log(ab) = \\log a + \\log b$",
    "\\[ x^2 - 5x + 6 = (x-2)(x-3) = 0 \\]",
    "$2x + 3 = 7$",
    "$x = 2$",
    "$\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}$",
    "$I = \\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}$",
    "\\[ \\begin{vmatrix} a & b \\\\ c & d \\end{vmatrix} = ad - bc \\]",
    "$\\mathbf{a} \\cdot \\mathbf{b} = \\|\\mathbf{a}\\| \\|\\mathbf{b}\\| \\cos \\theta$",
    "$\\mathbf{a} \\times \\mathbf{b}$",
)
PROSE = (
    "recall that",
    "by the well known identity",
    "we can check this quickly since",
    "in our last lecture we showed",
    "plugging in the numbers from the exercise sheet gives",
    "as every student learns in school",
    "a neat way to remember it is",
    "the same idea works for the harder version because",
    "so the next step in my notes is",
    "this is exactly why",
    # lead-ins that benchmark solutions use too
    "we have",
    "therefore",
    "note that",
    "by the quadratic formula",
    "it follows that",
    "so",
    "this gives",
    "hence",
)


def chatter(rng: random.Random, sentences: int) -> str:
    return ". ".join(rng.choice(CHATTER).capitalize() for _ in range(sentences)) + "."


def passage(rng: random.Random, text: str, kind: str) -> str:
    """The planted part of a benchmark text: whole, or a window of whitespace words."""
    if kind == "whole":
        return text
    words = text.split()
    size = 12 if kind == "window12" else rng.randint(13, 40)
    if len(words) <= size:
        return text
    start = rng.randrange(len(words) - size + 1)
    return " ".join(words[start : start + size])


def planted_documents(items: list, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(stratum, document) pairs: a benchmark passage between web chatter."""
    documents = []
    for item in rng.sample(items, count):
        field = rng.choice(["question", "solution"]) if item.solution else "question"
        kind = rng.choice(["whole", "window12", "window12", "window"])
        text = passage(rng, getattr(item, field), kind)
        document = f"{chatter(rng, rng.randint(1, 3))}\n{text}\n{chatter(rng, rng.randint(1, 3))}"
        documents.append((f"{item.benchmark}/{field}/{kind}", document))
    return documents


def novel_prose(rng: random.Random) -> str:
    """Math prose of our own that shares only common formulas with the benchmarks."""
    parts = []
    for _ in range(rng.randint(2, 5)):
        numbers = ", ".join(str(rng.randint(2, 99)) for _ in range(rng.randint(1, 3)))
        parts.append(
            f"{rng.choice(PROSE).capitalize()} {rng.choice(COMMON_FORMULAS)}, "
            f"and with {numbers} {rng.choice(PROSE)} {rng.choice(COMMON_FORMULAS)}."
        )
    return " ".join(parts)


def negative_documents(count: int, rng: random.Random) -> list[tuple[str, str]]:
    writers = sorted(MATH_WRITERS)
    documents = []
    for number in range(count):
        if number % 2:
            title, body = MATH_WRITERS[rng.choice(writers)](rng)
            documents.append(("web-math", f"{chatter(rng, 1)}\n{title}\n{body}"))
        else:
            documents.append(("common-formulas", f"{chatter(rng, 1)}\n{novel_prose(rng)}"))
    return documents


RULES = {
    "ours": lambda: BenchmarkIndex(),
    "glued": lambda: BenchmarkIndex(formula_grams=False),
    "whitespace": lambda: BenchmarkIndex(TextNormalizer(glue_operators=False), formula_grams=False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark-dir", type=Path, default=REPO.parent / "shared" / "benchmarks")
    parser.add_argument("--planted", type=int, default=2000, help="documents with a planted passage")
    parser.add_argument("--negatives", type=int, default=2000, help="novel math documents")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    files = [args.benchmark_dir / name for name in ("gsm8k_test.jsonl", "math_test.jsonl")]
    if not all(f.is_file() for f in files):
        print(f"skipped: GSM8K and MATH test files not found under {args.benchmark_dir} (--benchmark-dir)")
        return 0
    rng = random.Random(args.seed)
    items = [item for f in files for item in load_benchmark(f)]
    planted = planted_documents(items, args.planted, rng)
    negatives = negative_documents(args.negatives, rng)
    print(f"{len(planted)} planted documents, {len(negatives)} novel math documents, index: GSM8K + MATH")
    recalls = {}
    for rule, build in RULES.items():
        index = build()
        load_sources(index, ["gsm8k", "math"], benchmark_dir=str(args.benchmark_dir))
        started = time.process_time()
        found = [bool(m) for m in index.find_many([d for _, d in planted])]
        flagged = [bool(m) for m in index.find_many([d for _, d in negatives])]
        seconds = time.process_time() - started
        recalls[rule] = sum(found) / len(found)
        false_rate = sum(flagged) / len(flagged)
        print(
            f"{rule:>10}: recall {recalls[rule]:.4f}  false-positive rate {false_rate:.4f}  "
            f"({seconds:.1f} CPU s)"
        )
        twelve = [f for (s, _), f in zip(planted, found, strict=True) if s.endswith("window12")]
        share = sum(twelve) / len(twelve)
        print(f"{'':>12}{'12-word windows':<28} {sum(twelve):>5}/{len(twelve):<5} {share:.3f}")
        for stratum in sorted({s for s, _ in planted}):
            hits = [f for (s, _), f in zip(planted, found, strict=True) if s == stratum]
            print(f"{'':>12}{stratum:<28} {sum(hits):>5}/{len(hits):<5} {sum(hits) / len(hits):.3f}")
        for stratum in ("common-formulas", "web-math"):
            hits = [f for (s, _), f in zip(negatives, flagged, strict=True) if s == stratum]
            print(f"{'':>12}{stratum:<28} {sum(hits):>5}/{len(hits):<5} flagged")
    print(f"ratio ours/glued recall: {recalls['ours'] / recalls['glued']:.3f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "services"))
    sys.exit(main())
