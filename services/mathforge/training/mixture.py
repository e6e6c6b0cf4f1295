"""The pretraining token stream: a weighted mixture of document sources, packed into rows.

    stream = MixtureStream(sources, tokenizer, seq_len=4096, seed=0, rank=r, world_size=w)
    batch = stream.next_batch(micro_batch_size)        # input_ids, position_ids, labels
    state = stream.state_dict(); stream.load_state_dict(state)   # exact resume

Each process reads its own share of every source (documents i with i % world_size == rank). The
weights are shares of TOKENS, as the paper's mixture is (DeepSeekMath §2.3): the next document
comes from the source furthest below its share so far (fewest tokens read per unit of weight), so
the token mix follows the weights closely at every point of the run, whatever the document
lengths. A source is walked in a fresh order, seeded by (seed, rank, source, epoch), every epoch,
so a small source repeats (as up-sampling does) rather than running dry. Documents longer than a row
are cut into row-sized pieces. The stream's whole state (token counts, cursors, the unplaced rest
of a document) fits in a small dict, so resuming reproduces the exact next batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from mathforge.corpus.shards import iter_records, list_shards
from mathforge.models.tokenizer import default_corpus
from mathforge.training.packing import PackedRow, collate_rows
from mathforge.training.synthetic_math import generate_problems


@dataclass
class Source:
    """One named source of documents with its mixture weight."""

    name: str
    documents: list[str]
    weight: float


BUILTIN_CORPUS = "builtin:default-corpus"
SYNTHETIC_MATH = "synthetic-math:"


def read_documents(path: str, text_field: str = "text", limit: int = 0) -> list[str]:
    """The texts of a shard file, directory or glob (JSONL, gzip/zstd JSONL, Parquet), in order.

    Two built-in sources need no files (demo and tests): "builtin:default-corpus" (the package's
    small corpus) and "synthetic-math:<n>" (n synthetic word problems with their solutions).
    """
    if path == BUILTIN_CORPUS:
        return default_corpus()[: limit or None]
    if path.startswith(SYNTHETIC_MATH):
        count = int(path.removeprefix(SYNTHETIC_MATH))
        count = min(count, limit) if limit else count
        return [f"Question: {p.question}\nAnswer: {p.solution}" for p in generate_problems(count, seed=0)]
    texts: list[str] = []
    for shard in list_shards(path):
        for record in iter_records(shard):
            text = record.get(text_field)
            if isinstance(text, str) and text:
                texts.append(text)
                if limit and len(texts) >= limit:
                    return texts
    if not texts:
        raise ValueError(f"{path}: no records with a non-empty {text_field!r} field")
    return texts


class MixtureStream:
    """An endless, resumable stream of packed rows drawn from weighted sources."""

    def __init__(
        self,
        sources: list[Source],
        tokenizer: PreTrainedTokenizerBase,
        seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not sources:
            raise ValueError("the mixture has no sources")
        self.sources = [Source(s.name, s.documents[rank::world_size], s.weight) for s in sources]
        for source in self.sources:
            if not source.documents:
                raise ValueError(
                    f"source {source.name!r} has fewer documents than the {world_size} processes"
                )
            if source.weight < 0:
                raise ValueError(f"source {source.name!r} has a negative weight {source.weight}")
        weights = np.array([s.weight for s in self.sources], dtype=np.float64)
        if weights.sum() <= 0:
            raise ValueError("the mixture weights sum to 0")
        self.probabilities = weights / weights.sum()
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self.epochs = [0] * len(self.sources)
        self.cursors = [0] * len(self.sources)
        self.pending: list[int] = []  # tokens of the current document not yet placed in a row
        self.tokens_read = [0] * len(self.sources)
        self._orders: dict[int, tuple[int, np.ndarray]] = {}

    def _order(self, index: int) -> np.ndarray:
        cached = self._orders.get(index)
        if cached is not None and cached[0] == self.epochs[index]:
            return cached[1]
        generator = np.random.Generator(np.random.PCG64([self.seed, self.rank, index, self.epochs[index]]))
        order = generator.permutation(len(self.sources[index].documents))
        self._orders[index] = (self.epochs[index], order)
        return order

    def _next_document(self) -> list[int]:
        deficits = [
            self.tokens_read[i] / p if p > 0 else float("inf") for i, p in enumerate(self.probabilities)
        ]
        index = int(np.argmin(deficits))
        source = self.sources[index]
        if self.cursors[index] >= len(source.documents):
            self.epochs[index] += 1
            self.cursors[index] = 0
        text = source.documents[int(self._order(index)[self.cursors[index]])]
        self.cursors[index] += 1
        tok = self.tokenizer
        ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        self.tokens_read[index] += len(ids)
        return ids

    def next_row(self) -> tuple[list[int], list[int], list[int]]:
        row = PackedRow(self.seq_len)
        while row.free:
            if not self.pending:
                self.pending = self._next_document()
            piece, self.pending = self.pending[: row.free], self.pending[row.free :]
            row.add(piece, [True] * len(piece))
        return row.finish(self.tokenizer.pad_token_id)

    def next_batch(self, rows: int) -> dict[str, Any]:
        return collate_rows([self.next_row() for _ in range(rows)])

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs": list(self.epochs),
            "cursors": list(self.cursors),
            "pending": list(self.pending),
            "tokens_read": list(self.tokens_read),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = list(state["epochs"])
        self.cursors = list(state["cursors"])
        self.pending = list(state["pending"])
        self.tokens_read = list(state["tokens_read"])

    def mixture_report(self) -> dict[str, float]:
        """The share of tokens read from each source so far."""
        total = sum(self.tokens_read) or 1
        return {s.name: n / total for s, n in zip(self.sources, self.tokens_read, strict=True)}
