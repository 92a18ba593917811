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
- **Sharded liveness** (``GossipConfig.shards`` > 1, see ``ledger.shard``; paper §3.3 gateways):
  flooding every heartbeat costs each agent O(N) bytes per interval. With L shards an agent sends
  its heartbeat to its shard's gateway only (``/symphony/liveness/1.0.0``, one small request),
  and the gateway publishes a signed delta on ``symphony/shard-liveness/1`` only when its
  shard's availability changes. Replicas keep a gateway-vouched agent available until withdrawn
  (or suspected locally), so at steady state liveness costs O(1) per agent whatever N. A failed
  gateway is suspected by the member whose heartbeat it dropped, and the role moves to the
  shard's runner-up by rendezvous hashing. A joiner asks its gateway once for its view of who
  is up (a snapshot), since deltas only carry changes.
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

from symphony.errors import ConfigError, MalformedMessage, PeerError, TransportError
from symphony.ledger.shard import MAX_DELTA_IDS, ShardLiveness, gateway, liveness_delta, shard_of
from symphony.ledger.store import Ledger, Merge
from symphony.protocol.envelope import ReplayGuard, open_body, parse_json, seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_RECORD_BYTES, Heartbeat, LedgerRecord, SyncReply, SyncRequest
from symphony.transport.base import PeerEvent, Transport

LEDGER_TOPIC = "symphony/ledger/1"
HEARTBEAT_TOPIC = "symphony/heartbeat/1"
SYNC_PROTOCOL = "/symphony/ledger-sync/1.0.0"
SYNC_KIND = "ledger.sync"
LIVENESS_PROTOCOL = "/symphony/liveness/1.0.0"
SHARD_TOPIC = "symphony/shard-liveness/1"
SHARD_KIND = "ledger.shard"
SNAPSHOT_REQUEST = b"snapshot"
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
    shards: int = 1  # L; 1 = flooded heartbeats (small networks), see ``ledger.shard.shards_for``


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
        self._published_up: set[str] = set()  # as gateway: the members the network believes up
        self._gateway_since: float | None = None
        self._snapshot_taken = False

    @property
    def sharded(self) -> bool:
        return self.config.shards > 1

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
        if self.sharded:
            self.transport.set_handler(LIVENESS_PROTOCOL, self._handle_liveness)
            await self.transport.subscribe(SHARD_TOPIC, self._on_shard_liveness)
        else:
            await self.transport.subscribe(HEARTBEAT_TOPIC, self._on_heartbeat_message)
        for addr in self.bootstrap:
            await self._dial(addr)
        async with anyio.create_task_group() as tg:
            if self.sharded:
                tg.start_soon(self._join_shards)
                tg.start_soon(self._every, self.ledger.config.heartbeat_interval_s, self._publish_shard_liveness)
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
            if self.ledger.keeps is not None and not self.ledger.keeps(heartbeat.agent_id):
                return  # another shard's agent: a sharded replica holds neither its record nor its liveness
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
        if self.sharded:
            await self._heartbeat_to_gateway(heartbeat.to_bytes())
        else:
            await self.transport.publish(HEARTBEAT_TOPIC, heartbeat.to_bytes())

    # ---- sharded liveness (module docstring) --------------------------------------------

    def _shard(self, agent_id: str) -> int:
        return shard_of(agent_id, self.config.shards)

    def gateway(self) -> str | None:
        """This node's view of its shard's gateway (itself counted as available)."""
        return self._gateway_of(self._shard(self.agent_id))

    async def _heartbeat_to_gateway(self, heartbeat: bytes, attempts: int = 3) -> None:
        """Send our heartbeat to our gateway; a gateway that fails is suspected and the next one tried.

        The receiver answers with the gateway in *its* view; if that is another agent (views
        differ while records spread), we send the heartbeat there too, once."""
        target = self.gateway()
        redirected = False
        for _ in range(attempts):
            if target is None or target == self.agent_id:
                return
            try:
                reply = (await self._liveness_request(target, heartbeat)).decode(errors="replace")
            except (TransportError, ConfigError, TimeoutError) as exc:
                self.ledger.suspect(target, now=self.clock())
                self.on_event("gateway_failed", {"gateway": target, "error": type(exc).__name__})
                target = self.gateway()
                continue
            self.ledger.vouch(target, now=self.clock())  # it answered: alive until it fails us
            if redirected or reply == target or reply not in self.ledger.records:
                return
            if not self.ledger.is_available(reply, now=self.clock()):
                self.ledger.vouch(reply, now=self.clock())  # the receiver vouches for its gateway
            target, redirected = reply, True

    async def _join_shards(self) -> None:
        """On joining: pull the records and a snapshot of who is up from a peer, then heartbeat at once
        (deltas only carry changes, so a joiner would otherwise see no one available)."""
        while not self._snapshot_taken:
            peers = self._kept_peers()
            if peers and await self.sync_with(peers[0]) and await self._take_snapshot(peers[0]):
                self._snapshot_taken = True
                await self._send_heartbeat()
                return
            await anyio.sleep(self.config.maintain_interval_s)

    async def _liveness_request(self, peer: str, payload: bytes) -> bytes:
        if peer not in self.transport.peers():
            record = self.ledger.records.get(peer)
            if record is None or not record.addrs:
                raise ConfigError(f"no address for {peer}")
            with anyio.fail_after(self.config.request_timeout_s):
                await self.transport.connect(record.addrs[0])
        return await self.transport.request(peer, LIVENESS_PROTOCOL, payload, timeout=self.config.request_timeout_s)

    async def _take_snapshot(self, peer: str) -> bool:
        """Learn from ``peer`` who is up; returns whether it answered."""
        try:
            raw = await self._liveness_request(peer, SNAPSHOT_REQUEST)
            _, snapshot = open_body(raw, ShardLiveness, sender=peer, kind=SHARD_KIND, guard=self._guard,
                                    now_ms=self._now_ms(), limit=MAX_SYNC_BYTES)
        except (TransportError, ConfigError, TimeoutError) as exc:
            self.on_event("snapshot_failed", {"peer": peer, "error": type(exc).__name__})
            return False
        except PeerError as exc:
            self._reject(exc, source=peer, channel=LIVENESS_PROTOCOL)
            return False
        now = self.clock()
        for agent_id in snapshot.up:
            if agent_id != self.agent_id and not self.ledger.is_available(agent_id, now=now):
                self.ledger.vouch(agent_id, now=now)
        self._pull_if_unknown(snapshot.up)
        return True

    def _kept_peers(self) -> list[str]:
        """Connected peers worth syncing with, sorted: all of them, or on a sharded replica
        (``Ledger.keeps``, architecture §9) the members of our shard only (others hold no record we keep)."""
        keeps = self.ledger.keeps
        return sorted(p for p in self.transport.peers() if keeps is None or keeps(p))

    def _pull_if_unknown(self, agent_ids: list[str]) -> None:
        """Agents vouched for whose records we lack: pull them now (as a heartbeat "behind" would)."""
        keeps = self.ledger.keeps
        if any(a not in self.ledger.records and (keeps is None or keeps(a)) for a in agent_ids):
            self._pull_wanted.set()

    async def _handle_liveness(self, peer: str, payload: bytes) -> bytes:
        """A member's heartbeat (we are, or may become, its gateway), or a joiner's snapshot request."""
        now = self.clock()
        if payload == SNAPSHOT_REQUEST:
            up = sorted(a for a in self.ledger.records if a == self.agent_id or self.ledger.is_available(a, now=now))
            body = ShardLiveness(shard=0, shards=self.config.shards, up=up[:MAX_DELTA_IDS])
            return seal(self.identity, SHARD_KIND, body.model_dump(mode="json"), now_ms=self._now_ms()).to_bytes()
        try:
            heartbeat = Heartbeat.parse(payload)
            if heartbeat.agent_id != peer or self._shard(peer) != self._shard(self.agent_id):
                raise MalformedMessage("a heartbeat must come from its author, a member of our shard")
            behind = self.ledger.observe_heartbeat(heartbeat, now=now)
        except PeerError as exc:
            self._reject(exc, source=peer, channel=LIVENESS_PROTOCOL)
            raise
        if behind:
            self._pull_wanted.set()
        return (self.gateway() or "").encode()

    async def _publish_shard_liveness(self) -> None:
        """As our shard's gateway: publish who came up or went down since our last delta.

        A new gateway starts from what the network believes (the members available here) and
        withdraws no one for one TTL, the time every live member needs to reach it."""
        now, mine = self.clock(), self._shard(self.agent_id)
        if self.gateway() != self.agent_id:
            self._gateway_since = None
            return
        members = [a for a in self.ledger.records if self._shard(a) == mine]
        if self._gateway_since is None:  # new in the role: start from "everyone may be believed up"
            self._gateway_since = now
            self._published_up = {a for a in members if a != self.agent_id}
        up = {a for a in members if a == self.agent_id or self.ledger.heartbeat_fresh(a, now=now)}
        if now - self._gateway_since < self.ledger.config.ttl_s:
            up |= self._published_up
        came, went = liveness_delta(self._published_up, up)
        if not (came or went):
            return
        for agent_id in went:
            self.ledger.withdraw(agent_id, now=now)
        self._published_up = up
        # the gateway re-affirms itself in every delta: an earlier one may have found no peers
        body = ShardLiveness(shard=mine, shards=self.config.shards, up=sorted({*came, self.agent_id}), down=went)
        envelope = seal(self.identity, SHARD_KIND, body.model_dump(mode="json"), now_ms=self._now_ms())
        self.on_event("shard_liveness", {"shard": mine, "up": len(came), "down": len(went)})
        await self.transport.publish(SHARD_TOPIC, envelope.to_bytes())

    async def _on_shard_liveness(self, source: str, data: bytes) -> None:
        try:
            _, delta = open_body(data, ShardLiveness, sender=source, kind=SHARD_KIND, guard=self._guard,
                                 now_ms=self._now_ms(), limit=MAX_SYNC_BYTES)
            if delta.shards != self.config.shards or self._shard(source) != delta.shard:
                raise MalformedMessage("shard liveness from an agent outside that shard")
        except PeerError as exc:
            self._reject(exc, source=source, channel=SHARD_TOPIC)
            return
        if self.ledger.keeps is not None and not self.ledger.keeps(source):
            return  # another shard's liveness: a sharded replica holds none of its records
        now = self.clock()
        for agent_id in delta.up:
            if agent_id != self.agent_id and self._shard(agent_id) == delta.shard:
                self.ledger.vouch(agent_id, now=now)
        self._pull_if_unknown(delta.up)
        if delta.down and source != self._gateway_of(delta.shard, without=set(delta.down)):
            self.ledger.rejected["not_gateway"] += 1  # only the shard's gateway (in our view) may withdraw
            return
        for agent_id in delta.down:
            if agent_id != self.agent_id and self._shard(agent_id) == delta.shard:
                self.ledger.withdraw(agent_id, now=now)

    def _gateway_of(self, shard: int, without: frozenset[str] | set[str] = frozenset()) -> str | None:
        """The gateway of ``shard`` over the agents available in this replica (rendezvous), leaving out
        ``without`` (a delta's withdrawals: the heir of a failed gateway withdraws its predecessor)."""
        now = self.clock()
        return gateway(shard, self.config.shards,
                       [a for a in self.ledger.records if a not in without
                        and (a == self.agent_id or self.ledger.is_available(a, now=now))])

    # ---- anti-entropy -----------------------------------------------------------------

    async def _anti_entropy_loop(self) -> None:
        while True:
            with anyio.move_on_after(self.config.anti_entropy_interval_s * self.rng.uniform(0.5, 1.5)):
                await self._pull_wanted.wait()
            self._pull_wanted = anyio.Event()
            if self._announce:
                self._announce = False
                await self._send_heartbeat()
            peers = self._kept_peers()
            if peers:
                await self.sync_with(self.rng.choice(peers))

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
