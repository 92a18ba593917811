"""Connection upkeep and garbage collection: peer discovery from the ledger, partition probes.

Records carry their owner's listen addresses. A node keeps ``target_degree`` direct connections
by dialing random available agents from the ledger (``dial_candidates``), so after the first
contact the bootstrap node is one peer among many, and its death does not cut the network.

After a partition heals no connection crosses the old cut, so no heartbeat or sync can either:
without a probe each side would keep the other unavailable forever. So each round, with
``probe_probability`` (and whenever too few agents are available to dial), the node dials a random
agent it holds as unavailable but not leaving (``probe_candidates``). A successful dial is a
contact (``Ledger.observe_contact``), which makes the agent available again; then heartbeats and
anti-entropy repair the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from symphony.errors import TransportError
from symphony.ledger.context import GossipContext
from symphony.ledger.store import Ledger

#: bootstrap peers dialed at once: a long list must not open hundreds of sockets in one go
BOOTSTRAP_DIALS = 8


def dial_candidates(ledger: Ledger, *, me: str, connected: set[str], now: float) -> list[str]:
    """Available agents with an address that we are not connected to, sorted (to sample from)."""
    return sorted(
        a
        for a, r in ledger.records.items()
        if a != me and a not in connected and r.addrs and ledger.is_available(a, now=now)
    )


def probe_candidates(ledger: Ledger, *, me: str, connected: set[str], now: float) -> list[str]:
    """Agents with an address we hold as unavailable (suspected, silent) but not leaving, sorted."""
    return sorted(
        a
        for a, r in ledger.records.items()
        if a != me and a not in connected and r.addrs and r.availability != "leaving"
        and not ledger.is_available(a, now=now)
    )


class Upkeep:
    """Keeps one node's connections (``maintain``) and its ledger's garbage (``collect_garbage``)."""

    def __init__(self, ctx: GossipContext, *, bootstrap: Sequence[str] = ()) -> None:
        self.ctx = ctx
        self.bootstrap = list(bootstrap)

    async def dial_bootstrap(self) -> None:
        """Dial every bootstrap peer at once (at most ``BOOTSTRAP_DIALS`` in flight), so a dead or
        black-holed one costs one timeout, not one per address; report how many answered
        (``bootstrap_dialed``: a node with none is alone, and says so)."""
        if not self.bootstrap:
            return
        limiter = anyio.CapacityLimiter(BOOTSTRAP_DIALS)
        failed: list[str] = []

        async def one(addr: str) -> None:
            async with limiter:
                if not await self.dial(addr, source="bootstrap"):
                    failed.append(addr)

        async with anyio.create_task_group() as tg:
            for addr in self.bootstrap:
                tg.start_soon(one, addr)
        self.ctx.on_event("bootstrap_dialed", {"connected": len(self.bootstrap) - len(failed), "failed": failed})

    async def maintain(self) -> None:
        """Keep ``target_degree`` direct connections, dialing agents learned from the ledger."""
        ctx = self.ctx
        connected = set(ctx.transport.peers())
        missing = ctx.config.target_degree - len(connected)
        now = ctx.clock()
        if ctx.rng.random() < ctx.config.probe_probability:
            await self._probe(connected, now, count=1)
        if missing <= 0:
            return
        candidates = dial_candidates(ctx.ledger, me=ctx.agent_id, connected=connected, now=now)
        async with anyio.create_task_group() as tg:  # at once: one dead record must not hold up the live ones
            for agent_id in ctx.rng.sample(candidates, min(missing, len(candidates))):
                tg.start_soon(self.dial, ctx.ledger.records[agent_id].addrs[0])
        if len(candidates) < missing:
            await self._probe(connected, now, count=missing - len(candidates))
        if not ctx.transport.peers():
            await self.dial_bootstrap()

    async def _probe(self, connected: set[str], now: float, *, count: int) -> None:
        """Dial ``count`` random ``probe_candidates`` (heals partitions: the module docstring)."""
        ctx = self.ctx
        unavailable = probe_candidates(ctx.ledger, me=ctx.agent_id, connected=connected, now=now)
        for agent_id in ctx.rng.sample(unavailable, min(count, len(unavailable))):
            await self.dial(ctx.ledger.records[agent_id].addrs[0])

    async def dial(self, addr: str, *, source: str = "ledger") -> bool:
        """Connect to ``addr`` (learned from ``source``: the ledger or the bootstrap list); a failure
        is reported (``dial_failed``), never raised. Returns whether it connected."""
        try:
            with anyio.fail_after(self.ctx.config.request_timeout_s):
                peer = await self.ctx.transport.connect(addr)
        except (TransportError, TimeoutError) as exc:
            self.ctx.on_event("dial_failed", {"addr": addr, "error": type(exc).__name__, "source": source})
            return False
        self.ctx.on_event("connected", {"peer": peer, "addr": addr})
        return True

    async def collect_garbage(self) -> None:
        """Drop records silent for long (``Ledger.collect_garbage``), never our own."""
        removed = self.ctx.ledger.collect_garbage(now=self.ctx.clock(), keep=[self.ctx.agent_id])
        if removed:
            self.ctx.on_event("records_collected", {"agents": removed})
