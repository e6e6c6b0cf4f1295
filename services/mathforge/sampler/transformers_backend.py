"""The transformers backend: a Hugging Face causal LM sampled by our own batched decoding loop
(decoding.py) on one worker thread, for CPUs and small runs.

Each call keeps the model object it was admitted with, so a new checkpoint is loaded beside the
serving one and swapped in by reference: calls in flight finish on the old model and nothing waits.
Weights streamed over the collective are received in place into a standby copy of the model (the
one retired by the previous streamed swap, once no call samples from it), so a streaming run keeps
two copies, not a new one per version; a line loaded from paths keeps one.
Policy lines (several policies in one service, service.py) are one serving model each (and a
standby while streamed); their calls share the one decode worker, never a batch.
With no model path it builds the package's tokenizer and a randomly initialised preset model from a
fixed seed, so the service runs on a fresh machine without downloads.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mathforge.models.checkpoint import CheckpointError, load_model
from mathforge.models.presets import build_model
from mathforge.models.tokenizer import default_tokenizer
from mathforge.models.transfer import dtype_name, served_tensors, weights_checksum
from mathforge.sampler.backend import (
    GenerationJob,
    SampleCallback,
    SamplerBackend,
    StagedWeights,
    WeightsError,
)
from mathforge.sampler.batcher import DecodeWorker, PendingJob, TakeMore
from mathforge.sampler.decoding import DecodeRequest, decode_batch


def load_owned(path: str, dtype: str, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """load_model, with every tensor copied out of the memory-mapped safetensors file, so a read
    error shows up now (while the old weights still serve) rather than mid-generation, and the
    model no longer depends on the file once it serves."""
    model, tokenizer = load_model(path, dtype, device)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()
    return model, tokenizer


def checkpoint_bytes(path: str | Path) -> int:
    """Bytes of the safetensors weight files in a checkpoint directory."""
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def model_bytes(model: PreTrainedModel | None) -> int:
    """Bytes of a model's parameters and buffers."""
    if model is None:
        return 0
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


@dataclass
class LineModels:
    """One policy line's models: the one serving and, for streamed versions, the standby copy the
    next version is received into."""

    serving: PreTrainedModel
    standby: PreTrainedModel | None = None


class TransformersBackend(SamplerBackend):
    """Samples from a transformers model on CPU (or one CUDA device) with a KV cache."""

    name = "transformers"
    swap_drains = False

    def __init__(
        self,
        model_path: str = "",
        preset: str = "tiny",
        dtype: str = "float32",
        device: str = "cpu",
        seed: int = 0,
        max_batch_rows: int = 256,
        torch_threads: int = 0,
        batch_wait_s: float = 0.0,
    ):
        self.model_path, self.preset, self.dtype, self.device = model_path, preset, dtype, device
        self.seed = seed
        self.max_batch_rows = max_batch_rows
        self.torch_threads = torch_threads
        self.batch_wait_s = batch_wait_s
        self.worker: DecodeWorker | None = None
        self.eos_ids: set[int] = set()
        self.lines: dict[str, LineModels] = {}  # "" = the default line, set by start()
        self.initial_checksum = ""
        self._users: dict[int, int] = {}  # id(model) -> calls sampling from it

    # ---- loading --------------------------------------------------------------------------
    def _build(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self.model_path:
            try:
                return load_owned(self.model_path, self.dtype, self.device)
            except (CheckpointError, OSError) as exc:
                raise WeightsError(str(exc)) from exc
        tokenizer = default_tokenizer()
        model = build_model(
            self.preset,
            len(tokenizer),
            seed=self.seed,
            dtype=self.dtype,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return model.to(self.device), tokenizer

    async def start(self) -> PreTrainedModel:
        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        model, tokenizer = await asyncio.to_thread(self._build)
        model.eval()
        self.tokenizer = tokenizer
        self.max_model_len = int(model.config.max_position_embeddings)
        self.vocab_size = int(model.config.vocab_size)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.worker = DecodeWorker(self._run_batch, self.max_batch_rows, self.batch_wait_s)
        self.lines[""] = LineModels(model)
        self.initial_checksum = await asyncio.to_thread(weights_checksum, served_tensors(model))
        return model

    async def stage_weights(self, path: str) -> StagedWeights:
        started = time.perf_counter()
        try:
            model, tokenizer = await asyncio.to_thread(load_owned, path, self.dtype, self.device)
        except (CheckpointError, OSError) as exc:
            raise WeightsError(str(exc)) from exc
        config = model.config
        if int(config.vocab_size) != self.vocab_size:
            raise WeightsError(
                f"{path}: vocabulary {config.vocab_size} differs from the serving {self.vocab_size}"
            )
        if int(config.max_position_embeddings) != self.max_model_len:
            raise WeightsError(
                f"{path}: context {config.max_position_embeddings} differs from the serving "
                f"{self.max_model_len}"
            )
        if tokenizer.get_vocab() != self.tokenizer.get_vocab():
            raise WeightsError(
                f"{path}: its tokenizer differs from the serving one (prompts would change meaning)"
            )
        model.eval()
        checksum = await asyncio.to_thread(weights_checksum, served_tensors(model))
        return StagedWeights(
            path, checkpoint_bytes(path), time.perf_counter() - started, payload=model, checksum=checksum
        )

    async def stage_stream(self, stream: Any, receiver: Any, line: str = "") -> StagedWeights:
        started = time.perf_counter()
        held = self.lines.get(line)
        reusable = held.standby if held is not None else None
        if reusable is not None and not self._users.get(id(reusable)):
            standby = reusable
        else:
            # a new line takes the default line's layout; the stream overwrites every tensor
            template = held.serving if held is not None else self.lines[""].serving
            standby = await asyncio.to_thread(copy.deepcopy, template)
        if held is not None:
            held.standby = None  # being overwritten: never handed out again unless it stages whole
        received = await asyncio.to_thread(receiver.receive, stream, served_tensors(standby))
        seconds = time.perf_counter() - started
        return StagedWeights("", received.bytes, seconds, payload=standby, checksum=received.checksum)

    async def activate(self, staged: StagedWeights, line: str = "") -> PreTrainedModel:
        model: PreTrainedModel = staged.payload
        held = self.lines.get(line)
        # only a streamed line receives into its retired copy; a path load reads a fresh one
        standby = held.serving if held is not None and not staged.path else None
        self.lines[line] = LineModels(model, standby)
        return model

    def drop_line(self, line: str) -> None:
        if line:
            self.lines.pop(line, None)  # calls in flight keep their model until they end

    def line_bytes(self, line: str = "") -> int:
        held = self.lines.get(line)
        return model_bytes(held.serving) + model_bytes(held.standby) if held is not None else 0

    def served_dtype(self) -> str:
        held = self.lines.get("")
        return dtype_name(next(held.serving.parameters()).dtype) if held is not None else self.dtype

    # ---- sampling -------------------------------------------------------------------------
    async def generate(self, job: GenerationJob, weights: Any, on_sample: SampleCallback) -> None:
        """Splits the job into parts of at most max_batch_rows sample rows (whole prompts), so the
        KV cache of one large request stays bounded; a sample's random stream depends on its
        prompt index, which the parts keep, so the split does not change any sample."""
        if self.worker is None:
            raise RuntimeError("the transformers backend is not started")
        per_part = max(1, self.max_batch_rows // job.settings.n)
        parts = [
            (start, GenerationJob(job.prompts[start : start + per_part], job.settings, prompt_offset=start))
            for start in range(0, len(job.prompts), per_part)
        ]
        futures = [asyncio.wrap_future(self.worker.submit(weights, part, on_sample)) for _, part in parts]
        self._users[id(weights)] = self._users.get(id(weights), 0) + 1
        try:
            await asyncio.gather(*futures)
        except asyncio.CancelledError:
            for _, part in parts:
                part.cancelled = True  # parts already decoding drop out at their next step
            raise
        finally:
            self._users[id(weights)] -= 1
            if not self._users[id(weights)]:
                del self._users[id(weights)]
            starts = [part.first_token_at for _, part in parts if part.first_token_at is not None]
            job.first_token_at = min(starts, default=None)
            for future in futures:
                future.cancel()

    def _run_batch(self, model: PreTrainedModel, jobs: list[PendingJob], take_more: TakeMore) -> None:
        def request(pending: PendingJob) -> DecodeRequest:
            seed = pending.job.settings.seed
            seed = secrets.randbits(63) if seed is None else seed
            return DecodeRequest(pending.job, pending.on_sample, seed, on_done=pending.finish)

        def more(free_rows: int) -> list[DecodeRequest]:
            return [request(pending) for pending in take_more(free_rows)]

        decode_batch(
            model, self.tokenizer, [request(p) for p in jobs], self.eos_ids, more, self.max_batch_rows
        )

    def queue_depth(self) -> int:
        return self.worker.queued_prompts() if self.worker is not None else 0

    def describe(self) -> dict[str, str]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "preset": "" if self.model_path else self.preset,
            "max_batch_rows": str(self.max_batch_rows),
            "batch_wait_ms": str(self.batch_wait_s * 1000),
            "torch_threads": str(torch.get_num_threads()),
        }

    async def close(self) -> None:
        if self.worker is not None:
            await asyncio.to_thread(self.worker.close)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(i) for i in source)
    return ids
