"""The paper-rl report: spreads over seeds, findings judged on each run's gain over its own start,
and a finding that does not reproduce reported as such."""

from __future__ import annotations

import pytest
from mathforge.experiments.paper_rl import load_profile
from mathforge.experiments.report import build_report, markdown, plots, spread


def test_spread_is_the_sample_standard_deviation():
    got = spread([0.2, 0.4, 0.6])
    assert got["mean"] == pytest.approx(0.4) and got["std"] == pytest.approx(0.2)
    assert spread([0.3])["std"] == 0.0


def test_findings_compare_gains_over_each_runs_start():
    # seed 1's held-out problems are harder: raw accuracies overlap, gains do not
    curves = {
        "rft": {0: {0: 0.40, 10: 0.50}, 1: {0: 0.30, 10: 0.35}},
        "online_rft": {0: {0: 0.40, 10: 0.60}, 1: {0: 0.30, 10: 0.50}},
        "grpo_outcome": {0: {0: 0.40, 10: 0.40}, 1: {0: 0.30, 10: 0.40}},
    }
    k = {
        "sft": {"maj@1": 0.3, "pass@1": 0.3, "maj@2": 0.3, "pass@2": 0.5},
        "rl-seed0": {"maj@1": 0.5, "pass@1": 0.5, "maj@2": 0.5, "pass@2": 0.55},
        "rl-seed1": {"maj@1": 0.4, "pass@1": 0.4, "maj@2": 0.4, "pass@2": 0.45},
    }
    report = build_report(curves, k, "test")
    found = {f["finding"]: f for f in report["findings"]}
    online = found["online sampling beats offline"]
    assert online["difference"] == pytest.approx(0.125) and online["spread"] == pytest.approx(
        0.0353553, abs=1e-6
    )
    assert online["holds"] is True
    graded = found["GRPO's graded coefficient beats RFT's 0/1"]
    assert graded["difference"] == pytest.approx(-0.025) and graded["holds"] is False
    majority = found["RL raises maj@2 more than pass@2"]  # 16 is not among the ks: the largest k
    assert majority["maj_gain"] == pytest.approx(0.15) and majority["pass_gain"] == pytest.approx(0.0)
    assert majority["holds"] is True
    text = markdown(report)
    assert "**does not reproduce**" in text and "+0.075 ± 0.035" in text


def test_a_profile_without_an_rl_model_reports_what_it_ran(tmp_path):
    # RFT and Online RFT only: the SFT policy's maj@k/pass@k exist, no GRPO (outcome) model to compare
    curves = {
        "rft": {0: {0: 0.4, 2: 0.5}, 1: {0: 0.3, 2: 0.4}},
        "online_rft": {0: {0: 0.4, 2: 0.6}, 1: {0: 0.3, 2: 0.4}},
    }
    report = build_report(curves, {"sft": {"maj@1": 0.3, "pass@1": 0.3}}, "extended")
    assert [f["finding"] for f in report["findings"]] == ["online sampling beats offline"]
    assert "maj@" not in markdown(report)
    assert [p.name for p in plots(report, tmp_path)] == ["fig5-methods.png"]


def test_one_seed_has_no_spread_to_judge_by():
    curves = {"rft": {0: {0: 0.4, 2: 0.5}}, "online_rft": {0: {0: 0.4, 2: 0.6}}}
    (finding,) = build_report(curves, {}, "quick")["findings"]
    assert finding["holds"] is None


def test_profiles_of_the_shipped_config_load_and_bad_ones_are_named(tmp_path):
    quick = load_profile("configs/tiny/experiments/paper-rl.yaml", "quick")
    assert quick.steps >= 1 and len(quick.methods) == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  x: {methods: [ppo]}\n")
    with pytest.raises(ValueError, match="unknown methods"):
        load_profile(bad, "x")
    with pytest.raises(ValueError, match="no profile 'y'"):
        load_profile(bad, "y")
