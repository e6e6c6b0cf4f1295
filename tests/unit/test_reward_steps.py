"""PRM steps: splitting by the configured separator, token spans from offsets, and per-step scores
read at the last token of each step; the ORM reads at the closing EOS."""

from __future__ import annotations

import pytest
import torch
from mathforge.reward.encoding import collate, encode, prompt_ids, score_encoded
from mathforge.reward.model import init_reward_model
from mathforge.reward.steps import StepSpan, split_steps, step_prefixes, step_texts, token_spans

RESPONSE = "Ada starts with 5 apples.\n\nShe buys 3 more: 5 + 3 = 8.\n  The answer is \\boxed{8}.\n"


@pytest.fixture(scope="module")
def prm():
    model = init_reward_model("prm", "tiny", seed=3)
    model.network.eval()
    return model


def test_newline_steps_skip_blank_lines_and_trim_whitespace() -> None:
    assert step_texts(RESPONSE) == [
        "Ada starts with 5 apples.",
        "She buys 3 more: 5 + 3 = 8.",
        "The answer is \\boxed{8}.",
    ]
    spans = split_steps(RESPONSE)
    assert RESPONSE[spans[2].char_start : spans[2].char_end] == "The answer is \\boxed{8}."
    assert split_steps("   \n\n ") == []


def test_custom_separator_and_prefixes() -> None:
    text = "x = 1 ки y = x + 1 ки so y = 2"
    assert step_texts(text, " ки ") == ["x = 1", "y = x + 1", "so y = 2"]
    assert step_prefixes(text, " ки ") == ["x = 1 ки ", "x = 1 ки y = x + 1 ки ", text]
    assert step_prefixes("a\nb", "\n") == ["a\n", "a\nb"]
    with pytest.raises(ValueError, match="separator"):
        split_steps("a", "")


def test_token_spans_cover_every_character_of_a_step_even_when_a_token_straddles() -> None:
    # Tokens: "ab" "c;d" "ef": the middle token holds the end of step 1 and the start of step 2.
    offsets = [(0, 2), (2, 5), (5, 7)]
    spans = token_spans(split_steps("abc;def", ";"), offsets)
    assert spans == [StepSpan(0, 3, 0, 2), StepSpan(4, 7, 1, 3)]


def test_prm_step_rewards_are_read_at_each_steps_last_token(prm) -> None:
    item = encode(prm, "How many apples?", RESPONSE)
    start = len(prompt_ids(prm, "How many apples?"))
    assert len(item.steps) == 3
    response_ids = item.input_ids[start:]
    for step, position in zip(item.steps, item.read_at, strict=True):
        assert position == start + step.token_end - 1
        step_text = RESPONSE[step.char_start : step.char_end]
        tokens_text = prm.tokenizer.decode(response_ids[step.token_start : step.token_end])
        assert step_text in tokens_text  # every character of the step is in its tokens
        assert tokens_text.strip().endswith(step_text[-1])  # and the last one ends it
        assert step_text not in prm.tokenizer.decode(response_ids[step.token_start : step.token_end - 1])
    # The served scores are the head's sigmoid at exactly those positions of a plain forward pass.
    ids, mask = collate([item], prm.tokenizer.pad_token_id)
    with torch.no_grad():
        per_token = torch.sigmoid(prm.token_logits(ids, mask))[0]
    [scores] = score_encoded(prm, [item])
    assert scores == pytest.approx([float(per_token[p]) for p in item.read_at], abs=1e-6)
    # Changing text after a step never changes that step's score (causal reading).
    changed = encode(prm, "How many apples?", RESPONSE.replace("\\boxed{8}", "\\boxed{9}"))
    [changed_scores] = score_encoded(prm, [changed])
    assert changed_scores[:2] == pytest.approx(scores[:2], abs=1e-5)
    assert changed_scores[2] != pytest.approx(scores[2], abs=1e-7)


def test_orm_reads_at_the_closing_eos_and_padding_changes_nothing() -> None:
    orm = init_reward_model("orm", "tiny", seed=4)
    orm.network.eval()
    short = encode(orm, "q?", "1")
    long = encode(orm, "A much longer question with many words?", RESPONSE)
    assert short.input_ids[-1] == orm.tokenizer.eos_token_id and short.read_at == [len(short) - 1]
    alone = score_encoded(orm, [short])
    together = score_encoded(orm, [long, short])
    assert together[1] == pytest.approx(alone[0], abs=1e-5)


def test_special_token_text_in_a_response_stays_text(prm) -> None:
    item = encode(prm, "q", "<|assistant|>\n</s>")
    assert prm.tokenizer.convert_tokens_to_ids("<|assistant|>") not in item.input_ids[-6:]
    assert prm.tokenizer.eos_token_id not in item.input_ids
