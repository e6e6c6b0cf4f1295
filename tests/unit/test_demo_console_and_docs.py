"""What the demo says about itself: docs/demo.md's configuration table gives the values the full
profile runs with, and stage 4's console line shows counts as integers."""

from __future__ import annotations

import re
from pathlib import Path

from mathforge.demo.config import load_demo_config
from mathforge.demo.reward_stage import eval_scores, shown_scores

REPO = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"`(\w+)` (-?[0-9][0-9.]*|[\w./-]+/[\w./-]+)(?=,| \||$)")


def documented_values() -> dict[tuple[str, str], str]:
    """(section, field) -> the value docs/demo.md's configuration table gives for it."""
    text = (REPO / "docs" / "demo.md").read_text()
    section_text = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    values = {}
    for row in [line for line in section_text.splitlines() if line.startswith("| `")]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        section = cells[0].strip("`")
        for field, value in ENTRY.findall(cells[-1]):
            values[(section, field)] = value
    return values


def test_the_configuration_table_gives_what_the_full_profile_runs_with():
    config = load_demo_config(REPO / "configs" / "tiny" / "demo.yaml")
    documented = documented_values()
    wanted = {("reward", "questions"), ("reward", "shepherd_samples"), ("eval", "max_tokens")}
    assert wanted <= set(documented)
    assert len(documented) >= 20  # every number and path of the table is compared
    for (section, field), shown in documented.items():
        actual = getattr(getattr(config, section), field)
        expected = float(actual) if isinstance(actual, int | float) else actual
        found = float(shown) if isinstance(actual, int | float) else shown
        assert found == expected, f"docs/demo.md: {section}.{field} is {shown}, the config runs {actual}"


def test_stage_4_shows_counts_as_integers_and_rates_to_three_decimals():
    event = {"event": "eval", "time": 17.5, "step": 30, "auc": 0.90417, "accuracy": 0.8125, "count": 16}
    scores = eval_scores(event)
    assert scores == {"auc": 0.90417, "accuracy": 0.8125, "count": 16}
    assert shown_scores(scores) == "accuracy 0.812, auc 0.904, count 16"
