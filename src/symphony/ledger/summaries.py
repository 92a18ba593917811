"""Shard summaries on a running node (paper §3.3 gateways; architecture §9 "As wired").

Theory of operation
-------------------
On a sharded node (``AgentRuntime(shards=L)``) the replica keeps its own shard's records only, so
what it knows of every other shard is that shard's signed ``ShardSummary`` (``ledger.shard``):

- **Issue**: every ``check_interval_s`` the node asks whether it is its shard's gateway (the
  rendezvous choice over the members available in its replica, ``ledger.shard.gateway``). If it
  is, and the shard's membership (available members and their record versions) changed since its
  last summary, or that summary is ``reissue_s`` old, it signs a new one and publishes it on
  ``SUMMARY_TOPIC``. Re-issuing well inside ``SummaryBook.max_age_s`` keeps summaries fresh, and
  lets an heir's summary replace a dead gateway's once ``SummaryBook.takeover_s`` has passed.
- **Pull** (anti-entropy for summaries): on joining and every ``pull_interval_s`` a node sends one
  connected peer (its first, then a random one) its digest ``{shard: gateway/issued_at}`` over
  ``SUMMARY_PROTOCOL`` and gets back the summaries the peer holds in another version (at most ``MAX_PULL``,
  the rest next time): a joiner learns every shard at once, and a node the pubsub mesh missed
  catches up. At steady state the reply is empty and the digest costs ~70 bytes per shard.
- **Receive**: every node offers what arrives to its ``SummaryBook``, which verifies, size-caps and
  counts each rejection (``book.rejected``). A node that learns of its *own* shard's gateway
  without holding its record (it just joined, and its first peer was in another shard) dials the
  gateway and syncs with it: that is how a joiner finds its shard. It does so too for a summary of
  its shard refused as "not the gateway" (two members that each believed themselves gateway, for
  want of the other's record, meet and agree).

Cost: one ~2.6 kB summary per shard per membership change or ``reissue_s``, flooded to every node:
O(L) summaries per node per period, against O(N) records for a full replica.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from symphony.errors import ConfigError, MalformedMessage, PeerError, TransportError
from symphony.ledger.context import EventSink
from symphony.ledger.gossip import LedgerService
from symphony.ledger.shard import DEFAULT_CONES, NotGateway, SummaryBook, gateway, issue_summary, shard_of
from symphony.ledger.store import Ledger
from symphony.protocol.envelope import parse_json
from symphony.protocol.identity import Identity
from symphony.protocol.sharding import MAX_SHARDS, MAX_SUMMARY_BYTES, ShardSummary
from symphony.transport.base import Transport

SUMMARY_TOPIC = "symphony/shard-summary/1"
SUMMARY_PROTOCOL = "/symphony/shard-summaries/1.0.0"
MAX_PULL = 64  # summaries per pull reply
MAX_DIGEST_BYTES = 32 * MAX_SHARDS
MAX_PULL_BYTES = MAX_PULL * MAX_SUMMARY_BYTES + 1024


@dataclass(frozen=True)
class SummaryConfig:
    check_interval_s: float = 2.0
    reissue_s: float = 120.0  # well inside SummaryBook.max_age_s (600 s) and takeover_s (300 s)
    pull_interval_s: float = 30.0
    cones: int = DEFAULT_CONES

    def __post_init__(self) -> None:
        if min(self.check_interval_s, self.reissue_s, self.pull_interval_s) <= 0:
            raise ValueError("check_interval_s, reissue_s and pull_interval_s must be > 0")


def _version(summary: ShardSummary) -> str:
    """What a pull digest says of a held summary: its gateway and issue time. A peer holding another
    version answers with its own and the caller's book decides which to keep (two members that each
    believed themselves gateway learn which outranks)."""
    return f"{summary.gateway}/{summary.issued_at}"


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
        rng: random.Random,
        config: SummaryConfig = SummaryConfig(),
        on_event: EventSink = lambda kind, fields: None,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.ledger = ledger
        self.gossip = gossip
        self.book = book
        self.clock = clock
        self.rng = rng
        self.config = config
        self.on_event = on_event
        self.shard = shard_of(identity.agent_id, book.shards)
        self._issued: tuple[tuple[str, int], ...] | None = None
        self._issued_at = 0.0
        self.issued = 0

    async def run(self) -> None:
        """Serve pulls, subscribe to summaries, pull, and issue ours while we are the gateway, until cancelled."""
        self.transport.set_handler(SUMMARY_PROTOCOL, self._handle_pull)
        await self.transport.subscribe(SUMMARY_TOPIC, self._on_summary)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pull_loop)
            while True:
                await self.step()
                await anyio.sleep(self.config.check_interval_s)

    async def _pull_loop(self) -> None:
        """Pull from our first peer as soon as we have one, then from a random peer every interval."""
        first = True
        while True:
            peers = sorted(self.transport.peers())
            if peers:
                await self.pull(peers[0] if first else self.rng.choice(peers))
                first = False
            await anyio.sleep(self.config.check_interval_s if first else self.config.pull_interval_s)

    async def pull(self, peer: str) -> int:
        """Ask ``peer`` for the summaries it holds newer than ours; offer each. Returns how many were accepted."""
        digest = {str(s.shard): _version(s) for s in self.book.summaries.values()}
        try:
            raw = await self.transport.request(
                peer, SUMMARY_PROTOCOL, json.dumps(digest).encode(), timeout=self.gossip.config.request_timeout_s
            )
            items = parse_json(raw, limit=MAX_PULL_BYTES)
            if not isinstance(items, list) or len(items) > MAX_PULL:
                raise MalformedMessage(f"a summary pull reply must be a list of at most {MAX_PULL}")
        except TransportError as exc:
            self.on_event("summary_pull_failed", {"peer": peer, "error": type(exc).__name__})
            return 0
        except PeerError as exc:
            self.book.rejected[exc.reason] += 1
            return 0
        accepted = 0
        for item in items:
            accepted += await self._take(peer, json.dumps(item).encode())
        return accepted

    async def _handle_pull(self, peer: str, payload: bytes) -> bytes:
        """Serve a pull: the summaries we hold newer than the caller's digest (at most ``MAX_PULL``).

        Raises:
            PeerError: an oversized or malformed digest (counted in ``book.rejected``).
        """
        try:
            digest = parse_json(payload, limit=MAX_DIGEST_BYTES)
            if not isinstance(digest, dict) or not all(isinstance(v, str) for v in digest.values()):
                raise MalformedMessage("a summary digest maps shard to gateway/issued_at")
        except PeerError as exc:
            self.book.rejected[exc.reason] += 1
            raise
        newer = [s for s in self.book.fresh(now=self.clock()) if digest.get(str(s.shard)) != _version(s)]
        return json.dumps([s.model_dump(mode="json") for s in newer[:MAX_PULL]], separators=(",", ":")).encode()

    def _membership(self, now: float) -> tuple[tuple[str, int], ...]:
        """The shard's available members with their record versions (ourselves always counted)."""
        me = self.identity.agent_id
        return tuple(
            sorted(
                (a, r.lamport)
                for a, r in self.ledger.records.items()
                if a == me or self.ledger.is_available(a, now=now)
            )
        )

    def gateway(self) -> str | None:
        """Our shard's gateway in this replica's view: rendezvous over its available members (and us)."""
        now, me = self.clock(), self.identity.agent_id
        return gateway(
            self.shard,
            self.book.shards,
            [a for a in self.ledger.records if a == me or self.ledger.is_available(a, now=now)],
        )

    async def step(self) -> ShardSummary | None:
        """Publish a new summary if we are the gateway and membership changed or ours is getting old."""
        now = self.clock()
        if self.gateway() != self.identity.agent_id or self.identity.agent_id not in self.ledger.records:
            self._issued = None
            return None
        members = self._membership(now)
        if members == self._issued and now - self._issued_at < self.config.reissue_s:
            return None
        summary = issue_summary(
            self.identity,
            [self.ledger.records[a] for a, _ in members],
            shard=self.shard,
            shards=self.book.shards,
            now_ms=int(now * 1000),
            available=[a for a, _ in members],
            cones=self.config.cones,
        )
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
        await self._take(source, data)

    async def _take(self, source: str, data: bytes) -> int:
        """Offer one summary to the book; meet our shard's gateway if it is new to us. Returns 1 if accepted."""
        outcome = self.book.offer(data, now=self.clock())
        if isinstance(outcome, NotGateway):  # a member of our shard we may not know claims the role: meet it
            outcome = ShardSummary.parse(data)
            if outcome.shard == self.shard and outcome.gateway not in self.ledger.records and outcome.addrs:
                await self._meet(outcome)
            return 0
        if isinstance(outcome, PeerError):
            self.on_event(
                "rejected",
                {"reason": outcome.reason, "source": source, "channel": SUMMARY_TOPIC, "detail": str(outcome)[:200]},
            )
            return 0
        if outcome.shard == self.shard and outcome.gateway not in self.ledger.records and outcome.addrs:
            await self._meet(outcome)
        return 1

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


__all__ = ["MAX_PULL", "SUMMARY_PROTOCOL", "SUMMARY_TOPIC", "SummaryConfig", "SummaryService"]
