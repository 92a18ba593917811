"""The node's live event bus: fan-out of what happens on this node to any number of live viewers
(the API's ``GET /v1/events`` and its dashboard).

Theory of operation
-------------------
``EventBus.publish`` is synchronous and never waits: it is called from protocol code
(ledger merges, peer joins, task progress) that must not be slowed by a viewer. Every
subscriber owns a bounded queue (``max_queue`` events). When a subscriber falls that far
behind, the bus *disconnects* it (closes its queue and counts it in ``disconnected``)
instead of dropping single events: a dashboard that silently missed one event would show a
wrong state forever, while a disconnected ``EventSource`` reconnects by itself and starts
again from a fresh snapshot. So a slow or stuck client costs at most ``max_queue`` events
of memory and never blocks the node.

Events are plain dicts ``{"seq": n, "ts": unix_s, "type": kind, "data": {...}}``; ``seq``
grows by one per published event, so a client can tell whether it missed any.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

Event = dict[str, Any]


class EventBus:
    """Bounded, non-blocking fan-out of node events to any number of subscribers."""

    def __init__(self, *, max_queue: int = 512, max_subscribers: int = 64,
                 clock: Callable[[], float] = time.time) -> None:
        if max_queue < 1 or max_subscribers < 1:
            raise ValueError("max_queue and max_subscribers must be >= 1")
        self._clock = clock
        self.max_queue = max_queue
        self.max_subscribers = max_subscribers
        self.seq = 0
        self.disconnected = 0
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        """Queue ``{"type": kind, "data": data}`` for every subscriber, disconnecting the full ones."""
        self.seq += 1
        event: Event = {"seq": self.seq, "ts": round(self._clock(), 3), "type": kind, "data": data}
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:  # too slow: cut it off, it will reconnect and resync
                self._drop(send)
                self.disconnected += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(send)
        return event

    def _drop(self, send: MemoryObjectSendStream[Event]) -> None:
        self._subscribers.discard(send)
        send.close()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """A receive stream of the events published from now on; unsubscribed on exit.

        The stream ends (``EndOfStream``) after the buffered events if the bus cut this
        subscriber off for being too slow. Raises ``OverflowError`` when ``max_subscribers``
        are already attached."""
        if len(self._subscribers) >= self.max_subscribers:
            raise OverflowError(f"too many event subscribers (limit {self.max_subscribers})")
        send, receive = anyio.create_memory_object_stream[Event](max_buffer_size=self.max_queue)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._drop(send)
