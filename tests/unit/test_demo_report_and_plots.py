"""The demo's report states the reward models' held-out AUC (ORM per answer, PRM per step) that the
README quotes, and the GRPO plot shows the batch reward and the batch accuracy on separate panels so
neither hides the other (with rule rewards they are nearly the same numbers)."""

from __future__ import annotations

import matplotlib.colors
from mathforge.demo.checks import Check
from mathforge.demo.plots import grpo_figure, plot_grpo
from mathforge.demo.report import render_markdown


def small_report() -> dict:
    curve = [[step, 0.25 + step / 400] for step in range(0, 200, 10)]
    return {
        "seed": 0,
        "profile": "quick",
        "duration_s": 60.0,
        "started": "2026-12-06T22:00:00Z",
        "recall_rounds": [{"round": 1, "kept": 10, "new": 10, "new_share": 1.0, "math_domains": ["a"]}],
        "classifier_service": {"calls": 1},
        "corpus": {"documents": 10, "near_duplicates": 1},
        "reward_models": {
            "labels": {"solutions": 16},
            "eval": {
                "orm": {"auc": 1.0, "accuracy": 0.9375, "count": 16.0},
                "prm": {"auc": 0.93, "accuracy": 0.8, "count": 48.0},
            },
        },
        "held_out_problems": 200,
        "prompt_styles": {"sft": "chat"},
        "accuracy": {"base": 0.0, "sft": 0.36, "rl": 0.495},
        "maj_at_k": {s: {"1": 0.3, "2": 0.3} for s in ("base", "sft", "rl")},
        "pass_at_k": {s: {"1": 0.3, "2": 0.4} for s in ("base", "sft", "rl")},
        "stage_durations_s": {"grpo": 30.0},
        "grpo": {"curves": {"reward_mean": curve, "accuracy": curve}, "held_out": [[0, 0.4], [200, 0.56]]},
    }


def test_report_has_a_reward_model_table_with_the_auc_readme_quotes():
    markdown = render_markdown(small_report(), [Check("rl_beats_sft", True, "+13.5 points")])
    assert "| ORM (answers) | 1.00 | 0.94 | 16 |" in markdown
    assert "| PRM (steps) | 0.93 | 0.80 | 48 |" in markdown


def test_grpo_plot_puts_reward_and_accuracy_on_separate_panels(tmp_path):
    figure = grpo_figure(small_report()["grpo"])
    reward_axis, accuracy_axis = figure.axes
    reward_labels = [
        line.get_label() for line in reward_axis.get_lines() if not line.get_label().startswith("_")
    ]
    accuracy_labels = [
        line.get_label() for line in accuracy_axis.get_lines() if not line.get_label().startswith("_")
    ]
    assert reward_labels == ["batch reward (1-step mean)"]
    assert accuracy_labels == ["batch accuracy (1-step mean)", "held-out greedy accuracy"]
    # Identical numbers, yet each curve is drawn in its own colour on its own axes.
    (reward_line,) = [line for line in reward_axis.get_lines() if line.get_label() in reward_labels]
    batch_accuracy = accuracy_axis.get_lines()[0]
    assert list(reward_line.get_ydata()) == list(batch_accuracy.get_ydata())
    assert matplotlib.colors.to_hex(reward_line.get_color()) != matplotlib.colors.to_hex(
        batch_accuracy.get_color()
    )
    path = plot_grpo(small_report()["grpo"], tmp_path / "grpo.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
