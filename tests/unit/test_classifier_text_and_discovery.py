"""Text preparation shared by training and scoring, and domain discovery with approvals."""

from __future__ import annotations

from pathlib import Path

import pytest
from mathforge.classifier.discovery import (
    add_proposals,
    discover_domains,
    read_approvals,
    under_prefix,
    url_prefix,
)
from mathforge.classifier.text import prepare_text


def test_prepare_text_makes_one_lowercase_line_of_tokens() -> None:
    prepared = prepare_text("Let $X^2+1$ be\nprime.\r\n\tQED")
    assert "\n" not in prepared and "\t" not in prepared
    assert prepared == "let $ x ^ 2 + 1 $ be prime . qed"


def test_prepare_text_keeps_latex_commands_and_splits_han() -> None:
    assert prepare_text(r"\frac{a}{b}") == r"\frac { a } { b }"
    assert prepare_text("已知函数") == "已 知 函 数"


def test_prepare_text_defuses_label_markers_and_truncates() -> None:
    assert "__label__" not in prepare_text("x __label__math y")
    assert prepare_text("abcdef", max_chars=3) == "abc"
    assert prepare_text("   \n ") == ""


def test_url_prefix_and_under_prefix_respect_segment_boundaries() -> None:
    assert url_prefix("https://WWW.Site.example/questions/12/slug") == (
        "site.example",
        "site.example/questions",
    )
    assert url_prefix("https://site.example/a/b/c", depth=2)[1] == "site.example/a/b"
    assert under_prefix("https://site.example/questions/1", "site.example/questions")
    assert not under_prefix("https://site.example/questionsabc/1", "site.example/questions")
    assert not under_prefix("https://other.example/questions/1", "site.example/questions")


def _pages(domain: str, path: str, total: int, collected: int) -> list[tuple[str, bool]]:
    return [(f"https://{domain}/{path}/{i}", i < collected) for i in range(total)]


def test_domains_over_ten_percent_are_flagged_and_math_paths_proposed() -> None:
    pages = (
        _pages("qa.example", "questions", 100, 40)
        + _pages("qa.example", "users", 50, 1)
        + _pages("news.example", "sport", 200, 20)
        + _pages("shop.example", "p", 100, 0)
    )
    report = discover_domains(pages, domain_share=0.10, min_prefix_pages=5, min_prefix_share=0.2)
    assert report.math_domains == ["qa.example"]  # news: exactly 10% is not "more than 10%"
    assert [p.prefix for p in report.proposals] == ["qa.example/questions"]
    qa = next(d for d in report.domains if d.domain == "qa.example")
    assert [p.prefix for p in qa.prefixes] == ["qa.example/questions", "qa.example/users"]


def _proposal_report():
    return discover_domains(_pages("qa.example", "questions", 20, 10), min_prefix_pages=1)


def test_proposals_wait_for_review_then_decisions_stick(tmp_path: Path) -> None:
    path = tmp_path / "approvals.txt"
    approvals = add_proposals(path, 1, _proposal_report().proposals, auto_approve=False)
    assert approvals.pending == {"qa.example/questions"} and not approvals.approved
    assert "? qa.example/questions" in path.read_text()
    path.write_text(path.read_text().replace("? ", "- ") + "+ qa.example/extra/\n")
    again = add_proposals(path, 2, _proposal_report().proposals, auto_approve=False)
    assert again.rejected == {"qa.example/questions"} and again.approved == {"qa.example/extra"}
    assert not again.pending
    assert path.read_text().count("qa.example/questions") == 1


def test_auto_approve_marks_proposals_approved(tmp_path: Path) -> None:
    approvals = add_proposals(tmp_path / "a.txt", 1, _proposal_report().proposals, auto_approve=True)
    assert approvals.approved == {"qa.example/questions"}


def test_malformed_approvals_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "approvals.txt"
    path.write_text("+ ok.example/a\napprove this one\n")
    with pytest.raises(ValueError, match=r"approvals.txt:2: expected"):
        read_approvals(path)


def test_a_path_is_proposed_only_when_richer_than_its_domain() -> None:
    pages = _pages("blog.example", "posts", 100, 16) + _pages("blog.example", "users", 100, 11)
    report = discover_domains(pages, domain_share=0.10, min_prefix_pages=5, min_prefix_share=0.1)
    assert report.math_domains == ["blog.example"]  # 27 of 200 collected
    assert [p.prefix for p in report.proposals] == ["blog.example/posts"]  # users: 11% < the domain's 13.5%
