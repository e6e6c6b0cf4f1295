"""Packing: response-only SFT labels on a hand-built batch, attention kept within packed documents,
the token mixture following its weights, and streams that resume exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.training.mixture import MixtureStream, Source
from mathforge.training.packing import IGNORE, PackedRow, collate_rows
from mathforge.training.sft_data import SftStream, synthetic_conversations, tokenize_chat
from mathforge.training.trainer import token_loss_sum


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model("tiny", len(tokenizer), seed=0).eval()


def test_sft_labels_cover_exactly_the_response_tokens_of_a_hand_built_batch(tokenizer, model):
    chat = [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 = 5. \\boxed{5}"},
    ]
    example = tokenize_chat(chat, tokenizer)
    prompt_text = tokenizer.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer("2 + 3 = 5. \\boxed{5}</s>", add_special_tokens=False)["input_ids"]
    assert example.ids[: len(prompt_ids)] == prompt_ids
    assert example.ids[len(prompt_ids) : len(prompt_ids) + len(response_ids)] == response_ids
    assert [i for i, t in enumerate(example.targets) if t] == list(
        range(len(prompt_ids), len(prompt_ids) + len(response_ids))
    )

    row = PackedRow(64)
    row.add(example.ids, example.targets)
    batch = collate_rows([row.finish(tokenizer.pad_token_id)])
    labels = batch["labels"][0]
    trained = (labels != IGNORE).nonzero().flatten().tolist()
    # Position t predicts token t+1: the last prompt token predicts the first response token.
    assert trained == list(range(len(prompt_ids) - 1, len(prompt_ids) + len(response_ids) - 1))
    assert labels[trained].tolist() == response_ids

    with torch.no_grad():
        loss = token_loss_sum(model, batch)
        logits = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
    by_hand = sum(
        F.cross_entropy(logits[t], torch.tensor(response_ids[k]), reduction="sum")
        for k, t in enumerate(trained)
    )
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)


def test_tool_output_is_context_not_a_target(tokenizer):
    chat = synthetic_conversations(1, seed=0, difficulty=1, styles=["tool"])[0]
    example = tokenize_chat(chat, tokenizer)
    tool_text = chat[2]["content"]
    trained_text = tokenizer.decode([i for i, t in zip(example.ids, example.targets, strict=True) if t])
    assert tool_text not in trained_text
    assert chat[1]["content"] in trained_text and chat[3]["content"] in trained_text


def test_packed_documents_do_not_attend_to_each_other(tokenizer, model):
    first = tokenizer("The area of a circle is pi r squared.")["input_ids"]
    second = tokenizer("Solve for y: 3y + 7 = 22.")["input_ids"]
    row = PackedRow(len(first) + len(second))
    row.add(first, [True] * len(first))
    row.add(second, [True] * len(second))
    packed = collate_rows([row.finish(tokenizer.pad_token_id)])
    alone = torch.tensor([second])
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers does not look for packed documents.
        packed_logits = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits
        alone_logits = model(input_ids=alone).logits
    torch.testing.assert_close(packed_logits[0, len(first) :], alone_logits[0], atol=1e-5, rtol=1e-5)
    labels = packed["labels"][0]
    assert labels[len(first) - 1] == IGNORE  # the first document never predicts the second's start


def test_mixture_follows_token_weights_whatever_the_document_lengths(tokenizer):
    long_docs = ["word " * 60 + str(i) for i in range(20)]
    short_docs = [f"x{i}" for i in range(20)]
    stream = MixtureStream(
        [Source("long", long_docs, 0.25), Source("short", short_docs, 0.75)], tokenizer, seq_len=64, seed=0
    )
    for _ in range(300):
        stream.next_row()
    shares = stream.mixture_report()
    assert shares["long"] == pytest.approx(0.25, abs=0.03)
    assert shares["short"] == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("kind", ["mixture", "sft"])
def test_streams_resume_to_the_exact_next_batch(tokenizer, kind):
    def make():
        if kind == "mixture":
            docs = [f"document {i} " * (i % 7 + 1) for i in range(50)]
            return MixtureStream(
                [Source("a", docs, 1.0), Source("b", docs[::-1], 2.0)],
                tokenizer,
                32,
                seed=3,
                rank=1,
                world_size=2,
            )
        examples = [tokenize_chat(c, tokenizer) for c in synthetic_conversations(30, 0, 1, ["cot", "pot"])]
        return SftStream(examples, 128, seed=3, pad_id=tokenizer.pad_token_id, rank=1, world_size=2)

    original = make()
    for _ in range(7):
        original.next_batch(2)
    state = original.state_dict()
    expected = [original.next_batch(2) for _ in range(5)]
    resumed = make()
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.next_batch(2)
        for key in want:
            assert torch.equal(got[key], want[key]), key


def test_sft_rows_never_split_an_example_that_fits(tokenizer):
    examples = [tokenize_chat(c, tokenizer) for c in synthetic_conversations(20, 0, 1, ["cot"])]
    stream = SftStream(examples, 256, seed=0, pad_id=tokenizer.pad_token_id)
    for _ in range(10):
        ids, positions, _ = stream.next_row()
        starts = [i for i, p in enumerate(positions) if p == 0 and ids[i] == tokenizer.bos_token_id]
        assert starts and starts[0] == 0
        assert stream.truncated == 0
