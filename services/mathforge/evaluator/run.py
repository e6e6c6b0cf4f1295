"""Runs a benchmark against a sampler: the greedy answer plus k samples at temperature per item (k = 1:
the greedy answer alone), each graded, then acc (greedy) / maj@k / pass@k (over the k samples)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mathforge.evaluator.benchmarks import BenchmarkItem
from mathforge.evaluator.equivalence import canonical_key
from mathforge.evaluator.grading import grade
from mathforge.evaluator.metrics import ItemSamples, compute_metrics
from mathforge.evaluator.policy import DEFAULT_POLICY, GradingPolicy
from mathforge.evaluator.prompts import build_prompt

# generate(prompts, n, temperature, max_tokens, seed) -> n completion texts per prompt
Generate = Callable[[list[str], int, float, int, int], list[list[str]]]


def sampler_generate(client: Any, versions: set[int] | None = None) -> Generate:
    """A Generate function over a SamplerClient (runtime/clients/sampler.py). When `versions` is given,
    it collects the weights version of every completion (which weights produced the answers)."""

    def generate(
        prompts: list[str], n: int, temperature: float, max_tokens: int, seed: int
    ) -> list[list[str]]:
        samples = client.generate_samples(
            prompts, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
        )
        if versions is not None:
            versions.update(s.weights_version for per_prompt in samples for s in per_prompt)
        return [[s.text for s in per_prompt] for per_prompt in samples]

    return generate


@dataclass
class RunSettings:
    k: int = 1
    temperature: float = 0.7
    max_tokens: int = 1024
    prompt_style: str = "zero_shot"
    seed: int = 0
    batch_size: int = 16
    policy: GradingPolicy = DEFAULT_POLICY


@dataclass
class ItemRecord:
    id: str
    gold: str
    samples: list[str]
    correct: list[bool]
    answers: list[str]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    metrics: dict[str, float]
    items: list[ItemRecord]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "seconds": self.seconds, "items": [vars(it) for it in self.items]}


def item_policy(item: BenchmarkItem, policy: GradingPolicy) -> GradingPolicy:
    """Multiple-choice items are graded by their letters."""
    return replace(policy, format="choice") if item.choices and policy.format == "auto" else policy


def grade_item(item: BenchmarkItem, samples: Sequence[str], policy: GradingPolicy) -> ItemRecord:
    """Grades every sample of one item against its gold answer."""
    policy = item_policy(item, policy)
    verdicts = [grade(s, item.answer, policy) for s in samples]
    tags = dict(item.tags)
    return ItemRecord(
        item.id,
        item.answer,
        list(samples),
        [v.equivalent for v in verdicts],
        [v.pred_answer for v in verdicts],
        tags,
    )


def run_benchmark(
    items: Sequence[BenchmarkItem],
    generate: Generate,
    settings: RunSettings,
    progress: Callable[[int, int, float], None] | None = None,
) -> RunResult:
    """Samples, grades and scores `items`; `progress(done, total, greedy_accuracy)` after each batch."""
    started = time.monotonic()
    records: list[ItemRecord] = []
    correct_greedy = 0
    for start in range(0, len(items), settings.batch_size):
        batch = items[start : start + settings.batch_size]
        prompts = [build_prompt(item, settings.prompt_style) for item in batch]
        greedy = generate(prompts, 1, 0.0, settings.max_tokens, settings.seed)
        sampled: list[list[str]] = [[] for _ in batch]
        if settings.k > 1:
            sampled = generate(prompts, settings.k, settings.temperature, settings.max_tokens, settings.seed)
        for item, first, rest in zip(batch, greedy, sampled, strict=True):
            record = grade_item(item, [first[0] if first else "", *rest], settings.policy)
            correct_greedy += record.correct[0]
            records.append(record)
        if progress is not None:
            progress(len(records), len(items), correct_greedy / len(records))
    policy = settings.policy

    def same(a: str, b: str) -> bool:
        return canonical_key(a, policy) == canonical_key(b, policy)

    # k > 1: maj@k and pass@k over the k samples at temperature; the greedy answer gives acc.
    metrics = compute_metrics(
        [ItemSamples(r.correct, r.answers, r.tags) for r in records], same=same, greedy_first=settings.k > 1
    )
    return RunResult(metrics, records, time.monotonic() - started)
