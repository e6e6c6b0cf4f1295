"""The demo's report: report.json (the numbers) and report.md (tables, checks and plots), written
atomically under runs/<timestamp>/.

    write_report(report, checks, run_dir)    # -> run_dir/report.json, run_dir/report.md
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mathforge.demo.checks import Check, tally
from mathforge.demo.console import format_cell
from mathforge.demo.plots import PLOT_FILES
from mathforge.evaluator.metrics import DEFAULT_MAJ, MAJ_DEFINITIONS
from mathforge.models.checkpoint import write_text_atomic


def _markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def _rounds_rows(rounds: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["round"],
            r["kept"],
            r["new"],
            r["new_share"],
            len(r["math_domains"]),
            r.get("recall", 0.0),
            r.get("precision", 0.0),
        ]
        for r in rounds
    ]


REWARD_UNITS = {"orm": "answers", "prm": "steps"}


def _reward_table(evals: dict[str, dict[str, float]]) -> str:
    """ORM AUC per answer, PRM AUC per step, with the accuracy of thresholding at 0.5."""
    rows = [
        [
            f"{kind.upper()} ({REWARD_UNITS.get(kind, 'items')})",
            f"{scores['auc']:.2f}" if "auc" in scores else "-",
            f"{scores['accuracy']:.2f}" if "accuracy" in scores else "-",
            int(scores.get("count", 0)),
        ]
        for kind, scores in evals.items()
    ]
    if not rows:
        return "(no held-out evaluation ran)"
    return _markdown_table(["model", "held-out AUC", "accuracy at 0.5", "count"], rows)


def render_markdown(report: dict[str, Any], checks: list[Check]) -> str:
    ks = sorted(next(iter(report["maj_at_k"].values())), key=int)
    parts = [
        "# mathforge demo report",
        "",
        f"Seed {report['seed']}, profile `{report['profile']}`, {report['duration_s']:.0f} s in all "
        f"({report['started']}).",
        "",
        f"## Checks: {tally(checks)}",
        "",
        *(f"- {c.verdict} `{c.name}`: {c.detail}" for c in checks),
        "",
        "## 1. Recall rounds",
        "",
        _markdown_table(
            ["round", "kept", "new", "new_share", "math_domains", "recall", "precision"],
            _rounds_rows(report["recall_rounds"]),
        ),
        "",
        f"Mined through the classifier service: {json.dumps(report['classifier_service'])}",
        "",
        "![recall](recall.png)",
        "",
        "## 2. Dedup and decontamination",
        "",
        _markdown_table(list(report["corpus"]), [list(report["corpus"].values())]),
        "",
        "## 3-5. Training",
        "",
        "![losses](losses.png)",
        "",
        f"Reward-model labels: {json.dumps(report['reward_models']['labels'])}",
        "",
        "Reward models on held-out answers they were not trained on:",
        "",
        _reward_table(report["reward_models"]["eval"]),
        "",
        "![grpo](grpo.png)",
        "",
        "## 6. Evaluation",
        "",
        f"{report['held_out_problems']} held-out problems; "
        f"prompt styles {json.dumps(report['prompt_styles'])}.",
        "",
        _markdown_table(
            ["model", "acc", *(f"maj@{k}" for k in ks), *(f"pass@{k}" for k in ks)],
            [
                [
                    stage,
                    report["accuracy"][stage],
                    *(report["maj_at_k"][stage][k] for k in ks),
                    *(report["pass_at_k"][stage][k] for k in ks),
                ]
                for stage in report["accuracy"]
            ],
        ),
        "",
        f"maj@k is {MAJ_DEFINITIONS[DEFAULT_MAJ]}; pass@k is the unbiased estimator over all samples.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "![maj and pass at k](k_curves.png)",
        "",
        "## Durations",
        "",
        _markdown_table(
            ["stage", "seconds"],
            [[key, f"{seconds:.0f}"] for key, seconds in report["stage_durations_s"].items()],
        ),
        "",
        f"Plots: {', '.join(PLOT_FILES)}.",
        "",
    ]
    return "\n".join(parts)


def write_report(report: dict[str, Any], checks: list[Check], run_dir: Path) -> tuple[Path, Path]:
    report = {**report, "checks": [c.as_dict() for c in checks]}
    json_path, md_path = run_dir / "report.json", run_dir / "report.md"
    write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(md_path, render_markdown(report, checks))
    return json_path, md_path
