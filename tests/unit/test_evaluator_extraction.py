"""Final-answer extraction: every format in use, nesting, box choice, fallback switch."""

from __future__ import annotations

import pytest
from mathforge.evaluator.extraction import extract_answer, extract_gold, find_boxes, looks_bare
from mathforge.evaluator.policy import GradingPolicy

CASES = [
    ("so $\\boxed{42}$.", "42", "boxed"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed"),
    ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}", "boxed"),
    ("deep \\boxed{{{a}}+\\{b\\}}", "{{a}}+\\{b\\}", "boxed"),
    ("\\fbox{7}", "7", "boxed"),
    ("\\boxed 5 is it", "5", "boxed"),
    ("first \\boxed{1} then \\boxed{2}", "1, 2", "boxes"),  # several distinct boxes: one answer
    ("\\boxed{2}, so again \\boxed{ 2 }", "2", "boxed"),  # a box repeated counts once
    ("\\boxed{\\frac12}, that is \\boxed{0.5}.", "0.5", "boxed"),  # so does a value boxed again
    ("\\boxed {  x+1 }", "x+1", "boxed"),
    ("so \\boxed{9}.<|im_end|>\n<|endoftext|>", "9", "boxed"),  # chat-template tokens cut first
    ("so \\boxed{\\frac{2}{3}", "\\frac{2}{3}", "boxed"),  # a box left open at the end
    ("Answer $ 17 $", "17", "the_answer_is"),
    ("**Final Answer:** $x = -4$", "x = -4", "the_answer_is"),
    ("3:00 p.m.", "3:00 p.m", "bare"),
    ("Simplifying, we obtain \\( -\\tfrac{7}{2} \\).", "-\\tfrac{7}{2}", "closing_math"),
    ("We have $x = 3$ and so 5 apples remain", "5", "last_number"),  # math with words after it
    (
        "Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.",
        "\\frac{3}{4}",
        "final_answer",
    ),
    ("Final Answer: The final answer is 12. I hope it is correct.", "12", "final_answer"),
    ("Thus the answer is 17.", "17", "the_answer_is"),
    ("The answer is: $x = 3$", "x = 3", "the_answer_is"),
    ("So the final answer is (2, 3).", "(2, 3)", "the_answer_is"),
    ("The answer is 3.5.", "3.5", "the_answer_is"),
    ("First 2. Then the answer is 5\n\nCheck: 5 works", "5", "the_answer_is"),
    ("She earns 18 dollars.\n#### 18", "18", "gsm8k"),
    ("#### 1,234", "1234", "gsm8k"),
    ("所以答案是18个。", "18个", "the_answer_is"),
    ("答案为：3/8", "3/8", "the_answer_is"),
    ("答：一共有45个桃。", "一共有45个桃", "the_answer_is"),
    ("I think 2 and 3 and finally 11 apples remain over there today", "11", "last_number"),
    ("x = 2", "x = 2", "bare"),
    ("\\frac{1}{2}", "\\frac{1}{2}", "bare"),
    ("$5$", "5", "bare"),
    ("18个", "18个", "bare"),
    ("3qr + 6q - 15r -30", "3qr + 6q - 15r -30", "bare"),
    ("so 32", "32", "last_number"),
    ("平行六面体的对角线交于一点", "平行六面体的对角线交于一点", "bare"),
    ("", "", "none"),
    ("no numbers in this sentence at all, friends", "", "none"),
]


@pytest.mark.parametrize(("text", "answer", "method"), CASES)
def test_extract_answer_finds_each_format(text: str, answer: str, method: str) -> None:
    found = extract_answer(text)
    assert (found.answer, found.method) == (answer, method)


@pytest.mark.parametrize(
    ("box", "answer"), [("auto", "1, 2, 3"), ("last", "2"), ("first", "1"), ("all", "1, 2, 3, 2")]
)
def test_box_policy_chooses_which_box_counts(box: str, answer: str) -> None:
    text = "\\boxed{1} and \\boxed{2} and \\boxed{3} and \\boxed{2}"
    assert extract_answer(text, GradingPolicy(box=box)).answer == answer


def test_last_number_fallback_can_be_switched_off() -> None:
    text = "We computed many things and got 12 and then 15 as the total here"
    assert extract_answer(text).answer == "15"
    assert extract_answer(text, GradingPolicy(last_number_fallback=False)).method == "none"


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("The answer is (B).", "B"),
        ("故选 C", "C"),
        ("\\boxed{D}", "D"),
        ("答案是AC", "AC"),
        ("(A) because 2 is even", "A"),
        ("ACD", "ACD"),
        ("A, D", "AD"),
        ("The answer is A, C and D", "ACD"),
    ],
)
def test_choice_format_extracts_letters(text: str, letters: str) -> None:
    found = extract_answer(text, GradingPolicy(format="choice"))
    assert (found.answer, found.method) == (letters, "choice")


def test_program_format_takes_last_printed_line() -> None:
    found = extract_answer("step 1\n  \n42\n", GradingPolicy(format="program"))
    assert (found.answer, found.method) == ("42", "program")


def test_gsm8k_format_ignores_boxes() -> None:
    assert extract_answer("\\boxed{3}\n#### 4", GradingPolicy(format="gsm8k")).answer == "4"


def test_unbalanced_box_is_not_an_answer() -> None:
    assert find_boxes("\\boxed{1 + {2}") == []
    assert find_boxes("\\boxed{1} \\boxed{2") == ["1"]


def test_gold_extraction_uses_box_then_hashes_then_whole_string() -> None:
    assert extract_gold("so $\\boxed{5}$").answer == "5"
    assert extract_gold("3 + 4 = 7\n#### 7").answer == "7"
    assert extract_gold("$5$;$10$").answer == "5;10"
    assert extract_gold("The interval [0, 1]").answer == "The interval [0, 1]"


def test_prose_is_not_bare() -> None:
    assert looks_bare("x = 2")
    assert not looks_bare("We find that the result equals the sum of the two values")


@pytest.mark.parametrize(
    "junk", ["\\boxed{", "}}}}", "\\boxed" * 1000, "{" * 5000, "\x00\\fbox{\x00}", "#### "]
)
def test_extraction_never_raises_on_junk(junk: str) -> None:
    assert isinstance(extract_answer(junk).answer, str)


def test_an_extraction_bug_is_logged_not_swallowed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mathforge.evaluator import extraction

    def broken(*args: object) -> None:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(extraction, "_extract", broken)
    monkeypatch.setattr(extraction, "_from_boxes", broken)
    with caplog.at_level("ERROR", logger="mathforge.evaluator.extraction"):
        assert extraction.extract_answer("so \\boxed{2}") == extraction.NONE
        assert extraction.extract_gold("\\boxed{2}") == extraction.NONE
    messages = [r.getMessage() for r in caplog.records]
    assert "answer extraction failed on a 12-character output: no answer" in messages
    assert "gold extraction failed on a 9-character gold: no answer" in messages
    assert all(r.exc_info and "extractor bug" in str(r.exc_info[1]) for r in caplog.records)
