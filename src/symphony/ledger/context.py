"""What every part of one node's gossip shell shares: its config and handles, and one way to count
a rejected message.

The shell (``ledger.gossip.LedgerService``) is split by concern into push gossip and heartbeats
(``gossip``), anti-entropy (``sync``), sharded liveness (``liveness``) and connection upkeep
(``upkeep``). Each part takes one ``GossipContext`` instead of eight handles, so all of them draw
from the same clock, RNG and replay guard, exactly as the single class they came from did.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from symphony.errors import PeerError
from symphony.ledger.store import Ledger
from symphony.protocol.envelope import ReplayGuard
from symphony.protocol.identity import Identity
from symphony.transport.base import Transport

#: ``on_event(kind, fields)``: where the shell reports what it did or refused (events, metrics).
EventSink = Callable[[str, dict[str, Any]], None]
#: A step a part runs but another part owns, e.g. ``LedgerService``'s "send our heartbeat now".
Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class GossipConfig:
    """Timing and shape of one node's gossip shell (intervals in seconds)."""

    anti_entropy_interval_s: float = 30.0
    maintain_interval_s: float = 2.0
    target_degree: int = 6
    gc_interval_s: float = 60.0
    request_timeout_s: float = 5.0
    max_records_per_reply: int = 500
    probe_probability: float = 0.25  # per maintenance round: dial one unavailable agent (heals partitions)
    shards: int = 1  # L; 1 = flooded heartbeats (small networks), see ``ledger.shard.shards_for``

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, not {self.shards!r}")


@dataclass(frozen=True)
class GossipContext:
    """One node's handles, shared by the parts of its gossip shell (the module docstring)."""

    transport: Transport
    identity: Identity
    ledger: Ledger
    clock: Callable[[], float]
    rng: random.Random
    config: GossipConfig
    on_event: EventSink
    guard: ReplayGuard  # one for sync requests, snapshots and shard deltas alike

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def reject(self, exc: PeerError, *, source: str, channel: str, counted: bool = False) -> None:
        """Count a peer's bad message by reason (unless the ledger already did: ``counted``) and report it."""
        if not counted:
            self.ledger.rejected[exc.reason] += 1
        fields = {"reason": exc.reason, "source": source, "channel": channel, "detail": str(exc)[:200]}
        self.on_event("rejected", fields)

    def kept_peers(self) -> list[str]:
        """Connected peers worth syncing with, sorted: all of them, or on a sharded replica
        (``Ledger.keeps``, architecture §9) the members of our shard only (others hold no record we keep)."""
        keeps = self.ledger.keeps
        return sorted(p for p in self.transport.peers() if keeps is None or keeps(p))

    def lacks_any(self, agent_ids: list[str]) -> bool:
        """Whether we keep (``Ledger.keeps``) but do not hold the record of any of ``agent_ids``."""
        keeps = self.ledger.keeps
        return any(a not in self.ledger.records and (keeps is None or keeps(a)) for a in agent_ids)

    async def every(self, interval: float, step: Step) -> None:
        """Run ``step`` forever, ``interval`` apart with 10% jitter (so nodes started together drift apart)."""
        while True:
            await step()
            await anyio.sleep(interval * self.rng.uniform(0.9, 1.1))
