"""Shard summaries on a running node (paper §3.3 gateways; architecture §9 "As wired").

Theory of operation
-------------------
On a sharded node (``AgentRuntime(shards=L)``) the replica keeps its own shard's records only, so
what it knows of every other shard is that shard's signed ``ShardSummary`` (``ledger.shard``):

- **Issue**: every ``check_interval_s`` the node asks whether it is its shard's gateway (the
  rendezvous choice over the members available in its replica, ``LedgerService.gateway``). If it
  is, and the shard's membership (available members and their record versions) changed since its
  last summary, or that summary is ``reissue_s`` old, it signs a new one and publishes it on
  ``SUMMARY_TOPIC``. Re-issuing well inside ``SummaryBook.max_age_s`` keeps summaries fresh, and
  lets an heir's summary replace a dead gateway's once ``SummaryBook.takeover_s`` has passed.
- **Receive**: every node offers what arrives to its ``SummaryBook``, which verifies, size-caps and
  counts each rejection (``book.rejected``). A node that learns of its *own* shard's gateway
  without holding its record (it just joined, and its first peer was in another shard) dials the
  gateway and syncs with it: that is how a joiner finds its shard.

Cost: one ~2.6 kB summary per shard per membership change or ``reissue_s``, flooded to every node:
O(L) summaries per node per period, against O(N) records for a full replica.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from symphony.errors import ConfigError, PeerError, TransportError
from symphony.ledger.gossip import LedgerService
from symphony.ledger.shard import DEFAULT_CONES, SummaryBook, issue_summary, shard_of
from symphony.ledger.store import Ledger
from symphony.protocol.identity import Identity
from symphony.protocol.sharding import ShardSummary
from symphony.transport.base import Transport

SUMMARY_TOPIC = "symphony/shard-summary/1"

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class SummaryConfig:
    check_interval_s: float = 2.0
    reissue_s: float = 120.0  # well inside SummaryBook.max_age_s (600 s) and takeover_s (300 s)
    cones: int = DEFAULT_CONES

    def __post_init__(self) -> None:
        if self.check_interval_s <= 0 or self.reissue_s <= 0:
            raise ValueError("check_interval_s and reissue_s must be > 0")


class SummaryService:
    """Issues this shard's summary when this node is its gateway; keeps every shard's latest one."""

    def __init__(
        self,
        *,
        transport: Transport,
        identity: Identity,
        ledger: Ledger,
        gossip: LedgerService,
        book: SummaryBook,
        clock: Callable[[], float],
        config: SummaryConfig = SummaryConfig(),
        on_event: EventSink = lambda kind, fields: None,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.ledger = ledger
        self.gossip = gossip
        self.book = book
        self.clock = clock
        self.config = config
        self.on_event = on_event
        self.shard = shard_of(identity.agent_id, book.shards)
        self._issued: tuple[tuple[str, int], ...] | None = None
        self._issued_at = 0.0
        self.issued = 0

    async def run(self) -> None:
        """Subscribe to summaries and issue ours while we are the gateway, until cancelled."""
        await self.transport.subscribe(SUMMARY_TOPIC, self._on_summary)
        while True:
            await self.step()
            await anyio.sleep(self.config.check_interval_s)

    def _membership(self, now: float) -> tuple[tuple[str, int], ...]:
        """The shard's available members with their record versions (ourselves always counted)."""
        me = self.identity.agent_id
        return tuple(sorted((a, r.lamport) for a, r in self.ledger.records.items()
                            if a == me or self.ledger.is_available(a, now=now)))

    async def step(self) -> ShardSummary | None:
        """Publish a new summary if we are the gateway and membership changed or ours is getting old."""
        now = self.clock()
        if self.gossip.gateway() != self.identity.agent_id or self.identity.agent_id not in self.ledger.records:
            self._issued = None
            return None
        members = self._membership(now)
        if members == self._issued and now - self._issued_at < self.config.reissue_s:
            return None
        summary = issue_summary(self.identity, [self.ledger.records[a] for a, _ in members], shard=self.shard,
                                shards=self.book.shards, now_ms=int(now * 1000), available=[a for a, _ in members],
                                cones=self.config.cones)
        try:
            self.book.accept(summary, now=now)
        except PeerError as exc:  # a live gateway we have no record of outranks us: meet it instead
            self.on_event("summary_withheld", {"reason": exc.reason})
            return None
        self._issued, self._issued_at = members, now
        self.issued += 1
        self.on_event("summary_issued", {"shard": self.shard, "members": summary.members})
        await self.transport.publish(SUMMARY_TOPIC, summary.to_bytes())
        return summary

    async def _on_summary(self, source: str, data: bytes) -> None:
        outcome = self.book.offer(data, now=self.clock())
        if isinstance(outcome, PeerError):
            self.on_event("rejected", {"reason": outcome.reason, "source": source, "channel": SUMMARY_TOPIC,
                                       "detail": str(outcome)[:200]})
            return
        if outcome.shard == self.shard and outcome.gateway not in self.ledger.records and outcome.addrs:
            await self._meet(outcome)

    async def _meet(self, summary: ShardSummary) -> None:
        """Dial our shard's gateway named by ``summary`` and sync records with it."""
        try:
            with anyio.fail_after(self.gossip.config.request_timeout_s):
                peer = await self.transport.connect(summary.addrs[0])
        except (TransportError, ConfigError, TimeoutError) as exc:
            self.on_event("dial_failed", {"addr": summary.addrs[0], "error": type(exc).__name__})
            return
        if peer == summary.gateway:
            await self.gossip.sync_with(peer)


__all__ = ["SUMMARY_TOPIC", "SummaryConfig", "SummaryService"]
