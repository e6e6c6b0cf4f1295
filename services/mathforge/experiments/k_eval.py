"""maj@k and pass@k of one policy on held-out synthetic problems (DeepSeekMath §5.2.2, its Figure 7):
k_max samples per problem from the sampler, each graded by the rule verifier.

    metrics = sample_and_grade("127.0.0.1:50054", Path("runs/sft/final"), problems=50, k_max=64)
    metrics["maj@16"], metrics["pass@16"]
    metrics = sample_and_grade(target, Path("runs/rl/final"), 50, 64, line="k-rl")  # loaded on a line

pass@k is the unbiased estimator over all k_max samples; maj@k votes over k samples in windows that
cycle through all k_max of them (evaluator/metrics.py "cyclic"), so maj@k for k < k_max is not
the luck of the first k.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from mathforge.evaluator.metrics import ItemSamples, compute_metrics
from mathforge.reward.rule import rule_reward
from mathforge.runtime.clients.sampler import SamplerClient
from mathforge.training.grpo.config import TaskConfig
from mathforge.training.grpo.questions import prompt_text
from mathforge.training.synthetic_math import generate_problems

PROMPTS_PER_CALL = 8


def sample_and_grade(
    sampler: str,
    model: Path,
    problems: int,
    k_max: int,
    temperature: float = 0.7,
    max_tokens: int = 64,
    difficulty: int = 1,
    seed: int = 0,
    line: str = "",
) -> dict[str, float]:
    """`line` empty: the sampler serves `model` already (its default line); named: `model` is
    loaded onto that policy line first, unless the line serves it already."""
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    instruction = TaskConfig().instruction
    held_out = generate_problems(problems, seed=seed, difficulty=difficulty, split="test")
    client = SamplerClient(sampler, line=line)
    try:
        client.wait_ready(600.0)
        served = client.policy()
        if line and served.path != str(model):
            client.load_weights(served.version + 1, str(model))
        items = []
        for first in range(0, len(held_out), PROMPTS_PER_CALL):
            part = held_out[first : first + PROMPTS_PER_CALL]
            prompts = [prompt_text(tokenizer, p.question, instruction) for p in part]
            texts = client.generate_texts(
                prompts, k_max, temperature=temperature, max_tokens=max_tokens, seed=seed + first
            )
            for problem, samples in zip(part, texts, strict=True):
                scores = [rule_reward(text, problem.answer) for text in samples]
                items.append(ItemSamples([s.correct for s in scores], [s.extracted_answer for s in scores]))
    finally:
        client.close()
    return compute_metrics(items, maj_definition="cyclic")
