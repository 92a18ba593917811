"""Sharded liveness (paper §3.3 gateways; shard math in ``ledger.shard``): a pure gateway state and
the thin async shell that carries its messages.

Theory of operation
-------------------
Flooding every heartbeat costs each agent O(N) bytes per interval. With L shards
(``GossipConfig.shards`` > 1) an agent sends its heartbeat to its shard's gateway only
(``/symphony/liveness/1.0.0``, one small request), and the gateway publishes a signed delta on
``symphony/shard-liveness/1`` only when its shard's availability changes. Replicas keep a
gateway-vouched agent available until withdrawn (or suspected locally), so at steady state
liveness costs O(1) per agent whatever N.

- **Gateway** (``GatewayState``, no I/O): fed ``now`` and who its replica sees (the shard's
  members, those with a fresh heartbeat) every heartbeat interval, it decides whether to publish
  a ``LivenessDelta`` and whom to withdraw. A new gateway starts from "every member may be
  believed up" (what the network believes, as far as it can tell) and withdraws no one for one
  TTL, the time every live member needs to find it.
- **Replica** (``vouched``, ``withdrawn``, ``may_withdraw``): a delta's ups are vouched for;
  its downs count only if its sender is the shard's gateway in our view, leaving out the agents it
  withdraws (the heir of a failed gateway withdraws its predecessor). Anyone else's withdrawal is
  counted (``not_gateway``) and ignored.
- **Failover**: a gateway that fails a member's heartbeat is suspected by that member, and the
  role moves to the shard's runner-up by rendezvous hashing (``ledger.shard.gateway``).
- **Join**: deltas only carry changes, so a joiner asks a peer once for its view of who is up
  (``snapshot``).

``ShardedLiveness`` is the shell: it reads the replica, feeds the pure parts, then sends, publishes
and applies what they decided.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import anyio

from symphony.errors import ConfigError, MalformedMessage, PeerError, TransportError
from symphony.ledger.context import GossipContext, Step
from symphony.ledger.shard import MAX_DELTA_IDS, ShardLiveness, gateway, liveness_delta, shard_of
from symphony.ledger.sync import MAX_SYNC_BYTES, AntiEntropy
from symphony.protocol.envelope import open_body, seal
from symphony.protocol.messages import Heartbeat

LIVENESS_PROTOCOL = "/symphony/liveness/1.0.0"
SHARD_TOPIC = "symphony/shard-liveness/1"
SHARD_KIND = "ledger.shard"
SNAPSHOT_REQUEST = b"snapshot"

# ---- the pure core ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LivenessDelta:
    """A gateway's decision: who of its shard came up and who went down since its last delta."""

    shard: int
    came: tuple[str, ...]
    went: tuple[str, ...]

    def body(self, *, shards: int, gateway: str) -> ShardLiveness:
        """The delta as it travels; the gateway re-affirms itself in every one (an earlier may have found no peers)."""
        return ShardLiveness(shard=self.shard, shards=shards, up=sorted({*self.came, gateway}), down=list(self.went))


@dataclass
class GatewayState:
    """One node's gateway role over its shard, sans I/O (the module docstring).

    Call ``tick`` every heartbeat interval while this node is its shard's gateway in its own view,
    ``resign`` while it is not.
    """

    agent_id: str
    shard: int
    ttl_s: float
    believed_up: frozenset[str] = frozenset()  # the members the network believes up: what we published
    since: float | None = None  # when this node took the role; None while it holds none

    def resign(self) -> None:
        """Another member is the gateway now; taking the role again starts afresh."""
        self.since = None

    def tick(self, *, now: float, members: Iterable[str], fresh: Collection[str]) -> LivenessDelta | None:
        """The delta to publish now, or None when the shard's availability did not change.

        Args:
            members: the shard's agents this replica holds a record of (this node included).
            fresh: those whose heartbeat reached this node within the TTL.

        The caller withdraws ``went`` locally and publishes ``body()``.
        """
        members = list(members)
        if self.since is None:  # new in the role: start from "everyone may be believed up"
            self.since = now
            self.believed_up = frozenset(a for a in members if a != self.agent_id)
        up = {a for a in members if a == self.agent_id or a in fresh}
        if now - self.since < self.ttl_s:
            up |= self.believed_up
        came, went = liveness_delta(set(self.believed_up), up)
        if not (came or went):
            return None
        self.believed_up = frozenset(up)
        return LivenessDelta(shard=self.shard, came=tuple(came), went=tuple(went))


def check_delta(delta: ShardLiveness, *, source: str, shards: int) -> None:
    """Raises MalformedMessage unless ``source`` is a member of the shard the delta is about, in our network."""
    if delta.shards != shards or shard_of(source, shards) != delta.shard:
        raise MalformedMessage("shard liveness from an agent outside that shard")


def vouched(delta: ShardLiveness, *, me: str) -> list[str]:
    """The agents a replica vouches for on ``delta``: its ups that belong to its shard, never ``me``."""
    return [a for a in delta.up if a != me and shard_of(a, delta.shards) == delta.shard]


def withdrawn(delta: ShardLiveness, *, me: str) -> list[str]:
    """The agents a replica withdraws on an accepted ``delta``: its downs of its shard, never ``me``."""
    return [a for a in delta.down if a != me and shard_of(a, delta.shards) == delta.shard]


def may_withdraw(delta: ShardLiveness, *, source: str, available: Iterable[str]) -> bool:
    """Whether ``source`` may withdraw: it is the shard's gateway over ``available`` (this replica's view,
    itself included) less the agents withdrawn (the heir of a failed gateway withdraws its predecessor)."""
    if not delta.down:
        return True
    down = set(delta.down)
    return source == gateway(delta.shard, delta.shards, [a for a in available if a not in down])


def check_member_heartbeat(heartbeat: Heartbeat, *, peer: str, me: str, shards: int) -> None:
    """Raises MalformedMessage unless ``heartbeat`` comes from its author, a member of our shard."""
    if heartbeat.agent_id != peer or shard_of(peer, shards) != shard_of(me, shards):
        raise MalformedMessage("a heartbeat must come from its author, a member of our shard")


def snapshot(up: Iterable[str], *, shards: int) -> ShardLiveness:
    """A gateway's (or any member's) view of who is up, for a joiner (capped at ``MAX_DELTA_IDS``)."""
    return ShardLiveness(shard=0, shards=shards, up=sorted(up)[:MAX_DELTA_IDS])


# ---- the shell ---------------------------------------------------------------------------------


class ShardedLiveness:
    """Carries one node's sharded-liveness messages (``LedgerService.run`` starts it when ``shards`` > 1)."""

    def __init__(self, ctx: GossipContext, *, anti_entropy: AntiEntropy, heartbeat: Step) -> None:
        self.ctx = ctx
        self.anti_entropy = anti_entropy
        self._heartbeat = heartbeat
        self.shards = ctx.config.shards
        self.shard = shard_of(ctx.agent_id, self.shards)
        self.state = GatewayState(ctx.agent_id, shard=self.shard, ttl_s=ctx.ledger.config.ttl_s)

    def available(self, *, now: float) -> list[str]:
        """The agents available in this replica at ``now`` (this node counted)."""
        ledger, me = self.ctx.ledger, self.ctx.agent_id
        return [a for a in ledger.records if a == me or ledger.is_available(a, now=now)]

    def gateway(self) -> str | None:
        """This node's view of its shard's gateway (itself counted as available)."""
        return gateway(self.shard, self.shards, self.available(now=self.ctx.clock()))

    # ---- as a member ------------------------------------------------------------------------

    async def heartbeat(self, heartbeat: bytes, attempts: int = 3) -> None:
        """Send our heartbeat to our gateway; a gateway that fails is suspected and the next one tried.

        The receiver answers with the gateway in *its* view; if that is another agent (views
        differ while records spread), we send the heartbeat there too, once."""
        ledger, clock = self.ctx.ledger, self.ctx.clock
        target = self.gateway()
        redirected = False
        for _ in range(attempts):
            if target is None or target == self.ctx.agent_id:
                return
            try:
                reply = (await self._request(target, heartbeat)).decode(errors="replace")
            except (TransportError, ConfigError, TimeoutError) as exc:
                ledger.suspect(target, now=clock())
                self.ctx.on_event("gateway_failed", {"gateway": target, "error": type(exc).__name__})
                target = self.gateway()
                continue
            ledger.vouch(target, now=clock())  # it answered: alive until it fails us
            if redirected or reply == target or reply not in ledger.records:
                return
            if not ledger.is_available(reply, now=clock()):
                ledger.vouch(reply, now=clock())  # the receiver vouches for its gateway
            target, redirected = reply, True

    async def join(self) -> None:
        """On joining: pull the records and a snapshot of who is up from a peer, then heartbeat at once
        (deltas only carry changes, so a joiner would otherwise see no one available)."""
        while True:
            peers = self.ctx.kept_peers()
            if peers and await self.anti_entropy.sync_with(peers[0]) and await self._take_snapshot(peers[0]):
                await self._heartbeat()
                return
            await anyio.sleep(self.ctx.config.maintain_interval_s)

    async def _take_snapshot(self, peer: str) -> bool:
        """Learn from ``peer`` who is up; returns whether it answered."""
        ctx = self.ctx
        try:
            raw = await self._request(peer, SNAPSHOT_REQUEST)
            _, body = open_body(raw, ShardLiveness, sender=peer, kind=SHARD_KIND, guard=ctx.guard,
                                now_ms=ctx.now_ms(), limit=MAX_SYNC_BYTES)
        except (TransportError, ConfigError, TimeoutError) as exc:
            ctx.on_event("snapshot_failed", {"peer": peer, "error": type(exc).__name__})
            return False
        except PeerError as exc:
            ctx.reject(exc, source=peer, channel=LIVENESS_PROTOCOL)
            return False
        now = ctx.clock()
        for agent_id in body.up:
            if agent_id != ctx.agent_id and not ctx.ledger.is_available(agent_id, now=now):
                ctx.ledger.vouch(agent_id, now=now)
        self.anti_entropy.pull_if_unknown(body.up)
        return True

    async def _request(self, peer: str, payload: bytes) -> bytes:
        """One liveness request, dialing ``peer`` from its record first if we hold no connection."""
        ctx = self.ctx
        if peer not in ctx.transport.peers():
            record = ctx.ledger.records.get(peer)
            if record is None or not record.addrs:
                raise ConfigError(f"no address for {peer}")
            with anyio.fail_after(ctx.config.request_timeout_s):
                await ctx.transport.connect(record.addrs[0])
        return await ctx.transport.request(peer, LIVENESS_PROTOCOL, payload, timeout=ctx.config.request_timeout_s)

    async def on_delta(self, source: str, data: bytes) -> None:
        """``SHARD_TOPIC`` subscriber: apply a gateway's delta (``vouched``, ``may_withdraw``, ``withdrawn``)."""
        ctx = self.ctx
        try:
            _, delta = open_body(data, ShardLiveness, sender=source, kind=SHARD_KIND, guard=ctx.guard,
                                 now_ms=ctx.now_ms(), limit=MAX_SYNC_BYTES)
            check_delta(delta, source=source, shards=self.shards)
        except PeerError as exc:
            ctx.reject(exc, source=source, channel=SHARD_TOPIC)
            return
        if ctx.ledger.keeps is not None and not ctx.ledger.keeps(source):
            return  # another shard's liveness: a sharded replica holds none of its records
        now = ctx.clock()
        for agent_id in vouched(delta, me=ctx.agent_id):
            ctx.ledger.vouch(agent_id, now=now)
        self.anti_entropy.pull_if_unknown(delta.up)
        # most deltas withdraw nobody: only then is this replica's O(N) view of the shard needed
        if delta.down and not may_withdraw(delta, source=source, available=self.available(now=now)):
            ctx.ledger.rejected["not_gateway"] += 1  # only the shard's gateway (in our view) may withdraw
            return
        for agent_id in withdrawn(delta, me=ctx.agent_id):
            ctx.ledger.withdraw(agent_id, now=now)

    # ---- as the gateway (or a joiner's peer) ------------------------------------------------

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """``LIVENESS_PROTOCOL`` handler: a member's heartbeat (we are, or may become, its gateway),
        answered with our view of the gateway, or a joiner's snapshot request."""
        ctx = self.ctx
        now = ctx.clock()
        if payload == SNAPSHOT_REQUEST:
            body = snapshot(self.available(now=now), shards=self.shards)
            return seal(ctx.identity, SHARD_KIND, body.model_dump(mode="json"), now_ms=ctx.now_ms()).to_bytes()
        try:
            heartbeat = Heartbeat.parse(payload)
            check_member_heartbeat(heartbeat, peer=peer, me=ctx.agent_id, shards=self.shards)
            behind = ctx.ledger.observe_heartbeat(heartbeat, now=now)
        except PeerError as exc:
            ctx.reject(exc, source=peer, channel=LIVENESS_PROTOCOL)
            raise
        if behind:
            self.anti_entropy.wake()
        return (self.gateway() or "").encode()

    async def publish(self) -> None:
        """Every heartbeat interval: as our shard's gateway, publish and apply ``GatewayState``'s delta."""
        ctx = self.ctx
        now = ctx.clock()
        if self.gateway() != ctx.agent_id:
            self.state.resign()
            return
        members = [a for a in ctx.ledger.records if shard_of(a, self.shards) == self.shard]
        fresh = {a for a in members if ctx.ledger.heartbeat_fresh(a, now=now)}
        delta = self.state.tick(now=now, members=members, fresh=fresh)
        if delta is None:
            return
        for agent_id in delta.went:
            ctx.ledger.withdraw(agent_id, now=now)
        body = delta.body(shards=self.shards, gateway=ctx.agent_id)
        envelope = seal(ctx.identity, SHARD_KIND, body.model_dump(mode="json"), now_ms=ctx.now_ms())
        ctx.on_event("shard_liveness", {"shard": self.shard, "up": len(delta.came), "down": len(delta.went)})
        await ctx.transport.publish(SHARD_TOPIC, envelope.to_bytes())
