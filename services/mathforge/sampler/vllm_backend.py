"""The vLLM backend (GPU): vLLM's AsyncLLMEngine with continuous batching and tensor parallelism,
used through its public API only (AsyncEngineArgs, SamplingParams, generate, collective_rpc,
reset_prefix_cache).

    backend = VllmBackend("/models/sft", dtype="bfloat16", tensor_parallel_size=2)

vLLM is imported when this backend starts, never at module import, so a CPU install that picks the
transformers backend never needs it. Mapping: our SamplingSettings become SamplingParams with
`logprobs=0` (the sampled token's log-probability) and the engine runs with
`logprobs_mode="raw_logprobs"`, so the numbers are the model's log-softmax before temperature,
top-k and top-p, as with the transformers backend. New weights: the checkpoint's tensor names and
shapes are checked against the serving ones first (staging), then, once calls in flight have
drained, every worker reloads its weights in place from the checkpoint through vLLM's
`collective_rpc("reload_weights", weights_path=...)` and the prefix cache, computed with the old
weights, is dropped.

Over the collective (LoadWeights with a `stream` whose backend is "vllm-nccl"), the weights go
through vLLM's own weight-transfer API: the engine is built with an NCCL WeightTransferConfig, the
first transfer of a group joins the trainer's NCCL group (`init_weight_transfer_engine`, each worker
at rank_offset + its rank), and each version is `start_weight_update`, `update_weights` (packed
broadcast, names/dtypes/shapes from the request) and `finish_weight_update`, after the drain. vLLM
loads the tensors into its own fused layout, so no checksum of the received bytes can be computed
here: such a version reports the trainer's checksum sent in the request only once vLLM confirmed
the whole update. This path runs only on GPUs (`make test-vllm` runs the CPU build's tests, which
cannot form an NCCL group).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer

from mathforge.sampler.backend import (
    FINISH_LENGTH,
    FINISH_STOP,
    GenerationJob,
    Sample,
    SampleCallback,
    SamplerBackend,
    SamplingSettings,
    StagedWeights,
    WeightsError,
)

#: The worker method vLLM 0.31 provides for loading new weights in place: it re-runs the model's
#: weight loader on the checkpoint at `weights_path` and re-applies the post-load processing (CPU
#: and quantised kernels repack weights after loading, so a plain `model.load_weights` would not do).
RELOAD_METHOD = "reload_weights"
#: WeightStream.backend of a transfer through vLLM's own NCCL weight-transfer engine.
VLLM_STREAM_BACKEND = "vllm-nccl"


def vllm_sampling_params(settings: SamplingSettings) -> Any:
    """vLLM SamplingParams with our semantics: text without special tokens or the stop string, and
    the sampled token's logprob. A seeded request with n > 1 gets distinct samples per index from
    vLLM (each index is seeded from the request's seed)."""
    from vllm import SamplingParams

    return SamplingParams(
        n=settings.n,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=settings.top_k,
        max_tokens=settings.max_tokens,
        stop=list(settings.stop) or None,
        seed=settings.seed,
        logprobs=0,
        skip_special_tokens=True,
        include_stop_str_in_output=False,
    )


def sample_from_completion(prompt_index: int, completion: Any) -> Sample:
    """Our Sample from a finished vLLM CompletionOutput (its index is the sample index)."""
    token_ids = [int(t) for t in completion.token_ids]
    if completion.logprobs is None or len(completion.logprobs) < len(token_ids):
        raise RuntimeError("vLLM returned no logprob for some sampled tokens (was logprobs=0 sent?)")
    logprobs = [float(completion.logprobs[i][token].logprob) for i, token in enumerate(token_ids)]
    reason = completion.finish_reason
    if reason not in (FINISH_STOP, FINISH_LENGTH):
        raise RuntimeError(f"vLLM ended sample {completion.index} of prompt {prompt_index} with {reason!r}")
    return Sample(prompt_index, int(completion.index), token_ids, logprobs, completion.text, reason)


def tensor_shapes(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} of a checkpoint directory, from the safetensors headers only.
    Opening a file also checks that it is as long as its header says (no truncated download)."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{path}: no .safetensors files (is this a checkpoint directory?)")
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                    tensor_slice = handle.get_slice(name)
                    shapes[name] = (str(tensor_slice.get_dtype()), tuple(tensor_slice.get_shape()))
        except Exception as exc:
            raise WeightsError(f"{file}: unreadable safetensors file ({exc})") from exc
    return shapes


class VllmBackend(SamplerBackend):
    """Samples with a vLLM AsyncLLMEngine; weights are swapped in place after a drain."""

    name = "vllm"
    swap_drains = True
    #: One engine holds one set of weights: a second policy would need a second engine (its own GPU
    #: memory share), so the service refuses named policy lines; run one sampler per line instead.
    supports_lines = False

    def __init__(
        self,
        model_path: str,
        dtype: str = "bfloat16",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int = 0,
        enforce_eager: bool = False,
        weight_transfer: bool = False,
    ):
        self.model_path, self.dtype, self.seed = model_path, dtype, seed
        self.weight_transfer = weight_transfer
        self.transfer_group = ""
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.requested_max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.engine: Any = None
        self.serving_path = model_path
        self._shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._waiting = 0

    def engine_args(self) -> Any:
        from vllm import AsyncEngineArgs

        extra: dict[str, Any] = {}
        if self.weight_transfer:
            from vllm.config import WeightTransferConfig

            extra["weight_transfer_config"] = WeightTransferConfig(backend="nccl")
        return AsyncEngineArgs(
            **extra,
            model=self.model_path,
            tokenizer=self.model_path,
            dtype=self.dtype,
            seed=self.seed,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.requested_max_model_len or None,
            enforce_eager=self.enforce_eager,
            logprobs_mode="raw_logprobs",
        )

    async def start(self) -> str:
        from vllm import AsyncLLMEngine

        self._shapes = await asyncio.to_thread(tensor_shapes, self.model_path)
        self.tokenizer = await asyncio.to_thread(
            AutoTokenizer.from_pretrained, self.model_path, local_files_only=True
        )
        config = await asyncio.to_thread(AutoConfig.from_pretrained, self.model_path, local_files_only=True)
        self.vocab_size = int(config.vocab_size)
        self.engine = AsyncLLMEngine.from_engine_args(self.engine_args())
        self.max_model_len = int(self.engine.model_config.max_model_len)
        return self.model_path

    # ---- sampling -------------------------------------------------------------------------
    async def generate(self, job: GenerationJob, weights: Any, on_sample: SampleCallback) -> None:
        params = vllm_sampling_params(job.settings)
        request_id = uuid.uuid4().hex
        await asyncio.gather(
            *(
                self._one_prompt(job, index, prompt, params, f"{request_id}-{index}", on_sample)
                for index, prompt in enumerate(job.prompts)
            )
        )

    async def _one_prompt(
        self,
        job: GenerationJob,
        index: int,
        prompt: Sequence[int],
        params: Any,
        request_id: str,
        on_sample: SampleCallback,
    ) -> None:
        emitted: set[int] = set()
        started = False
        self._waiting += 1
        try:
            async for output in self.engine.generate({"prompt_token_ids": list(prompt)}, params, request_id):
                if not started:
                    started = True
                    self._waiting -= 1
                    if job.first_token_at is None:
                        job.first_token_at = time.monotonic()
                for completion in output.outputs:
                    if completion.finish_reason is not None and completion.index not in emitted:
                        emitted.add(completion.index)
                        on_sample(sample_from_completion(index, completion))
        finally:
            if not started:
                self._waiting -= 1
        if len(emitted) != job.settings.n:
            raise RuntimeError(
                f"vLLM finished prompt {index} with {len(emitted)} of {job.settings.n} samples"
            )

    def queue_depth(self) -> int:
        return max(0, self._waiting)

    # ---- weights --------------------------------------------------------------------------
    async def stage_weights(self, path: str) -> StagedWeights:
        started = time.perf_counter()
        if not Path(path).is_dir():
            raise WeightsError(f"{path}: checkpoint directory does not exist")
        try:
            shapes = await asyncio.to_thread(tensor_shapes, path)
        except OSError as exc:
            raise WeightsError(f"{path}: unreadable ({exc})") from exc
        missing = sorted(set(self._shapes) - set(shapes))
        changed = sorted(n for n in self._shapes.keys() & shapes.keys() if shapes[n][1] != self._shapes[n][1])
        if missing or changed:
            raise WeightsError(
                f"{path}: does not fit the serving model (missing tensors: {missing[:3]}, "
                f"different shapes: {changed[:3]})"
            )
        size = sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
        return StagedWeights(path, size, time.perf_counter() - started)

    async def stage_stream(self, stream: Any, receiver: Any, line: str = "") -> StagedWeights:
        """Checks the streamed tensors against the serving checkpoint's and joins the trainer's
        group when it is new; the weights themselves arrive in `activate`, after the drain."""
        started = time.perf_counter()
        if not self.weight_transfer:
            raise WeightsError("this sampler was started without --weight-transfer; publish by path")
        if stream.backend != VLLM_STREAM_BACKEND:
            raise WeightsError(
                f"the vllm backend receives stream backend {VLLM_STREAM_BACKEND!r}, not {stream.backend!r}"
            )
        missing = sorted(set(self._shapes) - {t.name for t in stream.tensors})
        changed = [
            t.name
            for t in stream.tensors
            if t.name in self._shapes and tuple(t.shape) != self._shapes[t.name][1]
        ]
        unknown = [t.name for t in stream.tensors if t.name not in self._shapes]
        if missing or changed or unknown:
            raise WeightsError(
                f"streamed tensors do not fit the serving model (missing: {missing[:3]}, different shapes: "
                f"{changed[:3]}, unknown: {unknown[:3]})"
            )
        if self.transfer_group != stream.group_id:
            from vllm.distributed.weight_transfer.base import WeightTransferInitRequest

            host, _, port = stream.store_address.rpartition(":")
            init = {
                "master_address": host,
                "master_port": int(port),
                "rank_offset": int(stream.rank),
                "world_size": int(stream.world_size),
            }
            await self.engine.init_weight_transfer_engine(WeightTransferInitRequest(init_info=init))
            self.transfer_group = stream.group_id
        size = 0
        for tensor in stream.tensors:
            count = 1
            for dim in tensor.shape:
                count *= int(dim)
            size += count * _element_size(tensor.dtype)
        return StagedWeights(
            "", size, time.perf_counter() - started, payload=stream, checksum=stream.checksum
        )

    async def _receive(self, stream: Any) -> None:
        from vllm.distributed.weight_transfer.base import WeightTransferUpdateRequest

        update = {
            "names": [t.name for t in stream.tensors],
            "dtype_names": [t.dtype for t in stream.tensors],
            "shapes": [[int(d) for d in t.shape] for t in stream.tensors],
            "packed": True,
        }
        await self.engine.start_weight_update()
        await self.engine.update_weights(WeightTransferUpdateRequest(update_info=update))
        await self.engine.finish_weight_update()

    async def _reload(self, path: str) -> None:
        await self.engine.collective_rpc(RELOAD_METHOD, kwargs={"weights_path": path})

    async def activate(self, staged: StagedWeights, line: str = "") -> str:
        if not staged.path:  # streamed: received in place, nothing on disk to fall back to
            try:
                await self._receive(staged.payload)
            except Exception as exc:
                self.transfer_group = ""  # a broken group is never reused
                raise WeightsError(
                    f"vLLM could not receive the streamed weights ({exc}); some may be new: restart this "
                    "sampler or publish a full version by path"
                ) from exc
            finally:
                await self.engine.reset_prefix_cache()
            self.serving_path = ""
            return ""
        try:
            await self._reload(staged.path)
        except Exception as exc:
            if not self.serving_path:
                raise WeightsError(
                    f"{staged.path}: the engine could not load it ({exc}) and the serving weights came over "
                    "the collective, so there is no checkpoint to put back; restart this sampler"
                ) from exc
            # Some ranks may hold new tensors now: put the serving checkpoint back on all of them.
            try:
                await self._reload(self.serving_path)
            except Exception as restore_exc:
                raise WeightsError(
                    f"{staged.path}: the engine could not load it ({exc}), nor reload the serving "
                    f"checkpoint {self.serving_path} ({restore_exc}); restart this sampler"
                ) from exc
            raise WeightsError(f"{staged.path}: the engine could not load it ({exc})") from exc
        finally:
            await self.engine.reset_prefix_cache()  # cached prefixes were computed with other weights
        self.serving_path = staged.path
        return staged.path

    def describe(self) -> dict[str, str]:
        return {
            "dtype": self.dtype,
            "weight_transfer": str(self.weight_transfer),
            "tensor_parallel_size": str(self.tensor_parallel_size),
            "gpu_memory_utilization": str(self.gpu_memory_utilization),
            "enforce_eager": str(self.enforce_eager),
        }

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None


def _element_size(dtype_name: str) -> int:
    import torch

    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise WeightsError(f"unknown tensor dtype {dtype_name!r}")
    return torch.empty((), dtype=dtype).element_size()
