"""A bounded queue in front of a scarce resource: `slots` calls run at once, at most `max_waiting`
wait their turn, and the next one is refused at once with RESOURCE_EXHAUSTED naming the limit
(rather than queueing without bound and timing out later).

    programs = Admission(4, 16, "programs", "max-waiting-programs")
    async with programs:
        result = await run()
"""

from __future__ import annotations

import asyncio

from mathforge.runtime.errors import RequestError


class Admission:
    """An asyncio semaphore whose queue of waiters is bounded."""

    def __init__(self, slots: int, max_waiting: int, what: str, flag: str):
        self.slots = slots
        self.max_waiting = max_waiting
        self.what = what
        self.flag = flag
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(slots)

    async def __aenter__(self) -> None:
        if self._semaphore.locked() and self.waiting >= self.max_waiting:
            raise RequestError.exhausted(
                f"{self.slots} {self.what} are running and {self.waiting} are waiting, the queue limit "
                f"(--{self.flag} {self.max_waiting}); retry later"
            )
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()
