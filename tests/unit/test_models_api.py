"""The models package: offline tokenizer, presets, atomic checkpoint IO."""

from __future__ import annotations

import pytest
import torch
from mathforge.models.checkpoint import (
    CheckpointError,
    checkpoint_step,
    latest_checkpoint,
    load_model,
    save_model,
    write_latest,
)
from mathforge.models.presets import PRESETS, build_model, model_config, parameter_count
from mathforge.models.tokenizer import build_tokenizer, default_tokenizer, message_text, role_header
from transformers import AutoTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def test_default_tokenizer_is_identical_on_every_build(tokenizer):
    again = default_tokenizer()
    assert tokenizer.get_vocab() == again.get_vocab()
    text = "Compute $\\int_0^1 x^2 dx$ = 1/3, then print(42) -- ünïcödé ∑"
    ids = tokenizer(text)["input_ids"]
    assert ids == again(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_saved_tokenizer_loads_with_autotokenizer_and_keeps_chat_template(tmp_path):
    tok = build_tokenizer(["a b c 1 2 3", "x + y = z"] * 20, vocab_size=300, out_dir=tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    chat = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert loaded.apply_chat_template(chat, tokenize=False) == tok.apply_chat_template(chat, tokenize=False)
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == ("<s>", "</s>", "<pad>")


def test_chat_template_matches_the_pieces_sft_masks_with(tokenizer):
    chat = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "out"},
        {"role": "assistant", "content": "b"},
    ]
    pieces = "<s>" + "".join(role_header(m["role"]) + message_text(m["role"], m["content"]) for m in chat)
    assert tokenizer.apply_chat_template(chat, tokenize=False) == pieces
    prompt = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s>" + role_header("user") + message_text("user", "q") + role_header("assistant")


def test_vocab_size_below_bytes_is_rejected():
    with pytest.raises(ValueError, match="vocab_size 100"):
        build_tokenizer(["abc"], vocab_size=100)


def test_presets_tiny_is_small_and_7b_has_the_paper_shape(tokenizer):
    model = build_model("tiny", len(tokenizer), seed=0)
    assert parameter_count(model) < 5_000_000
    assert all(p.head_dim >= 64 for p in PRESETS.values())
    big = model_config("deepseek-coder-7b")
    assert (
        big.hidden_size,
        big.num_hidden_layers,
        big.num_attention_heads,
        big.intermediate_size,
        big.vocab_size,
        big.max_position_embeddings,
    ) == (4096, 30, 32, 11008, 102400, 4096)


def test_build_model_is_deterministic_under_seed_and_keeps_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build_model("tiny", 300, seed=7), build_model("tiny", 300, seed=7)
    c = build_model("tiny", 300, seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_save_then_load_round_trips_weights_and_tokenizer(tmp_path, tokenizer):
    model = build_model("tiny", len(tokenizer), seed=1)
    save_model(model, tokenizer, tmp_path / "ckpt")
    loaded, tok = load_model(tmp_path / "ckpt")
    assert tok.get_vocab() == tokenizer.get_vocab()
    for (name, x), y in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".")]


def test_save_replaces_an_existing_checkpoint_whole(tmp_path, tokenizer):
    save_model(build_model("tiny", len(tokenizer), seed=1), tokenizer, tmp_path / "ckpt")
    newer = build_model("tiny", len(tokenizer), seed=2)
    save_model(newer, tokenizer, tmp_path / "ckpt")
    loaded, _ = load_model(tmp_path / "ckpt")
    assert torch.equal(loaded.lm_head.weight, newer.lm_head.weight)


@pytest.mark.parametrize("damage", ["missing", "truncated", "no-config", "vocab-mismatch"])
def test_load_rejects_bad_checkpoints_with_checkpoint_error(tmp_path, tokenizer, damage):
    target = tmp_path / "ckpt"
    vocab = 300 if damage == "vocab-mismatch" else len(tokenizer)
    save_model(build_model("tiny", vocab, seed=1), tokenizer, target)
    if damage == "missing":
        target = tmp_path / "nowhere"
    elif damage == "truncated":
        weights = target / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "no-config":
        (target / "config.json").unlink()
    with pytest.raises(CheckpointError):
        load_model(target)


def test_latest_pointer_names_the_newest_complete_step(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "step-4").mkdir()
    write_latest(tmp_path, 4)
    assert latest_checkpoint(tmp_path) == tmp_path / "step-4"
    assert checkpoint_step(latest_checkpoint(tmp_path)) == 4
    write_latest(tmp_path, 9)
    with pytest.raises(CheckpointError, match="step-9"):
        latest_checkpoint(tmp_path)
