"""The report's PNG plots (matplotlib, Agg backend: no display needed).

files = write_plots(report, out_dir)   # recall.png, losses.png, grpo.png, accuracy.png, k_curves.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOT_FILES = ("recall.png", "losses.png", "grpo.png", "accuracy.png", "k_curves.png")


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    temporary.replace(path)
    return path


def plot_recall(rounds: list[dict[str, Any]], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5, 3.5))
    numbers = [r["round"] for r in rounds]
    axis.plot(numbers, [r.get("recall", 0.0) for r in rounds], marker="o", label="recall")
    axis.plot(numbers, [r.get("precision", 0.0) for r in rounds], marker="s", label="precision")
    axis.plot(numbers, [r["new_share"] for r in rounds], marker="^", linestyle=":", label="new share")
    axis.set(xlabel="recall round", ylabel="fraction", ylim=(0, 1.05), title="Math recall by round")
    axis.set_xticks(numbers)
    axis.legend()
    return _save(figure, path)


def plot_losses(losses: dict[str, list[list[float]]], path: Path) -> Path:
    stages = [s for s, points in losses.items() if points]
    figure, axes = plt.subplots(
        1, max(1, len(stages)), figsize=(3.2 * max(1, len(stages)), 3.2), squeeze=False
    )
    for axis, stage in zip(axes[0], stages, strict=False):
        steps, values = zip(*losses[stage], strict=True)
        axis.plot(steps, values)
        axis.set(title=stage, xlabel="step", ylabel="loss")
    return _save(figure, path)


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each value and the `window` - 1 before it (fewer at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def grpo_figure(grpo: dict[str, Any]) -> Any:
    """Two panels over the GRPO steps: the batch reward on top, accuracies below. With rule-based
    rewards the batch reward and the batch accuracy are nearly the same numbers, so on one axis the
    second line hides the first."""
    figure, (reward_axis, accuracy_axis) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for axis, name, label, style in (
        (reward_axis, "reward_mean", "batch reward", {"color": "#4c72b0"}),
        (accuracy_axis, "accuracy", "batch accuracy", {"color": "#dd8452", "linestyle": "-"}),
    ):
        points = grpo["curves"].get(name) or []
        if points:
            steps, values = zip(*points, strict=True)
            window = max(1, len(values) // 20)
            axis.plot(
                steps, moving_average(list(values), window), label=f"{label} ({window}-step mean)", **style
            )
    if grpo.get("held_out"):
        steps, values = zip(*grpo["held_out"], strict=True)
        accuracy_axis.plot(steps, values, marker="o", color="#55a868", label="held-out greedy accuracy")
    for axis in (reward_axis, accuracy_axis):
        for it in grpo.get("iterations", []):
            axis.axvline(it["step"], color="grey", linestyle="--", linewidth=1)
        if axis.get_lines():
            axis.legend(fontsize=8)
    reward_axis.set(ylabel="reward", title="GRPO reward and accuracy (dashed: new iteration)")
    accuracy_axis.set(xlabel="GRPO step", ylabel="accuracy")
    return figure


def plot_grpo(grpo: dict[str, Any], path: Path) -> Path:
    return _save(grpo_figure(grpo), path)


def plot_accuracy(accuracy: dict[str, float], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(4.5, 3.5))
    stages = list(accuracy)
    bars = axis.bar(
        stages, [accuracy[s] for s in stages], color=["#999999", "#4c72b0", "#dd8452"][: len(stages)]
    )
    axis.bar_label(bars, fmt="%.3f")
    axis.set(ylabel="greedy accuracy", ylim=(0, 1), title="Held-out accuracy by stage")
    return _save(figure, path)


def plot_k_curves(maj: dict[str, dict[str, float]], passed: dict[str, dict[str, float]], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(6, 4))
    for stage in maj:
        ks = sorted(maj[stage], key=int)
        line = axis.plot(
            [int(k) for k in ks], [maj[stage][k] for k in ks], marker="o", label=f"{stage} maj@k"
        )
        axis.plot(
            [int(k) for k in ks],
            [passed[stage][k] for k in ks],
            marker="s",
            linestyle="--",
            color=line[0].get_color(),
            label=f"{stage} pass@k",
        )
    axis.set_xscale("log", base=2)
    axis.set(xlabel="k", ylabel="accuracy", ylim=(0, 1.05), title="maj@k and pass@k")
    axis.legend(fontsize=8, ncol=2)
    return _save(figure, path)


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every plot of the report; the file names are PLOT_FILES."""
    return [
        plot_recall(report["recall_rounds"], out_dir / PLOT_FILES[0]),
        plot_losses(report["losses"], out_dir / PLOT_FILES[1]),
        plot_grpo(report["grpo"], out_dir / PLOT_FILES[2]),
        plot_accuracy(report["accuracy"], out_dir / PLOT_FILES[3]),
        plot_k_curves(report["maj_at_k"], report["pass_at_k"], out_dir / PLOT_FILES[4]),
    ]
