"""A random-weight model created partitioned under ZeRO-3, with the weights a whole build draws.

    model = fresh_partitioned(AutoModelForCausalLM, model_config("tiny", 512), ds_config, seed=0)
    # == build_model("tiny", 512, seed=0) once gathered, whatever the number of processes

A fresh preset (pretraining, or a reward model from random weights) has no files to read its
partitions from: its weights come from the random generator. Built whole, `seed` feeds one
generator that the modules draw from in construction order (torch's default init of each layer),
then transformers' init pass draws again over the modules (children first) and overwrites them.
Here the model is created under `deepspeed.zero.Init`, so each process holds only its partitions,
and the same draws are replayed on the CPU, one module at a time: construction draws go into a
scratch tensor of the parameter's shape (they only advance the generator, as in the whole build),
and the init pass fills a full CPU copy of one module's parameters from which each process keeps
its own range. Every process draws the whole sequence (as a whole build does, in the same time)
but holds at most one module beyond its partitions, and the result equals `build_model` with the
same seed on any number of processes and any device (the draws never use the GPU's generator).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

from mathforge.training.sharded_load import partition_range


def cpu_float32(shape: Sequence[int]) -> torch.Tensor:
    """An uninitialised CPU float32 tensor, also inside zero.Init, whose torch.empty (and zeros, full...)
    puts every new tensor on the accelerator in the run's dtype: a draw there would come from another
    generator (the GPU's) in another precision than the whole build's."""
    return torch.empty(0, device="cpu").new_empty(tuple(shape), dtype=torch.float32)


@contextlib.contextmanager
def _construction_draws_on_cpu() -> Iterator[None]:
    """While a model is constructed under zero.Init: torch's init functions draw on the CPU in float32
    (as the whole build constructs), into the parameter itself when it is such a tensor (zero.Init
    partitions a module's parameters when its constructor returns), else into a scratch tensor, and
    transformers' init pass, which each model runs at the end of its constructor (a wrapped model's
    before its wrapper's head is constructed), is `_init_pass` (on partitions it would draw nothing)."""
    from transformers import initialization

    def replay(original: Callable[..., Any]) -> Callable[..., Any]:
        def draw(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if tensor.device.type == "cpu" and tensor.dtype == torch.float32 and tensor.numel():
                original(tensor, *args, **kwargs)  # the module's own full tensor: no scratch needed
            else:
                original(cpu_float32(getattr(tensor, "ds_shape", tensor.shape)), *args, **kwargs)
            return tensor

        return draw

    patched: list[tuple[Any, str, Any]] = []
    try:
        for module_name in initialization.TORCH_MODULES_TO_PATCH:
            module = sys.modules.get(module_name)
            for name, original in initialization.TORCH_INIT_FUNCTIONS.items():
                if module is not None and hasattr(module, name):
                    patched.append((module, name, getattr(module, name)))
                    setattr(module, name, replay(original))
        patched.append((PreTrainedModel, "init_weights", PreTrainedModel.init_weights))
        PreTrainedModel.init_weights = _init_pass  # type: ignore[method-assign]
        yield
    finally:
        for module, name, original in reversed(patched):
            setattr(module, name, original)


@torch.no_grad()
def _init_pass(model: PreTrainedModel) -> None:
    """transformers' init pass (`initialize_weights`: children first, each sub-model with its own
    `_initialize_weights`) over the partitioned model, one module at a time on a full CPU copy;
    modules an inner model's pass already set are left alone, as transformers leaves them."""
    from transformers.initialization import guard_torch_init_functions

    custom = model.is_remote_code()

    def visit(module: torch.nn.Module, init: Callable[[torch.nn.Module, bool], None]) -> None:
        for child in module.children():
            visit(child, child._initialize_weights if isinstance(child, PreTrainedModel) else init)
        if getattr(module, "_is_hf_initialized", False):
            return
        # ZeRO-3 parameters: DeepSpeed gives each its full shape (ds_shape) and partition (ds_tensor).
        names = [name for name, _ in module.named_parameters(recurse=False)]
        params: list[Any] = [param for _, param in module.named_parameters(recurse=False)]
        full = [cpu_float32(p.ds_shape) for p in params]
        held = [p.data for p in params]
        try:
            for param, values in zip(params, full, strict=True):
                param.data = values
            # In-place writes bump a tensor's version. One the init pass leaves alone would keep
            # its construction draw in a whole build, which is not kept here: an error, not garbage.
            versions = [param._version for param in params]
            init(module, custom)
            written = [param._version != version for param, version in zip(params, versions, strict=True)]
        finally:
            for param, partition in zip(params, held, strict=True):
                param.data = partition
        for name, param, values, changed in zip(names, params, full, written, strict=True):
            if not changed:
                raise ValueError(
                    f"{type(module).__name__}.{name}: not set by the model's init pass, so a partitioned "
                    "fresh start cannot reproduce it; start from model.init_from instead"
                )
            start, stop = partition_range(param)
            if stop > start:
                flat = values.view(-1)[start:stop]
                param.ds_tensor.narrow(0, 0, stop - start).copy_(flat.to(param.ds_tensor.dtype))

    with guard_torch_init_functions():
        visit(model, model._initialize_weights)
    model.tie_weights(recompute_mapping=False)


def fresh_partitioned(model_class: Any, config: Any, ds_config: dict[str, Any], seed: int) -> PreTrainedModel:
    """`model_class` of `config` with random weights, created partitioned over the processes (bf16
    when the DeepSpeed config enables it, else fp32): the weights of a whole build seeded with `seed`
    (`build_model`, `init_reward_model` on a preset), each process holding only its share."""
    import deepspeed

    dtype = torch.bfloat16 if ds_config.get("bf16", {}).get("enabled") is True else torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with deepspeed.zero.Init(config_dict_or_path=ds_config), _construction_draws_on_cpu():
            model = model_class.from_config(config, dtype=dtype)
    return model
