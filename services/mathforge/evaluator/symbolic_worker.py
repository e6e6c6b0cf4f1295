"""A symbolic-equivalence worker process: reads JSON requests on stdin, answers JSON on stdout.

Runs math-verify's parse and verify with their signal-based timeouts off; the parent
(`symbolic.SymbolicPool`) enforces the time limit by killing this process, which is why the work
lives in a process of its own. Started by the pool as `python -m mathforge.evaluator.symbolic_worker`.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys

# A pathological expression must not take the machine's memory with it.
MEMORY_LIMIT_BYTES = int(os.environ.get("MATHFORGE_SYMBOLIC_MEMORY_BYTES", str(2 << 30)))


def _compare(parse, verify, configs, gold: str, pred: str) -> bool | None:  # type: ignore[no-untyped-def]
    gold_parsed = parse("\\boxed{" + gold + "}", extraction_config=configs, parsing_timeout=None)
    pred_parsed = parse("\\boxed{" + pred + "}", extraction_config=configs, parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return None
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ValueError, OSError):
        pass
    logging.disable(logging.WARNING)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            equal = _compare(parse, verify, configs, str(request["gold"]), str(request["pred"]))
            reply = {"id": request.get("id"), "equal": equal, "error": ""}
        except MemoryError:
            reply = {"id": None, "equal": None, "error": "memory limit"}
        except Exception as exc:  # a library error on odd input is a "cannot decide", not a crash
            reply = {"id": None, "equal": None, "error": f"{type(exc).__name__}: {exc}"[:200]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
