"""The evaluator's `chat` prompt style is the prompt GRPO samples from: the tokenizer's own chat
template (minus the BOS the sampler adds), so an evaluation sees the layout the model trained on."""

from __future__ import annotations

from mathforge.evaluator.benchmarks import BenchmarkItem
from mathforge.evaluator.prompts import ZERO_SHOT_INSTRUCTION, build_prompt
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.grpo.questions import prompt_text


def test_chat_prompt_equals_the_grpo_prompt_without_bos():
    tokenizer = default_tokenizer()
    item = BenchmarkItem(
        benchmark="synthetic", id="7", question="Ann has 3 apples and buys 4. How many?", answer="7"
    )
    expected = prompt_text(tokenizer, item.question, ZERO_SHOT_INSTRUCTION)
    assert expected.startswith(tokenizer.bos_token)
    assert build_prompt(item, "chat") == expected[len(tokenizer.bos_token) :]
    ids = tokenizer.encode(build_prompt(item, "chat"), add_special_tokens=False)
    assert (
        tokenizer.convert_tokens_to_ids("<|user|>") in ids
        and tokenizer.convert_tokens_to_ids("<|assistant|>") in ids
    )
