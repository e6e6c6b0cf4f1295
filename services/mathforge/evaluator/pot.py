"""Program-of-thought and tool-integrated answers: finds the Python in a model output, runs it in
the sandbox and grades what it prints (DeepSeekMath §3 and §6: the program's output is the answer).

    verdict, run = grade_program_output("```python\\nprint(6 * 7)\\n```", "42")
"""

from __future__ import annotations

import re
from dataclasses import replace

from mathforge.evaluator.grading import Verdict, grade
from mathforge.evaluator.policy import DEFAULT_POLICY, GradingPolicy
from mathforge.evaluator.sandbox import ProgramResult, SandboxLimits, run_program

_CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_programs(text: str) -> list[str]:
    """The fenced Python blocks of a model output, in order; the whole text if it has none but
    looks like a program (a PoT answer written without fences)."""
    blocks = [block.strip("\n") for block in _CODE_BLOCK.findall(text)]
    if blocks:
        return [b for b in blocks if b.strip()]
    if re.search(r"^\s*(?:print\(|import |from \w+ import |def |\w+\s*=)", text, re.MULTILINE):
        return [text]
    return []


def program_of(text: str) -> str | None:
    """One program from a model output: its blocks joined in order, so a tool-integrated solution's
    later blocks see the names the earlier ones defined; None when there is no code."""
    blocks = extract_programs(text)
    return "\n\n".join(blocks) if blocks else None


def grade_program_output(
    text: str, gold: str, limits: SandboxLimits | None = None, policy: GradingPolicy | None = None
) -> tuple[Verdict, ProgramResult | None]:
    """Runs the program of a PoT / tool-integrated output and grades its last printed line.

    A run that is not "ok" (error, timeout, forbidden action...) is not equivalent, with the
    sandbox verdict as the reason ("program_timeout", ...). Never raises."""
    policy = replace(policy or DEFAULT_POLICY, format="program")
    code = program_of(text)
    if code is None:
        return Verdict(False, "", gold, "no_program"), None
    result = run_program(code, limits or SandboxLimits())
    if result.verdict != "ok":
        return Verdict(False, "", gold, f"program_{result.verdict}"), result
    return grade(result.stdout, gold, policy), result
