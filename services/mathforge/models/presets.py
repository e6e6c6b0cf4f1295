"""Model architectures by name, from a CPU-sized "tiny" to the paper's 7B, and random-init building.

    model = build_model("tiny", vocab_size=len(tokenizer), seed=0)

Every preset is a Llama-architecture causal LM (transformers' LlamaForCausalLM). "deepseek-coder-7b"
is the DeepSeek-Coder-v1.5 7B shape that DeepSeekMath starts from (DeepSeekMath §2.3); its weights
come from a path or PVC through `checkpoint.load_model`, never from the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel


@dataclass(frozen=True)
class ModelPreset:
    """The shape of a Llama-architecture model."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    num_key_value_heads: int = 0  # 0 = same as num_attention_heads (no grouped-query attention)
    vocab_size: int = 0  # 0 = take the tokenizer's
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# head_dim stays >= 64 in every preset: vLLM's CPU backend rejects smaller heads.
PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=1024,
    ),
    "small": ModelPreset(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=688,
        max_position_embeddings=2048,
    ),
    "base-100m": ModelPreset(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=2048,
        max_position_embeddings=4096,
    ),
    # About 0.48B parameters with the built-in 512-token vocabulary: the GPU check's model.
    "base-500m": ModelPreset(
        hidden_size=1280,
        num_hidden_layers=24,
        num_attention_heads=20,
        intermediate_size=3456,
        max_position_embeddings=4096,
    ),
    "deepseek-coder-7b": ModelPreset(
        hidden_size=4096,
        num_hidden_layers=30,
        num_attention_heads=32,
        intermediate_size=11008,
        max_position_embeddings=4096,
        vocab_size=102400,
    ),
}

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """Turns "bf16", "float32"... into a torch dtype; None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def model_config(preset: str | ModelPreset, vocab_size: int | None = None, **special_ids: int) -> LlamaConfig:
    """The transformers config of a preset; `vocab_size` overrides the preset's."""
    shape = get_preset(preset) if isinstance(preset, str) else preset
    fields = asdict(shape)
    fields["vocab_size"] = vocab_size or shape.vocab_size
    if not fields["vocab_size"]:
        raise ValueError("vocab_size is needed: the preset has none and none was given")
    fields["num_key_value_heads"] = shape.num_key_value_heads or shape.num_attention_heads
    rope_theta = fields.pop("rope_theta")
    return LlamaConfig(
        **fields,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=False,
        use_cache=True,
        **special_ids,
    )


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_model(
    preset: str | ModelPreset,
    vocab_size: int | None = None,
    seed: int = 0,
    dtype: str | torch.dtype | None = "float32",
    **special_ids: int,
) -> PreTrainedModel:
    """A randomly initialised LlamaForCausalLM of `preset`, identical for the same seed. Leaves the
    caller's global RNG state as it was."""
    config = model_config(preset, vocab_size, **special_ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    torch_dtype = parse_dtype(dtype)
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    return model


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
