"""The paper-rl experiment's report: the paper's three views with the spread over seeds, and which of
its findings hold (DeepSeekMath §5.2).

    report = build_report(curves, k_metrics, profile_name)      # a JSON-able dict
    write_report(report, out_dir)                               # report.json, report.md, fig5/6/7 PNGs

The trainer's held-out problems depend on the run's seed, so runs of one seed share them and runs of
different seeds do not: findings compare each method's gain over its own start (accuracy after the
last update minus before the first), not raw accuracies. A finding "holds" when the difference of
the mean gains exceeds the larger of the two methods' seed standard deviations (with one seed there
is no spread, and the finding is marked as such).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from mathforge.models.checkpoint import write_text_atomic

LABELS = {
    "rft": "RFT",
    "online_rft": "Online RFT",
    "grpo_outcome": "GRPO (outcome)",
    "grpo_process": "GRPO (process)",
    "iterative_grpo": "Iterative GRPO (process)",
}
FINDINGS = [
    ("online sampling beats offline", "online_rft", "rft"),
    ("GRPO's graded coefficient beats RFT's 0/1", "grpo_outcome", "rft"),
    ("GRPO (outcome) beats Online RFT", "grpo_outcome", "online_rft"),
    ("process supervision beats outcome supervision", "grpo_process", "grpo_outcome"),
    ("iterative RL helps", "iterative_grpo", "grpo_process"),
]


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def eval_curve(events: list[dict[str, Any]]) -> dict[int, float]:
    """Held-out greedy accuracy by step from a run's events (a resumed run's later value wins)."""
    return {int(e["step"]): float(e["held_out_accuracy"]) for e in events if e.get("event") == "eval"}


def build_report(
    curves: dict[str, dict[int, dict[int, float]]], k_metrics: dict[str, dict[str, float]], profile: str
) -> dict[str, Any]:
    """curves: method -> seed -> step -> accuracy; k_metrics: model name -> evaluator metrics."""
    methods: dict[str, Any] = {}
    for method, seeds in curves.items():
        steps = sorted(set.intersection(*(set(c) for c in seeds.values()))) if seeds else []
        by_step = {step: spread([c[step] for c in seeds.values()]) for step in steps}
        gains = [c[steps[-1]] - c[steps[0]] for c in seeds.values()] if len(steps) > 1 else []
        methods[method] = {
            "seeds": sorted(seeds),
            "by_step": by_step,
            "final": by_step[steps[-1]] if steps else None,
            "gain": spread(gains) if gains else None,
        }
    findings = []
    for claim, better, worse in FINDINGS:
        if better not in methods or worse not in methods or not methods[better]["gain"]:
            continue
        a, b = methods[better]["gain"], methods[worse]["gain"]
        margin = max(a["std"], b["std"])
        findings.append(
            {
                "finding": claim,
                "better": better,
                "worse": worse,
                "difference": a["mean"] - b["mean"],
                "spread": margin,
                "holds": a["mean"] - b["mean"] > margin if a["n"] > 1 and b["n"] > 1 else None,
            }
        )
    k_view = _k_view(k_metrics)
    if "finding" in k_view:  # a profile without GRPO (outcome) has no RL model to sample
        findings.append(k_view["finding"])
    return {"profile": profile, "methods": methods, "k": k_view, "findings": findings}


def _k_view(k_metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    if "sft" not in k_metrics:
        return {}
    rl = [m for name, m in k_metrics.items() if name.startswith("rl-")]
    ks = sorted(int(key.split("@")[1]) for key in k_metrics["sft"] if key.startswith("pass@"))
    view: dict[str, Any] = {"ks": ks, "sft": {}, "rl": {}}
    for kind in ("maj", "pass"):
        view["sft"][kind] = {k: k_metrics["sft"][f"{kind}@{k}"] for k in ks}
        if rl:
            view["rl"][kind] = {k: spread([m[f"{kind}@{k}"] for m in rl]) for k in ks}
    k = 16 if 16 in ks else ks[-1]
    if rl:
        maj_gain = view["rl"]["maj"][k]["mean"] - view["sft"]["maj"][k]
        pass_gain = view["rl"]["pass"][k]["mean"] - view["sft"]["pass"][k]
        view["finding"] = {
            "finding": f"RL raises maj@{k} more than pass@{k}",
            "maj_gain": maj_gain,
            "pass_gain": pass_gain,
            "spread": max(view["rl"]["maj"][k]["std"], view["rl"]["pass"][k]["std"]),
            "holds": maj_gain > pass_gain,
        }
    return view


def _verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does not reproduce", None: "one seed: no spread to judge by"}[holds]


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# paper-rl ({report['profile']} profile)", "", "## Held-out greedy accuracy (Figure 5)", ""]
    lines += [
        "| method | seeds | final accuracy (mean ± std) | min..max | gain over its start (mean ± std) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, view in report["methods"].items():
        final = view["final"]
        if final:
            lines.append(
                f"| {LABELS.get(method, method)} | {len(view['seeds'])} "
                f"| {final['mean']:.3f} ± {final['std']:.3f} "
                f"| {final['min']:.3f}..{final['max']:.3f} "
                + (f"| {view['gain']['mean']:+.3f} ± {view['gain']['std']:.3f} |" if view["gain"] else "| |")
            )
    k = report.get("k") or {}
    if k.get("rl"):
        lines += ["", "## maj@k and pass@k before and after RL (Figure 7)", ""]
        lines += ["| k | SFT maj@k | RL maj@k | SFT pass@k | RL pass@k |", "| --- | --- | --- | --- | --- |"]
        for kk in k["ks"]:
            rl_maj, rl_pass = k["rl"]["maj"][kk], k["rl"]["pass"][kk]
            lines.append(
                f"| {kk} | {k['sft']['maj'][kk]:.3f} | {rl_maj['mean']:.3f} ± {rl_maj['std']:.3f} "
                f"| {k['sft']['pass'][kk]:.3f} | {rl_pass['mean']:.3f} ± {rl_pass['std']:.3f} |"
            )
    lines += ["", "## Findings", ""]
    for f in report["findings"]:
        if "difference" in f:
            detail = f"difference of mean gains {f['difference']:+.3f}, seed spread {f['spread']:.3f}"
        else:
            detail = f"maj gain {f['maj_gain']:+.3f}, pass gain {f['pass_gain']:+.3f}"
        lines.append(f"- {f['finding']}: **{_verdict(f['holds'])}** ({detail})")
    return "\n".join(lines) + "\n"


def _band(axes: Any, view: dict[str, Any], label: str) -> None:
    steps = sorted(view["by_step"])
    mean = [view["by_step"][s]["mean"] for s in steps]
    std = [view["by_step"][s]["std"] for s in steps]
    axes.plot(steps, mean, marker="o", label=label)
    axes.fill_between(
        steps,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=True)],
        alpha=0.2,
    )


def plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    views = [
        ("fig5-methods.png", list(report["methods"]), "Figure 5: every method"),
        ("fig6-iterative.png", ["grpo_process", "iterative_grpo"], "Figure 6: iterative RL"),
    ]
    for name, methods, title in views:
        if not any(report["methods"].get(m, {}).get("by_step") for m in methods):
            continue  # e.g. Figure 6 of a profile without the process-supervision runs
        figure, axes = plt.subplots(figsize=(6, 4))
        for method in methods:
            if method in report["methods"] and report["methods"][method]["by_step"]:
                _band(axes, report["methods"][method], LABELS.get(method, method))
        axes.set(title=title, xlabel="policy updates", ylabel="held-out greedy accuracy")
        axes.legend()
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=100)
        plt.close(figure)
        written.append(out_dir / name)
    k = report.get("k") or {}
    if k.get("rl"):
        figure, axes = plt.subplots(figsize=(6, 4))
        for kind, style in (("maj", "-"), ("pass", "--")):
            axes.plot(k["ks"], [k["sft"][kind][x] for x in k["ks"]], style, marker="o", label=f"SFT {kind}@k")
            axes.plot(
                k["ks"], [k["rl"][kind][x]["mean"] for x in k["ks"]], style, marker="s", label=f"RL {kind}@k"
            )
        axes.set(title="Figure 7: maj@k and pass@k", xlabel="k", ylabel="accuracy")
        axes.set_xscale("log", base=2)
        axes.legend()
        figure.tight_layout()
        figure.savefig(out_dir / "fig7-k.png", dpi=100)
        plt.close(figure)
        written.append(out_dir / "fig7-k.png")
    return written


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=1))
    write_text_atomic(out_dir / "report.md", markdown(report))
    return [out_dir / "report.json", out_dir / "report.md", *plots(report, out_dir)]
