"""The ledger's network shell: push gossip, anti-entropy, heartbeats, peer discovery.

Theory of operation
-------------------
- **Push** (paper: push gossip, O(log N) rounds): every new record an owner issues
  is published on the ``symphony/ledger/1`` pubsub topic; the transport's mesh floods
  it (gossipsub on libp2p). Receivers verify and merge (``Ledger.merge_wire``).
- **Heartbeats** on ``symphony/heartbeat/1`` keep records *available* (TTL). A
  heartbeat announcing a lamport newer than ours triggers an immediate pull. Because
  flooding heartbeats costs every agent O(N) bytes, they are infrequent; a dropped
  direct connection makes its peer unavailable here at once (``Ledger.suspect``).
- **Anti-entropy** (pull the difference) repairs whatever push missed: late joiners,
  healed partitions, lost messages. Every ``anti_entropy_interval_s`` a node picks
  one random connected peer and runs at most three request/response steps over
  ``/symphony/ledger-sync/1.0.0``: (1) compare digest hashes, 32 bytes — the common
  case ends here; (2) send the full digest ``{agent_id: lamport}``, receive the records
  we lack plus the IDs the peer lacks; (3) push those. Requests are signed envelopes
  (replay-checked); records inside are self-signed and verified one by one.
- **Peer discovery**: records carry their owner's listen addresses. A node keeps
  ``target_degree`` direct connections by dialing random available agents from the
  ledger, so after the first contact the bootstrap node is one peer among many, and
  its death does not cut the network.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import ValidationError

from symphony.errors import MalformedMessage, PeerError, TransportError
from symphony.ledger.store import Ledger, Merge
from symphony.protocol.envelope import ReplayGuard, open_body, parse_json, seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_RECORD_BYTES, Heartbeat, LedgerRecord, SyncReply, SyncRequest
from symphony.transport.base import PeerEvent, Transport

LEDGER_TOPIC = "symphony/ledger/1"
HEARTBEAT_TOPIC = "symphony/heartbeat/1"
SYNC_PROTOCOL = "/symphony/ledger-sync/1.0.0"
SYNC_KIND = "ledger.sync"
MAX_SYNC_BYTES = 4 * 1024 * 1024

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class GossipConfig:
    anti_entropy_interval_s: float = 30.0
    maintain_interval_s: float = 2.0
    target_degree: int = 6
    gc_interval_s: float = 60.0
    request_timeout_s: float = 5.0
    max_records_per_reply: int = 500
    probe_probability: float = 0.25  # per maintenance round: dial one unavailable agent (heals partitions)


class LedgerService:
    """Runs one node's replica of the ledger on a transport.

    Call ``run()`` in a task group; then ``register()`` once, ``update()`` on changes,
    ``leave()`` before a graceful shutdown.
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
        self.bootstrap = list(bootstrap)
        self.on_event = on_event
        self.on_own_record = on_own_record
        self._profile = profile
        self._guard = ReplayGuard(skew_ms=int(ledger.config.skew_s * 1000))
        self._pull_wanted = anyio.Event()
        self._announce = False

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    @property
    def own_record(self) -> LedgerRecord | None:
        return self.ledger.records.get(self.agent_id)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve gossip until cancelled."""
        self.transport.set_handler(SYNC_PROTOCOL, self._handle_sync)
        self.transport.on_peer_event(self._on_peer_event)
        await self.transport.subscribe(LEDGER_TOPIC, self._on_record_message)
        await self.transport.subscribe(HEARTBEAT_TOPIC, self._on_heartbeat_message)
        for addr in self.bootstrap:
            await self._dial(addr)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._every, self.ledger.config.heartbeat_interval_s, self._send_heartbeat)
            tg.start_soon(self._anti_entropy_loop)
            tg.start_soon(self._every, self.config.maintain_interval_s, self._maintain_connections)
            tg.start_soon(self._every, self.config.gc_interval_s, self._collect_garbage)

    async def _every(self, interval: float, step: Callable[[], Any]) -> None:
        while True:
            await step()
            await anyio.sleep(interval * self.rng.uniform(0.9, 1.1))

    # ---- owner writes: REGISTER / UPDATE ----------------------------------------------

    async def register(self) -> LedgerRecord:
        """REGISTER: publish this agent's record with its current addresses."""
        return await self._publish_own(addrs=self.transport.listen_addrs()[:8])

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
                await self._sync_request(peer, push)
            except (TransportError, PeerError) as exc:
                self.on_event("leave_push_failed", {"peer": peer, "error": type(exc).__name__})

        async with anyio.create_task_group() as tg:
            for peer in self.transport.peers():
                tg.start_soon(push_to, peer)
        return record

    async def _publish_own(self, **fields: Any) -> LedgerRecord:
        base = self._profile.model_copy(update={**fields, "agent_id": self.agent_id, "issued_at": self._now_ms()})
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
        try:
            payload = parse_json(data, limit=MAX_RECORD_BYTES)
        except PeerError as exc:
            self._reject(exc, source=source, channel=LEDGER_TOPIC)
            return
        outcome = self.ledger.merge_wire(payload, now=self.clock())
        if isinstance(outcome, PeerError):
            self._reject(outcome, source=source, channel=LEDGER_TOPIC, counted=True)
            return
        await self._after_merge(payload, outcome)

    async def _after_merge(self, payload: dict[str, Any], outcome: Merge) -> None:
        agent_id = payload["agent_id"]
        if outcome in (Merge.ADDED, Merge.UPDATED):
            self.on_event("record_merged", {"agent": agent_id, "lamport": payload["lamport"], "outcome": outcome.value})
            if agent_id == self.agent_id and self.own_record is not None and self.own_record.sig != self._profile.sig:
                # someone holds a newer record of ours (we lost state): supersede it
                await self._publish_own()

    async def _on_heartbeat_message(self, source: str, data: bytes) -> None:
        try:
            heartbeat = Heartbeat.parse(data)
            behind = self.ledger.observe_heartbeat(heartbeat, now=self.clock())
        except PeerError as exc:
            self._reject(exc, source=source, channel=HEARTBEAT_TOPIC)
            return
        if behind:
            self._pull_wanted.set()

    def _on_peer_event(self, event: PeerEvent) -> None:
        if event.kind == "leave":
            self.ledger.suspect(event.peer_id, now=self.clock())
        else:
            returning = event.peer_id in self.ledger.records and not self.ledger.is_available(event.peer_id,
                                                                                                now=self.clock())
            self.ledger.observe_contact(event.peer_id, now=self.clock())
            if returning:  # a healed partition or a restart: tell the far side we live, and sync now
                self._announce = True
                self._pull_wanted.set()

    async def _send_heartbeat(self) -> None:
        record = self.own_record
        if record is None:
            return
        heartbeat = Heartbeat(agent_id=self.agent_id, lamport=record.lamport, ts=self._now_ms())
        heartbeat = heartbeat.signed_by(self.identity)
        self.ledger.observe_heartbeat(heartbeat, now=self.clock())
        await self.transport.publish(HEARTBEAT_TOPIC, heartbeat.to_bytes())

    # ---- anti-entropy -----------------------------------------------------------------

    async def _anti_entropy_loop(self) -> None:
        while True:
            with anyio.move_on_after(self.config.anti_entropy_interval_s * self.rng.uniform(0.5, 1.5)):
                await self._pull_wanted.wait()
            self._pull_wanted = anyio.Event()
            if self._announce:
                self._announce = False
                await self._send_heartbeat()
            peers = self.transport.peers()
            if peers:
                await self.sync_with(self.rng.choice(sorted(peers)))

    async def sync_with(self, peer: str) -> bool:
        """Run one anti-entropy exchange with ``peer``. Returns False if it failed."""
        try:
            reply = await self._sync_request(peer, SyncRequest(digest_hash=self.ledger.digest_hash()))
            if reply.in_sync:
                return True
            reply = await self._sync_request(peer, SyncRequest(digest=self.ledger.digest()))
            await self._merge_batch(reply.records, source=peer)
            if reply.want:
                wanted = [self.ledger.records[a] for a in reply.want if a in self.ledger.records]
                batch = [r.model_dump(mode="json") for r in wanted[: self.config.max_records_per_reply]]
                await self._sync_request(peer, SyncRequest(records=batch))
            return True
        except TransportError as exc:
            self.on_event("sync_failed", {"peer": peer, "error": type(exc).__name__})
        except PeerError as exc:
            self._reject(exc, source=peer, channel=SYNC_PROTOCOL)
        return False

    async def _sync_request(self, peer: str, request: SyncRequest) -> SyncReply:
        envelope = seal(self.identity, SYNC_KIND, request.model_dump(mode="json", exclude_defaults=True), now_ms=self._now_ms())
        raw = await self.transport.request(
            peer, SYNC_PROTOCOL, envelope.to_bytes(), timeout=self.config.request_timeout_s
        )
        try:
            return SyncReply.model_validate(parse_json(raw, limit=MAX_SYNC_BYTES))
        except ValidationError as exc:
            raise MalformedMessage(f"invalid sync reply: {exc.error_count()} errors") from exc

    async def _handle_sync(self, peer: str, payload: bytes) -> bytes:
        """Serve one anti-entropy step; rejects unauthenticated or malformed requests."""
        try:
            _, request = open_body(payload, SyncRequest, sender=peer, kind=SYNC_KIND, guard=self._guard,
                                   now_ms=self._now_ms(), limit=MAX_SYNC_BYTES)
        except PeerError as exc:
            self._reject(exc, source=peer, channel=SYNC_PROTOCOL)
            raise
        await self._merge_batch(request.records, source=peer)
        if request.digest is None:
            reply = SyncReply(in_sync=request.digest_hash == self.ledger.digest_hash() or not request.digest_hash)
        else:
            ours_newer, theirs_newer = self.ledger.diff(request.digest)
            limit = self.config.max_records_per_reply
            reply = SyncReply(records=[r.model_dump(mode="json") for r in ours_newer[:limit]], want=theirs_newer)
        return json.dumps(reply.model_dump(mode="json", exclude_defaults=True), separators=(",", ":")).encode()

    async def _merge_batch(self, records: list[dict[str, Any]], *, source: str) -> None:
        for data in records:
            outcome = self.ledger.merge_wire(data, now=self.clock())
            if isinstance(outcome, PeerError):
                self._reject(outcome, source=source, channel=SYNC_PROTOCOL, counted=True)
            else:
                await self._after_merge(data, outcome)

    # ---- connections and housekeeping -------------------------------------------------

    async def _maintain_connections(self) -> None:
        """Keep ``target_degree`` direct connections, dialing agents learned from the ledger."""
        connected = set(self.transport.peers())
        missing = self.config.target_degree - len(connected)
        now = self.clock()
        if self.rng.random() < self.config.probe_probability:
            await self._probe_unavailable(connected, now, count=1)
        if missing <= 0:
            return
        candidates = sorted(
            a
            for a, r in self.ledger.records.items()
            if a != self.agent_id and a not in connected and r.addrs and self.ledger.is_available(a, now=now)
        )
        for agent_id in self.rng.sample(candidates, min(missing, len(candidates))):
            await self._dial(self.ledger.records[agent_id].addrs[0])
        if len(candidates) < missing:
            await self._probe_unavailable(connected, now, count=missing - len(candidates))
        if not self.transport.peers():
            for addr in self.bootstrap:
                await self._dial(addr)

    async def _probe_unavailable(self, connected: set[str], now: float, *, count: int) -> None:
        """Dial ``count`` random agents we hold as unavailable (suspected, silent) but not leaving.

        After a partition heals no connection crosses the old cut, so no heartbeat or sync
        can either: without this probe each side would keep the other unavailable forever.
        A successful dial is a contact (``observe_contact``), which makes the agent available
        again; then heartbeats and anti-entropy repair the rest."""
        unavailable = sorted(
            a
            for a, r in self.ledger.records.items()
            if a != self.agent_id and a not in connected and r.addrs and r.availability != "leaving"
            and not self.ledger.is_available(a, now=now)
        )
        for agent_id in self.rng.sample(unavailable, min(count, len(unavailable))):
            await self._dial(self.ledger.records[agent_id].addrs[0])

    async def _dial(self, addr: str) -> None:
        try:
            with anyio.fail_after(self.config.request_timeout_s):
                peer = await self.transport.connect(addr)
            self.on_event("connected", {"peer": peer, "addr": addr})
        except (TransportError, TimeoutError) as exc:
            self.on_event("dial_failed", {"addr": addr, "error": type(exc).__name__})

    async def _collect_garbage(self) -> None:
        removed = self.ledger.collect_garbage(now=self.clock(), keep=[self.agent_id])
        if removed:
            self.on_event("records_collected", {"agents": removed})

    def _reject(self, exc: PeerError, *, source: str, channel: str, counted: bool = False) -> None:
        if not counted:
            self.ledger.rejected[exc.reason] += 1
        self.on_event("rejected", {"reason": exc.reason, "source": source, "channel": channel, "detail": str(exc)[:200]})
