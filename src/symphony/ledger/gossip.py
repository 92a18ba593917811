"""The ledger's network shell: push gossip and heartbeats, assembled with the other parts.

Theory of operation
-------------------
- **Push** (paper: push gossip, O(log N) rounds): every new record an owner issues
  is published on the ``symphony/ledger/1`` pubsub topic; the transport's mesh floods
  it (gossipsub on libp2p). Receivers verify and merge (``Ledger.merge_wire``).
- **Heartbeats** on ``symphony/heartbeat/1`` keep records *available* (TTL). A
  heartbeat announcing a lamport newer than ours triggers an immediate pull. Because
  flooding heartbeats costs every agent O(N) bytes, they are infrequent; a dropped
  direct connection makes its peer unavailable here at once (``Ledger.suspect``).

The other parts live in their own modules, each around pure decisions with a thin async shell,
and share one ``GossipContext`` (``ledger.context``):

- **Anti-entropy** (``ledger.sync``): pull the difference from one random peer, at most three
  request/response steps; repairs late joins, healed partitions, lost messages.
- **Sharded liveness** (``ledger.liveness``, ``GossipConfig.shards`` > 1): heartbeats go to the
  shard's gateway only, which publishes deltas when availability changes (``GatewayState``).
- **Connection upkeep and GC** (``ledger.upkeep``): keep ``target_degree`` connections dialing
  agents from the ledger, probe unavailable ones to heal partitions, collect silent records.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from symphony.errors import PeerError, TransportError
from symphony.ledger.context import EventSink, GossipConfig, GossipContext
from symphony.ledger.liveness import LIVENESS_PROTOCOL, SHARD_KIND, SHARD_TOPIC, ShardedLiveness
from symphony.ledger.store import Ledger, Merge
from symphony.ledger.sync import MAX_SYNC_BYTES, SYNC_KIND, SYNC_PROTOCOL, AntiEntropy
from symphony.ledger.upkeep import Upkeep
from symphony.protocol.envelope import ReplayGuard, parse_json
from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_RECORD_BYTES, Heartbeat, LedgerRecord, SyncRequest, record_addrs
from symphony.transport.base import PeerEvent, Transport

LEDGER_TOPIC = "symphony/ledger/1"
HEARTBEAT_TOPIC = "symphony/heartbeat/1"

class LedgerService:
    """Runs one node's replica of the ledger on a transport.

    Call ``run()`` in a task group; then ``register()`` once, ``update()`` on changes,
    ``leave()`` before a graceful shutdown. Its parts: ``anti_entropy``, ``liveness`` (idle unless
    ``config.shards`` > 1) and ``upkeep`` (the module docstring).
    """

    def __init__(
        self,
        *,
        transport: Transport,
        identity: Identity,
        ledger: Ledger,
        profile: LedgerRecord,
        clock: Callable[[], float],
        rng: random.Random,
        config: GossipConfig = GossipConfig(),
        bootstrap: Sequence[str] = (),
        on_event: EventSink = lambda kind, fields: None,
        on_own_record: Callable[[LedgerRecord], None] = lambda record: None,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.ledger = ledger
        self.clock = clock
        self.rng = rng
        self.config = config
        self.on_event = on_event
        self.on_own_record = on_own_record
        self._profile = profile
        self.ctx = GossipContext(transport=transport, identity=identity, ledger=ledger, clock=clock, rng=rng,
                                 config=config, on_event=on_event,
                                 guard=ReplayGuard(skew_ms=int(ledger.config.skew_s * 1000)))
        self.anti_entropy = AntiEntropy(self.ctx, after_merge=self._after_merge, heartbeat=self._send_heartbeat)
        self.liveness = ShardedLiveness(self.ctx, anti_entropy=self.anti_entropy, heartbeat=self._send_heartbeat)
        self.upkeep = Upkeep(self.ctx, bootstrap=bootstrap)

    @property
    def sharded(self) -> bool:
        return self.config.shards > 1

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    @property
    def own_record(self) -> LedgerRecord | None:
        return self.ledger.records.get(self.agent_id)

    def gateway(self) -> str | None:
        """This node's view of its shard's gateway (itself counted as available)."""
        return self.liveness.gateway()

    async def sync_with(self, peer: str) -> bool:
        """Run one anti-entropy exchange with ``peer``. Returns False if it failed."""
        return await self.anti_entropy.sync_with(peer)

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve gossip until cancelled."""
        ctx, every = self.ctx, self.ctx.every
        self.transport.set_handler(SYNC_PROTOCOL, self.anti_entropy.handle)
        self.transport.on_peer_event(self._on_peer_event)
        await self.transport.subscribe(LEDGER_TOPIC, self._on_record_message)
        if self.sharded:
            self.transport.set_handler(LIVENESS_PROTOCOL, self.liveness.handle)
            await self.transport.subscribe(SHARD_TOPIC, self.liveness.on_delta)
        else:
            await self.transport.subscribe(HEARTBEAT_TOPIC, self._on_heartbeat_message)
        await self.upkeep.dial_bootstrap()
        heartbeat_s = self.ledger.config.heartbeat_interval_s
        async with anyio.create_task_group() as tg:  # start order fixes the order the tasks draw from ctx.rng
            if self.sharded:
                tg.start_soon(self.liveness.join)
                tg.start_soon(every, heartbeat_s, self.liveness.publish)
            tg.start_soon(every, heartbeat_s, self._send_heartbeat)
            tg.start_soon(self.anti_entropy.run)
            tg.start_soon(every, ctx.config.maintain_interval_s, self.upkeep.maintain)
            tg.start_soon(every, ctx.config.gc_interval_s, self.upkeep.collect_garbage)

    # ---- owner writes: REGISTER / UPDATE ----------------------------------------------

    async def register(self) -> LedgerRecord:
        """REGISTER: publish this agent's record with its current addresses."""
        return await self._publish_own(addrs=record_addrs(self.transport.listen_addrs()))

    async def update(self, **fields: Any) -> LedgerRecord:
        """UPDATE(field, value): re-issue the record with new field values and push it."""
        return await self._publish_own(**fields)

    async def leave(self) -> LedgerRecord:
        """Announce a graceful departure so others stop selecting this agent at once.

        Pubsub delivery is fire-and-forget and the process is about to exit, so the record
        is also pushed to every direct peer over the acknowledged sync protocol.
        """
        record = await self._publish_own(availability="leaving")
        push = SyncRequest(records=[record.model_dump(mode="json")])

        async def push_to(peer: str) -> None:
            try:
                await self.anti_entropy.request(peer, push)
            except (TransportError, PeerError) as exc:
                self.on_event("leave_push_failed", {"peer": peer, "error": type(exc).__name__})

        async with anyio.create_task_group() as tg:
            for peer in self.transport.peers():
                tg.start_soon(push_to, peer)
        return record

    async def _publish_own(self, **fields: Any) -> LedgerRecord:
        base = self._profile.model_copy(update={**fields, "agent_id": self.agent_id, "issued_at": self.ctx.now_ms()})
        base = LedgerRecord.model_validate(base.model_dump())  # re-validate the updated fields
        record = self.ledger.issue(base).signed_by(self.identity)
        self._profile = record
        self.ledger.merge(record, now=self.clock())
        self.on_own_record(record)
        self.on_event("record_issued", {"lamport": record.lamport})
        await self.transport.publish(LEDGER_TOPIC, record.to_bytes())
        return record

    # ---- push gossip ------------------------------------------------------------------

    async def _on_record_message(self, source: str, data: bytes) -> None:
        """``LEDGER_TOPIC`` subscriber: verify and merge a pushed record; bad ones are counted."""
        try:
            payload = parse_json(data, limit=MAX_RECORD_BYTES)
        except PeerError as exc:
            self.ctx.reject(exc, source=source, channel=LEDGER_TOPIC)
            return
        outcome = self.ledger.merge_wire(payload, now=self.clock())
        if isinstance(outcome, PeerError):
            self.ctx.reject(outcome, source=source, channel=LEDGER_TOPIC, counted=True)
            return
        await self._after_merge(payload, outcome, "")

    async def _after_merge(self, payload: dict[str, Any], outcome: Merge, synced_from: str) -> None:
        """Report a merged record (pushed, or pulled from ``synced_from``); supersede a newer copy of
        our own; relay a newcomer's first record that it synced to us itself.

        A joiner issues its record before its first connection is up, so its own publish reaches
        nobody; the peer it syncs with first pushes the record into the mesh for it, once (only an
        ADDED record from its owner is relayed), and everyone holds it within a gossip hop instead of
        at their next anti-entropy round (issue #19: join latency)."""
        agent_id = payload["agent_id"]
        if outcome in (Merge.ADDED, Merge.UPDATED):
            self.on_event("record_merged", {"agent": agent_id, "lamport": payload["lamport"], "outcome": outcome.value})
            if agent_id == self.agent_id and self.own_record is not None and self.own_record.sig != self._profile.sig:
                # someone holds a newer record of ours (we lost state): supersede it
                await self._publish_own()
        if outcome is Merge.ADDED and agent_id == synced_from and agent_id != self.agent_id:
            await self.transport.publish(LEDGER_TOPIC, self.ledger.records[agent_id].to_bytes())

    # ---- heartbeats -------------------------------------------------------------------

    async def _on_heartbeat_message(self, source: str, data: bytes) -> None:
        """``HEARTBEAT_TOPIC`` subscriber (unsharded): a verified heartbeat keeps its owner available."""
        try:
            heartbeat = Heartbeat.parse(data)
            if self.ledger.keeps is not None and not self.ledger.keeps(heartbeat.agent_id):
                return  # another shard's agent: a sharded replica holds neither its record nor its liveness
            behind = self.ledger.observe_heartbeat(heartbeat, now=self.clock())
        except PeerError as exc:
            self.ctx.reject(exc, source=source, channel=HEARTBEAT_TOPIC)
            return
        if behind:
            self.anti_entropy.wake()

    def _on_peer_event(self, event: PeerEvent) -> None:
        """A dropped connection suspects its peer at once; a returning peer is announced to and synced with."""
        if event.kind == "leave":
            self.ledger.suspect(event.peer_id, now=self.clock())
        else:
            returning = event.peer_id in self.ledger.records and not self.ledger.is_available(event.peer_id,
                                                                                                now=self.clock())
            self.ledger.observe_contact(event.peer_id, now=self.clock())
            if returning:  # a healed partition or a restart: tell the far side we live, and sync now
                self.anti_entropy.wake(announce=True)
            elif event.peer_id not in self.ledger.records:  # we just met: a joiner, or we are one
                self.anti_entropy.wake(peer=event.peer_id)

    async def _send_heartbeat(self) -> None:
        """Our signed heartbeat: flooded, or on a sharded network sent to our shard's gateway only."""
        record = self.own_record
        if record is None:
            return
        heartbeat = Heartbeat(agent_id=self.agent_id, lamport=record.lamport, ts=self.ctx.now_ms())
        heartbeat = heartbeat.signed_by(self.identity)
        self.ledger.observe_heartbeat(heartbeat, now=self.clock())
        if self.sharded:
            await self.liveness.heartbeat(heartbeat.to_bytes())
        else:
            await self.transport.publish(HEARTBEAT_TOPIC, heartbeat.to_bytes())


# what callers import from here; each constant's home is the module named in the docstring
__all__ = [
    "HEARTBEAT_TOPIC",
    "LEDGER_TOPIC",
    "LIVENESS_PROTOCOL",
    "MAX_SYNC_BYTES",
    "SHARD_KIND",
    "SHARD_TOPIC",
    "SYNC_KIND",
    "SYNC_PROTOCOL",
    "EventSink",
    "GossipConfig",
    "LedgerService",
]
