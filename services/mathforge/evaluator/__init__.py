"""The evaluator: final-answer extraction, answer equivalence, benchmark metrics and loaders, the
program sandbox and the Evaluator gRPC service (DeepSeekMath §3.2).

In-process users import the grader directly:

    from mathforge.evaluator.grading import grade, extract_answer, GradingPolicy
"""
