"""Builds byte-level BPE tokenizers offline and saves them as standard Hugging Face tokenizers.

    tok = build_tokenizer(texts, vocab_size=512, out_dir="runs/tok")   # AutoTokenizer loads out_dir
    tok = default_tokenizer()       # the same tokenizer every time, from the corpus in this package

The chat format is plain text with role tags that are single special tokens:
`<s><|user|>\\n{question}\\n<|assistant|>\\n{answer}</s>\\n`. SFT builds its label masks from the
same pieces (`ROLE_TAGS`, `role_header`), so training and `apply_chat_template` agree token for token.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TAGS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "tool": "<|tool|>"}
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TAGS.values()]

# Jinja, rendered by transformers' apply_chat_template. Keep it in step with `role_header` and
# `message_text`: the SFT label mask is built from those two functions.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

DEFAULT_VOCAB_SIZE = 512
_DEFAULT_CORPUS = Path(__file__).with_name("default_corpus.txt")


def role_header(role: str) -> str:
    """The text that opens a message of `role` in the chat format."""
    if role not in ROLE_TAGS:
        raise ValueError(f"unknown chat role {role!r}; known: {', '.join(ROLE_TAGS)}")
    return ROLE_TAGS[role] + "\n"


def message_text(role: str, content: str) -> str:
    """The text of a message's body in the chat format, including its end-of-turn marks."""
    return content + (EOS if role == "assistant" else "") + "\n"


def build_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, out_dir: str | Path | None = None
) -> PreTrainedTokenizerFast:
    """Trains a byte-level BPE on `texts` and returns it as a Hugging Face fast tokenizer.

    Any byte sequence can be encoded (the 256 byte symbols are always in the vocabulary). With
    `out_dir`, the tokenizer is saved there and `AutoTokenizer.from_pretrained(out_dir)` loads it
    without network access.
    """
    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is below {minimum} (256 bytes + special tokens)")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TAGS.values()),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 1 << 20
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def default_corpus() -> list[str]:
    """The small English + math corpus shipped with the package, one document per line."""
    return [line for line in _DEFAULT_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def default_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """The package's built-in tokenizer: the same vocabulary on every machine, for services that
    have no model configured and for tests."""
    return build_tokenizer(default_corpus(), vocab_size=vocab_size)
