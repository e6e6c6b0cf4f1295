"""What the demo prints: a header per stage, one progress bar at a time, tables, and plain lines.

console = Console()
with console.stage(3, "Pretraining"):
    with console.bar(total=300, desc="pretrain", unit="step") as bar: ...
    console.table(["round", "recall"], [[1, 0.61]])
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import tqdm

STAGE_COUNT = 7


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width table: right-aligned columns under their header."""
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


class Console:
    """Prints to `out`; progress bars go to stderr and never two at once."""

    def __init__(self, out: TextIO | None = None, bars: bool = True):
        self.out = out or sys.stdout
        self.bars = bars
        self.stage_seconds: dict[str, float] = {}

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        for text in format_table(header, rows).splitlines():
            self.line("  " + text)

    @contextmanager
    def stage(self, number: int, title: str, key: str) -> Iterator[None]:
        """A header, then the stage; its duration is recorded under `key` and printed at the end."""
        self.line()
        self.line(f"== [{number}/{STAGE_COUNT}] {title}")
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            self.stage_seconds[key] = round(seconds, 1)
        self.line(f"   done in {seconds:.0f}s")

    def bar(self, total: int | None, desc: str, unit: str = "it") -> tqdm:
        return tqdm(
            total=total,
            desc=f"   {desc}",
            unit=unit,
            leave=False,
            disable=not self.bars,
            dynamic_ncols=True,
            file=sys.stderr,
        )
