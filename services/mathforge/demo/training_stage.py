"""Stage 3: build the demo's tokenizer, pretrain a tiny model on the mined math corpus mixed with
worked problems, code-like and general text (DeepSeekMath §2.3), then SFT it on chain-of-thought word
problems (DeepSeekMath §3). Both run the training entrypoints (mathforge.training.pretrain / .sft) as
child processes, the way torchrun would start them.

    models = pretrain_and_sft(config, clean_corpus, mined.other_texts, run_dir, console)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathforge.corpus import iter_records, write_records_atomic
from mathforge.demo.children import run_stage_process
from mathforge.demo.config import DemoConfig
from mathforge.demo.console import Console
from mathforge.evaluator.benchmarks import BenchmarkItem
from mathforge.evaluator.prompts import PROMPT_STYLES, build_prompt
from mathforge.models.tokenizer import build_tokenizer
from mathforge.training.sft_data import synthetic_conversations
from mathforge.training.synthetic_math import Problem, generate_problems

WORKED_PROBLEMS = 2000
WEB_SOURCES = ("math_corpus", "general")


@dataclass
class TrainedModels:
    tokenizer: Path
    base: Path
    sft: Path
    losses: dict[str, list[tuple[int, float]]]  # stage -> (step, loss)


def step_losses(events: list[dict[str, Any]], key: str = "loss") -> list[tuple[int, float]]:
    return [(int(e["step"]), float(e[key])) for e in events if e.get("event") == "step" and key in e]


def worked_problems(seed: int) -> list[Problem]:
    """Training-split word problems of one and two operations, half each."""
    half = WORKED_PROBLEMS // 2
    return generate_problems(half, seed=seed, difficulty=1) + generate_problems(half, seed=seed, difficulty=2)


def worked_problem(problem: Problem, index: int) -> str:
    """A worked problem as pretraining text, alternately in the two plain-text layouts the
    evaluator prompts with (few-shot "Question: / Answer:" and zero-shot "User: / Assistant:"),
    so the base model has seen both (DeepSeekMath §3.2)."""
    item = BenchmarkItem("worked", str(index), problem.question, problem.answer)
    style = PROMPT_STYLES[index % 2]
    if style == "few_shot":
        return f"Question: {problem.question}\nAnswer: {problem.solution}"
    return f"{build_prompt(item, style)} {problem.solution}"


def write_sources(
    config: DemoConfig, corpus: list[dict[str, str]], general: list[str], data_dir: Path
) -> dict[str, dict[str, Any]]:
    """The mixture's sources as shard files; the pretraining `data.sources` mapping."""
    pretrain = config.pretrain
    problems = generate_problems(pretrain.code_documents, seed=config.seed + 1, difficulty=2)
    files = {
        "math_corpus": [{"text": d["text"]} for d in corpus],
        "worked_problems": [
            {"text": worked_problem(p, i)} for i, p in enumerate(worked_problems(config.seed))
        ],
        "code": [{"text": f"# {p.question}\n{p.program}\n"} for p in problems],
        "general": [{"text": text} for text in general[: pretrain.general_documents]],
    }
    unknown = sorted(set(pretrain.weights) - set(files))
    if unknown:
        raise ValueError(f"pretrain.weights names unknown sources {unknown}; known: {sorted(files)}")
    sources = {}
    for name, records in files.items():
        weight = pretrain.weights.get(name, 0.0)
        if weight <= 0 or not records:
            continue
        path = data_dir / f"{name}.jsonl"
        write_records_atomic(path, records)
        sources[name] = {"path": str(path), "weight": weight}
    return sources


def tokenizer_texts(config: DemoConfig, sources: dict[str, dict[str, Any]]) -> list[str]:
    """What the tokenizer learns from: the SFT conversations (as the SFT stage would train its own
    tokenizer), the worked problems and code, and `tokenizer_web_documents` of each web source, so
    that the small vocabulary's merges go to the words and numbers the model reasons with (with web
    text in the mix, 2-digit numbers stay split into digits and the tiny model's arithmetic fails)."""
    sft = config.sft
    conversations = synthetic_conversations(
        int(sft.setting("data.synthetic_problems", 0)),
        config.seed,
        int(sft.setting("data.synthetic_difficulty", 1)),
        list(sft.setting("data.styles", ["cot"])),
    )
    texts = [m["content"] for c in conversations for m in c]
    for name, spec in sources.items():
        limit = config.pretrain.tokenizer_web_documents if name in WEB_SOURCES else None
        texts += [str(r["text"]) for r in _read(Path(spec["path"]))[:limit]]
    return texts


def pretrain_and_sft(
    config: DemoConfig, corpus: list[dict[str, str]], general: list[str], run_dir: Path, console: Console
) -> TrainedModels:
    sources = write_sources(config, corpus, general, run_dir / "data")
    texts = tokenizer_texts(config, sources)
    tokenizer_dir = run_dir / "tokenizer"
    tokenizer = build_tokenizer(texts, vocab_size=config.pretrain.vocab_size, out_dir=tokenizer_dir)
    console.line(f"   tokenizer: byte-level BPE, {len(tokenizer)} tokens, trained on {len(texts)} documents")
    console.table(
        ["source", "documents", "weight"], [[n, _count(s["path"]), s["weight"]] for n, s in sources.items()]
    )
    losses: dict[str, list[tuple[int, float]]] = {}
    pretrain_args = config.pretrain.run.arguments(
        {
            "seed": config.seed,
            "out_dir": str(run_dir / "pretrain"),
            "model.tokenizer": str(tokenizer_dir),
            "model.vocab_size": len(tokenizer),
            "data.sources": sources,
            "metrics.progress_bar": "off",
        }
    )
    events = run_stage_process(
        "mathforge.training.pretrain",
        pretrain_args,
        run_dir / "logs" / "pretrain.log",
        console,
        "pretrain",
        config.pretrain.run.steps(),
    )
    losses["pretrain"] = step_losses(events)
    base = run_dir / "pretrain" / "final"
    sft_args = config.sft.arguments(
        {
            "seed": config.seed,
            "out_dir": str(run_dir / "sft"),
            "model.init_from": str(base),
            "metrics.progress_bar": "off",
        }
    )
    events = run_stage_process(
        "mathforge.training.sft", sft_args, run_dir / "logs" / "sft.log", console, "sft", config.sft.steps()
    )
    losses["sft"] = step_losses(events)
    for stage, points in losses.items():
        if points:
            console.line(f"   {stage}: {len(points)} steps, loss {points[0][1]:.3f} -> {points[-1][1]:.3f}")
    return TrainedModels(tokenizer_dir, base, run_dir / "sft" / "final", losses)


def _read(path: Path) -> list[dict[str, Any]]:
    return list(iter_records(path))


def _count(path: str) -> int:
    return len(_read(Path(path)))
