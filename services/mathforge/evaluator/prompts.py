"""Benchmark prompts (DeepSeekMath §3.2): the zero-shot chain-of-thought instruction for instruct and RL
models, and few-shot chain-of-thought prompts (worked examples written for this project) for base
models, in English and Chinese. The `chat` style renders the zero-shot prompt in mathforge's own
chat format (models/tokenizer.py), the layout models fine-tuned and RL-trained here learned."""

from __future__ import annotations

from mathforge.evaluator.benchmarks import BenchmarkItem

ZERO_SHOT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
ZERO_SHOT_INSTRUCTION_ZH = "请通过逐步推理来解答问题，并把最终答案放置于\\boxed{}中。"
PROMPT_STYLES = ("zero_shot", "few_shot", "chat")
CHINESE_BENCHMARKS = frozenset({"cmath", "mgsm_zh", "gaokao_mathcloze", "gaokao_mathqa"})

FEW_SHOT_EN = (
    (
        "A baker fills 7 trays with 12 rolls each and sells all but 9 rolls. How many rolls does he sell?",
        "He bakes 7 * 12 = 84 rolls. He sells 84 - 9 = 75 of them. The answer is 75.",
    ),
    (
        "What is the sum of the roots of $x^2 - 5x + 3 = 0$?",
        "For $ax^2 + bx + c$ the roots sum to $-b/a$, here $5/1 = 5$. The answer is 5.",
    ),
    (
        "Simplify $\\frac{6}{8} + \\frac{1}{4}$.",
        "$\\frac{6}{8} = \\frac{3}{4}$, and $\\frac{3}{4} + \\frac{1}{4} = 1$. The answer is 1.",
    ),
    (
        "A rectangle has perimeter 30 and length 9. What is its area?",
        "The width is $30/2 - 9 = 6$, so the area is $9 \\cdot 6 = 54$. The answer is 54.",
    ),
)
FEW_SHOT_ZH = (
    ("小明有15支铅笔，送给同学6支，又买了4支，现在有多少支？", "15 - 6 = 9，9 + 4 = 13。答案是13。"),
    ("一个正方形的边长是7厘米，它的面积是多少平方厘米？", "面积 = 7 × 7 = 49 平方厘米。答案是49。"),
    ("把 $\\frac{3}{5}$ 化成小数。", "3 ÷ 5 = 0.6。答案是0.6。"),
)


def question_text(item: BenchmarkItem) -> str:
    """The question, with its options for a multiple-choice item."""
    if not item.choices:
        return item.question
    return item.question.rstrip() + "\n" + "\n".join(item.choices)


def build_prompt(item: BenchmarkItem, style: str = "zero_shot") -> str:
    """The prompt text for one item: "User: q + instruction\\n\\nAssistant:", the same in the chat
    format (the sampler adds BOS), or a few-shot prefix."""
    chinese = item.benchmark in CHINESE_BENCHMARKS
    question = question_text(item)
    instruction = ZERO_SHOT_INSTRUCTION_ZH if chinese else ZERO_SHOT_INSTRUCTION
    if style == "zero_shot":
        return f"User: {question}\n{instruction}\n\nAssistant:"
    if style == "chat":
        # Imported here: the tokenizer module pulls in transformers, which plain prompts never need.
        from mathforge.models.tokenizer import message_text, role_header

        return (
            role_header("user")
            + message_text("user", f"{question}\n{instruction}")
            + role_header("assistant")
        )
    if style == "few_shot":
        shots = FEW_SHOT_ZH if chinese else FEW_SHOT_EN
        label_q, label_a = ("问题", "解答") if chinese else ("Question", "Answer")
        prefix = "".join(f"{label_q}: {q}\n{label_a}: {a}\n\n" for q, a in shots)
        return f"{prefix}{label_q}: {question}\n{label_a}:"
    raise ValueError(f"prompt style {style!r} is not one of {', '.join(PROMPT_STYLES)}")
