"""SFT examples: chat-formatted conversations tokenized with a response-only mask, packed at random.

    examples = load_examples(config.data, tokenizer)
    stream = SftStream(examples, seq_len=4096, seed=0, rank=r, world_size=w, pad_id=tokenizer.pad_token_id)
    batch = stream.next_batch(micro_batch_size)

An example is a list of messages ({"role", "content"}) in the package's chat format
(models/tokenizer.py). Only assistant tokens (content and its end-of-turn token) are trained
targets; system, user and tool messages and the role headers are context. Examples are shuffled
every epoch and concatenated until the next one does not fit in the row (DeepSeekMath §3);
an example longer than a row is cut to the row length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from mathforge.corpus.shards import iter_records, list_shards
from mathforge.models.tokenizer import ROLE_TAGS, message_text, role_header
from mathforge.training.packing import PackedRow, collate_rows
from mathforge.training.synthetic_math import STYLES, generate_problems, to_messages


@dataclass
class TokenizedExample:
    ids: list[int]
    targets: list[bool]


def tokenize_chat(messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase) -> TokenizedExample:
    """Token ids of a conversation and, per token, whether it is a trained (assistant) token."""
    if not messages or not any(m.get("role") == "assistant" for m in messages):
        raise ValueError("an SFT example needs at least one assistant message")
    ids = [tokenizer.bos_token_id]
    targets = [False]
    for message in messages:
        role, content = message.get("role", ""), message.get("content", "")
        if role not in ROLE_TAGS or not isinstance(content, str):
            raise ValueError(
                f"message role {role!r} is not one of {', '.join(ROLE_TAGS)} or content is not text"
            )
        header = tokenizer(role_header(role), add_special_tokens=False)["input_ids"]
        body_text = message_text(role, content)
        # The newline after an assistant's end-of-turn token is context: the model stops at </s>.
        trained_text, tail = (body_text[:-1], "\n") if role == "assistant" else ("", body_text)
        trained = tokenizer(trained_text, add_special_tokens=False)["input_ids"] if trained_text else []
        rest = tokenizer(tail, add_special_tokens=False)["input_ids"]
        ids += header + trained + rest
        targets += [False] * len(header) + [True] * len(trained) + [False] * len(rest)
    return TokenizedExample(ids, targets)


def read_conversations(path: str) -> list[list[dict[str, str]]]:
    """Conversations from shard files whose records have a "messages" list (or question/solution)."""
    conversations = []
    for shard in list_shards(path):
        for number, record in enumerate(iter_records(shard)):
            if isinstance(record.get("messages"), list):
                conversations.append(record["messages"])
            elif "question" in record and "solution" in record:
                conversations.append(
                    [
                        {"role": "user", "content": str(record["question"])},
                        {"role": "assistant", "content": str(record["solution"])},
                    ]
                )
            else:
                raise ValueError(
                    f"{shard} record {number}: needs 'messages' or 'question'+'solution', "
                    f"has {sorted(record)[:5]}"
                )
    return conversations


def synthetic_conversations(
    count: int, seed: int, difficulty: int, styles: list[str]
) -> list[list[dict[str, str]]]:
    """Training-split synthetic word problems rendered in the given solution styles, in turn."""
    for style in styles:
        if style not in STYLES:
            raise ValueError(f"unknown SFT style {style!r}; known: {', '.join(STYLES)}")
    problems = generate_problems(count, seed=seed, difficulty=difficulty, split="train")
    return [to_messages(p, styles[i % len(styles)]) for i, p in enumerate(problems)]


class SftStream:
    """An endless, resumable stream of rows packed from shuffled examples."""

    def __init__(
        self,
        examples: list[TokenizedExample],
        seq_len: int,
        seed: int,
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.examples = examples[rank::world_size]
        if not self.examples:
            raise ValueError(f"{len(examples)} SFT examples cannot feed {world_size} processes")
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self.pad_id = pad_id
        self.epoch = 0
        self.cursor = 0
        self.truncated = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        generator = np.random.Generator(np.random.PCG64([self.seed, self.rank, self.epoch]))
        return generator.permutation(len(self.examples))

    def _peek(self) -> TokenizedExample:
        if self.cursor >= len(self.examples):
            self.epoch += 1
            self.cursor = 0
            self._order = self._permutation()
        return self.examples[int(self._order[self.cursor])]

    def next_row(self) -> tuple[list[int], list[int], list[int]]:
        row = PackedRow(self.seq_len)
        while True:
            example = self._peek()
            if len(example.ids) > row.free and row.ids:
                break
            ids, targets = example.ids[: row.free], example.targets[: row.free]
            self.truncated += len(example.ids) > len(ids)
            row.add(ids, targets)
            self.cursor += 1
            if not row.free:
                break
        return row.finish(self.pad_id)

    def next_batch(self, rows: int) -> dict[str, Any]:
        return collate_rows([self.next_row() for _ in range(rows)])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "truncated": self.truncated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor, self.truncated = state["epoch"], state["cursor"], state["truncated"]
        self._order = self._permutation()


def dump_conversations(conversations: list[list[dict[str, str]]], path: str) -> None:
    """Writes conversations as JSONL records {"messages": [...]} (the format `read_conversations` reads)."""
    with open(path, "w", encoding="utf-8") as handle:
        for messages in conversations:
            handle.write(json.dumps({"messages": messages}) + "\n")
