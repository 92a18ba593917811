"""Connections opened ahead of questions (issue #19: the first-contact storm).

A node joins through one bootstrap peer and learns every other agent from its ledger. Before
this, its first connection to a planner or an executor was dialled inside the first question's
beacon round: the first batch of questions dialled many agents at once, and those rounds took
1.6-2.2 s against 60-450 ms for the next batch's. ``WarmConnections`` dials them in the
background instead: when the node is up and whenever a record of an agent new to the ledger
arrives (the ``record_merged`` event with outcome ``added``), up to ``limit`` agents of the given
roles (``BeaconSelector.warm``), ``SETTLE_S`` after that arrival. It never runs two passes at once;
arrivals during a pass start one more pass after it. A real node opens ``WARM_PEERS`` by default
(``symphony node --warm-peers``, 0 = off); the in-process simulations open none (their links are
free, and 1,000 agents x 16 dials would slow them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from symphony.beacon.service import BeaconSelector

#: connections a real node opens ahead of need: with top_l = 8, an initiator's and a planner's round each
WARM_PEERS = 16
#: a pass waits this long after the arrival that made it due, so a join's burst of records (and their
#: gossip to everyone else) is not slowed by a burst of handshakes on the same cores: joins took 0.48-0.49 s
#: worst with passes at once and 0.11-0.12 s without, 0.17 s with this wait (docs/results.md, issue #19 part 5)
SETTLE_S = 0.5


class WarmConnections:
    """Keeps connections open to up to ``limit`` planners and executors; ``run`` it in a task group
    with the node's selector, feed it events with ``on_event`` (from construction on)."""

    def __init__(self, *, limit: int, roles: Sequence[frozenset[str]]) -> None:
        self.limit, self.roles = limit, tuple(roles)
        self._due = anyio.Event()
        self._due.set()  # the first pass, once the node is up
        self.dials = 0  # tried, over the node's life
        self._passing = False

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        """An event sink: a record of an agent new to the ledger makes another pass due."""
        if kind == "record_merged" and fields.get("outcome") == "added":
            self._due.set()

    @property
    def idle(self) -> bool:
        """No pass due or under way (always, with a ``limit`` of 0)."""
        return self.limit <= 0 or not (self._due.is_set() or self._passing)

    async def run(self, selector: BeaconSelector) -> None:
        """Dial, one pass at a time, whenever a pass is due; until cancelled. Idle when ``limit`` is 0."""
        if self.limit <= 0:
            return
        while True:
            await self._due.wait()
            await anyio.sleep(SETTLE_S)
            self._due, self._passing = anyio.Event(), True
            try:
                self.dials += await selector.warm(limit=self.limit, roles=self.roles)
            finally:
                self._passing = False
