"""Named lines of a model service: several independent version lines of one kind of model in one
server (the sampler's policies, the reward service's RMs), e.g. one per run of an experiment.

    table = LineTable(max_lines=4, flag="max-lines", what="policy line")
    name = check_line(request.line)                 # INVALID_ARGUMENT for a malformed name
    entry = table.get(name)                         # None when not loaded; marks it used now
    evicted = table.make_room(name, busy=lambda e: e.in_flight > 0)   # before adding a new line
    table.put(name, entry)

The empty name is the default line; it is not held in the table and never evicted. The table holds
at most `max_lines` named lines: adding one more first evicts the least recently used line that
`busy` says is idle (a finished run's line, typically), and is RESOURCE_EXHAUSTED naming the limit
when every line is busy. Eviction rather than a refusal keeps a long-lived service usable with no
"unload" call: a trainer whose line was evicted finds it missing and loads it again, as it does
after a replica restarted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from mathforge.runtime.errors import RequestError

T = TypeVar("T")
DEFAULT_LINE = ""
MAX_LINE_CHARS = 64
_LINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def valid_line(name: str) -> bool:
    """Whether `name` is a line name ("" = the default line)."""
    return name == DEFAULT_LINE or (len(name) <= MAX_LINE_CHARS and _LINE.fullmatch(name) is not None)


def check_line(name: str) -> str:
    """`name` when it is a valid line name ("" = the default line); INVALID_ARGUMENT otherwise."""
    if name == DEFAULT_LINE:
        return name
    if len(name) > MAX_LINE_CHARS:
        raise RequestError.invalid(f"line name is {len(name)} characters, over the {MAX_LINE_CHARS} limit")
    if not _LINE.fullmatch(name):
        raise RequestError.invalid(
            f"line {name[:MAX_LINE_CHARS]!r} is not a line name: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def line_label(name: str) -> str:
    """How a line is named in logs and errors."""
    return f"line {name!r}" if name else "the default line"


class LineTable(Generic[T]):
    """The named lines a service holds, in least-recently-used order, at most `max_lines`."""

    def __init__(self, max_lines: int, flag: str, what: str):
        self.max_lines = max_lines
        self.flag = flag
        self.what = what
        self._entries: dict[str, T] = {}
        self._used: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) of every named line, by name."""
        return sorted(self._entries.items())

    def get(self, name: str) -> T | None:
        """The line's entry (marked used now), or None when it is not held."""
        entry = self._entries.get(name)
        if entry is not None:
            self._used[name] = time.monotonic()
        return entry

    def put(self, name: str, entry: T) -> None:
        """Holds `entry` as line `name` (make_room first when the name is new)."""
        if not name:
            raise ValueError("the default line is not held in the table")
        self._entries[name] = entry
        self._used[name] = time.monotonic()

    def pop(self, name: str) -> T | None:
        self._used.pop(name, None)
        return self._entries.pop(name, None)

    def make_room(self, name: str, busy: Callable[[T], bool]) -> list[tuple[str, T]]:
        """Before adding line `name`: evicts (and returns) the least recently used idle lines until
        one more fits; RESOURCE_EXHAUSTED naming the limit when every held line is busy."""
        evicted: list[tuple[str, T]] = []
        if not name or name in self._entries:
            return evicted
        if self.max_lines == 0:
            raise RequestError.exhausted(
                f"this service holds no named {self.what}s (--{self.flag} 0); {self.what} {name!r} "
                "cannot be added: send no line, or raise the limit"
            )
        while len(self._entries) >= self.max_lines:
            idle = [n for n in self._entries if not busy(self._entries[n])]
            if not idle:
                raise RequestError.exhausted(
                    f"{len(self._entries)} {self.what}s are loaded, the {self.max_lines} limit "
                    f"(--{self.flag}), and every one has calls in flight; {self.what} {name!r} "
                    "cannot be added now"
                )
            oldest = min(idle, key=lambda n: self._used[n])
            evicted.append((oldest, self.pop(oldest)))  # type: ignore[arg-type]
        return evicted
