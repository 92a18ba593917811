"""The order of service at a busy node: a priority gate in front of its model (issue 17).

A node runs at most ``slots`` model calls at once. When all are busy, waiting calls are admitted
highest ``priority`` first (``TaskKnobs.priority``, 0-9, which the question's beacon also carries),
first come first served within a priority. A cancelled waiter leaves the queue; a waiter cancelled
just as it was handed a slot passes the slot on, so no slot is ever lost.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio


@dataclass
class PriorityGate:
    """At most ``slots`` holders at once; waiters are admitted by priority, then arrival."""

    slots: int = 4
    _busy: int = 0
    _waiting: list[tuple[int, int, anyio.Event]] = field(default_factory=list)
    _arrivals: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"a gate needs at least one slot, not {self.slots!r}")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def queue(self) -> int:
        """Calls holding a slot plus calls waiting for one: this node's load as beacon replies report it."""
        return self._busy + len(self._waiting)

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        """Hold one slot for the ``async with`` body, waiting behind higher priorities when full."""
        if self._busy < self.slots and not self._waiting:
            self._busy += 1
        else:
            entry = (-priority, next(self._arrivals), anyio.Event())
            heapq.heappush(self._waiting, entry)
            try:
                await entry[2].wait()
            except BaseException:
                if entry[2].is_set():  # handed a slot as we were cancelled: pass it on
                    self._release()
                else:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """Hand the slot to the first waiter (it stays busy), or free it."""
        if self._waiting:
            heapq.heappop(self._waiting)[2].set()
        else:
            self._busy -= 1


__all__ = ["PriorityGate"]
