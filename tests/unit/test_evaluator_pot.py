"""Program-of-thought answers: code found in the output, run in the sandbox, its output graded."""

from __future__ import annotations

from mathforge.evaluator.pot import extract_programs, grade_program_output, program_of
from mathforge.evaluator.sandbox import SandboxLimits

LIMITS = SandboxLimits(wall_time_s=5, cpu_time_s=2)


def test_fenced_blocks_are_found_in_order() -> None:
    text = "First:\n```python\nx = 6\n```\nthen\n```\nprint(x * 7)\n```\nDone."
    assert extract_programs(text) == ["x = 6", "print(x * 7)"]
    assert program_of(text) == "x = 6\n\nprint(x * 7)"


def test_unfenced_program_and_prose_without_code() -> None:
    assert extract_programs("import math\nprint(math.factorial(5))") == [
        "import math\nprint(math.factorial(5))"
    ]
    assert extract_programs("The answer is 5.") == []


def test_tool_integrated_output_is_graded_by_what_it_prints() -> None:
    text = (
        "Let me compute.\n```python\nfrom fractions import Fraction\n"
        "r = Fraction(3, 4) + Fraction(1, 8)\n```\n"
        "Now print it.\n```python\nprint(r)\n```"
    )
    verdict, run = grade_program_output(text, "\\frac{7}{8}", LIMITS)
    assert run is not None and run.stdout == "7/8\n"
    assert verdict.equivalent and verdict.pred_answer == "7/8"


def test_wrong_output_and_failing_programs_are_not_equivalent() -> None:
    assert not grade_program_output("```python\nprint(41)\n```", "42", LIMITS)[0].equivalent
    verdict, run = grade_program_output("```python\nimport os\nos.system('ls')\n```", "42", LIMITS)
    assert (verdict.equivalent, verdict.reason) == (False, "program_forbidden")
    assert run is not None and run.verdict == "forbidden"
    assert grade_program_output("no code here", "42", LIMITS)[0].reason == "no_program"
