"""BEACONSELECT through shard gateways (paper §3.3: the beacon contacts at most L gateways, each
forwarding to O(N/L) agents; architecture §9).

Theory of operation
-------------------
On a sharded network a node holds full records of its own shard only and one signed
``ShardSummary`` per other shard (``ledger.shard.SummaryBook``). A beacon round then runs in two
parts, concurrently:

1. **Own shard**: exactly as before (``BeaconSelector``): local QUERY top-L, direct beacons.
2. **Other shards** (``GatewayFanout.collect``): every fresh summary gives, per requirement, an
   upper bound on the score any member of that shard can reach (``summary_bound``) and a guess
   (``summary_estimate``, the best cluster centroid's cosine). Shards are ordered by bound + guess
   (the bound alone orders poorly where it is loose); the first wave asks the ``first_wave`` best.
   Each gateway (``Gateway.handle``) runs QUERY over its shard's records and relays the
   initiator's *own sealed beacon envelope* to its best ``top_l`` members (``RelayResponder`` on
   the member), then returns their replies in a ``GatewayBundle``. Later waves ask the next
   gateways while a shard's bound still beats the ``want``-th best score found for some
   requirement (the threshold algorithm), and tell them that score as a floor, so a gateway relays
   only to members that could improve on it. At most ``max_gateways`` gateways are asked in all,
   whatever N.
3. **End-to-end verification**: a bundle entry is the member's own signed ledger record and its
   own sealed ``beacon.reply`` echoing the initiator's nonce; the initiator checks both against the
   member's key. A gateway can drop replies (bounded by asking several, and by standbys) but can
   neither forge nor inflate one; the caller still caps each claim at the published score.
4. **Failover**: a gateway that does not answer (or answers garbage) is replaced by the shard's
   standby members listed in its summary (the rendezvous runners-up), in order.

Left out on purpose: summaries are not re-checked against the bundle (a lying gateway can hide its
shard, which costs recall, not safety) and gateways do not cache replies across beacons.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
from pydantic import ValidationError

from symphony.beacon.ranking import merge_by_rank
from symphony.beacon.responder import MAX_BEACON_BYTES, BeaconResponder
from symphony.errors import (
    BadSignature,
    ConfigError,
    MalformedMessage,
    PeerError,
    StaleMessage,
    TooLarge,
    TransportError,
)
from symphony.ledger.shard import NotGateway, ShardMismatch, SummaryBook, shard_of, summary_bound, summary_estimate
from symphony.ledger.store import Ledger, QueryFilter, match_score
from symphony.protocol.envelope import Envelope, ReplayGuard, decode_envelope, open_body, open_envelope, seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Beacon, BeaconResponse, LedgerRecord, encode_sparse, encode_vector
from symphony.protocol.sharding import (
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_ENTRIES,
    MAX_FORWARD_BYTES,
    BundleEntry,
    GatewayBundle,
    GatewayForward,
    ShardSummary,
)
from symphony.transport.base import Transport

GATEWAY_PROTOCOL = "/symphony/gateway/1.0.0"  # initiator -> shard gateway
RELAY_PROTOCOL = "/symphony/gateway-relay/1.0.0"  # gateway -> member: the initiator's beacon, relayed
RELAY_SHARE = 0.8  # of the time left, what a gateway gives its members (the rest carries the bundle back)


def beacon_body(requirements: Sequence[Sequence[float]], *, deadline_ms: int, task_type: str = "") -> Beacon:
    """The ``Beacon`` for ``requirements`` (one per sub-task of a chain, sparse-encoded), for callers that
    do not build their own (the sharding bench, tests)."""
    encoded = [encode_sparse(list(r)) for r in requirements]
    return Beacon(requirements=encoded, deadline_ms=deadline_ms, task_type=task_type[:64])


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


class RelayResponder:
    """Member side of ``RELAY_PROTOCOL``: answers an initiator's beacon that its gateway relayed.

    Same checks and answer as ``BeaconResponder.handle``, except that the beacon's signer is the
    initiator named in the envelope, not the peer (the gateway) that delivered it. The node-wide
    replay guard means a beacon relayed twice is answered once.
    """

    def __init__(
        self, *, responder: BeaconResponder, identity: Identity, clock: Callable[[], float], guard: ReplayGuard
    ) -> None:
        self.responder = responder
        self.identity = identity
        self.clock = clock
        self.guard = guard

    def answer(self, raw: bytes) -> bytes:
        """Verify a relayed beacon envelope, score it, return our sealed ``beacon.reply``.

        Raises:
            PeerError: oversized, malformed, badly signed, stale or replayed beacon.
        """
        env = open_envelope(raw, guard=self.guard, now_ms=_now_ms(self.clock), kind="beacon", limit=MAX_BEACON_BYTES)
        try:
            beacon = Beacon.model_validate(env.body)
        except ValidationError as exc:
            raise MalformedMessage(f"invalid beacon body: {exc.errors()[0]['msg']}") from exc
        reply = self.responder.score(beacon, env.nonce)
        return seal(self.identity, "beacon.reply", reply.model_dump(mode="json"), now_ms=_now_ms(self.clock)).to_bytes()

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``RELAY_PROTOCOL``."""
        return self.answer(payload)


@dataclass
class GatewayStats:
    forwards: int = 0
    relayed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class Gateway:
    """A shard member's side of ``GATEWAY_PROTOCOL``: beacon the initiator's requirements in our shard.

    Any member of the shard may serve (they all hold the shard's records), so a standby takes over
    when the gateway dies without any hand-over.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        identity: Identity,
        ledger: Ledger,
        shards: int,
        relay: RelayResponder,
        clock: Callable[[], float],
        guard: ReplayGuard | None = None,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.ledger = ledger
        self.shards = shards
        self.shard = shard_of(identity.agent_id, shards)
        self.relay = relay
        self.clock = clock
        self.guard = guard or ReplayGuard()
        self.stats = GatewayStats()

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``GATEWAY_PROTOCOL``: relay, collect until the deadline, bundle.

        Raises:
            PeerError: bad forward (size, schema, signature, replay), wrong shard or shard count,
                a relayed beacon not signed by the requester, or a deadline already past.
        """
        now = self.clock()
        _, forward = open_body(
            payload,
            GatewayForward,
            sender=peer,
            kind="gateway.forward",
            guard=self.guard,
            now_ms=int(now * 1000),
            limit=MAX_FORWARD_BYTES,
        )
        if forward.shards != self.shards:
            raise ShardMismatch(f"forward for {forward.shards} shards, this network has {self.shards}")
        if forward.shard != self.shard:
            raise NotGateway(f"forward for shard {forward.shard} reached a member of shard {self.shard}")
        if forward.beacon.sender != peer:
            raise BadSignature(f"relayed beacon signed by {forward.beacon.sender} came from {peer}")
        budget = forward.deadline_ms / 1000 - now
        if budget <= 0:
            raise StaleMessage(f"forward reached the gateway {-budget:.3f} s past its deadline")
        members = self.members(forward, now=now)
        entries = await self._relay(members, forward.beacon, timeout=budget * RELAY_SHARE)
        self.stats.forwards += 1
        bundle = GatewayBundle(shard=self.shard, nonce=forward.beacon.nonce, asked=len(members), entries=entries)
        return seal(
            self.identity, "gateway.bundle", bundle.model_dump(mode="json"), now_ms=_now_ms(self.clock)
        ).to_bytes()

    def members(self, forward: GatewayForward, *, now: float) -> list[LedgerRecord]:
        """The members to relay to: each requirement's top-L, keeping only those at or above that
        requirement's floor, merged rank by rank and capped at 2L (the direct chain beacon caps at L)."""
        flt = QueryFilter(exclude=frozenset(forward.exclude))
        floors = forward.floors or [-1.0] * len(forward.requirements)
        ranked = [
            [
                rec
                for rec, score in self.ledger.query(flt, requirement=r, limit=forward.top_l, now=now)
                if score >= floor
            ]
            for r, floor in zip(forward.vectors(), floors, strict=True)
        ]
        return merge_by_rank(ranked, min(2 * forward.top_l, MAX_BUNDLE_ENTRIES), key=lambda record: record.agent_id)

    async def _relay(self, members: list[LedgerRecord], beacon: Envelope, *, timeout: float) -> list[BundleEntry]:
        raw_beacon = beacon.to_bytes()
        entries: list[BundleEntry] = []

        async def ask(record: LedgerRecord) -> None:
            try:
                if record.agent_id == self.identity.agent_id:
                    raw = self.relay.answer(raw_beacon)
                else:
                    if record.agent_id not in connected and record.addrs:
                        await self.transport.connect(record.addrs[0])
                    raw = await self.transport.request(record.agent_id, RELAY_PROTOCOL, raw_beacon, timeout=timeout)
                if len(raw) > MAX_BEACON_BYTES:
                    raise TooLarge(f"relayed reply of {len(raw)} bytes exceeds the {MAX_BEACON_BYTES}-byte cap")
                reply = decode_envelope(raw)  # framing only: the initiator verifies the member's signature
            except (PeerError, TransportError, ConfigError, ValidationError) as exc:
                self.stats.dropped[type(exc).__name__] += 1
                return
            self.stats.relayed += 1
            entries.append(BundleEntry(record=record.model_dump(mode="json"), reply=reply))

        connected = set(self.transport.peers())
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                for record in members:
                    tg.start_soon(ask, record)
        return entries


@dataclass(frozen=True)
class FanoutConfig:
    """How far a gateway beacon reaches (architecture §9)."""

    first_wave: int = 3
    wave: int = 3
    max_gateways: int = 8
    per_gateway_top_l: int = 4
    want: int = 3

    def __post_init__(self) -> None:
        if min(self.first_wave, self.wave, self.max_gateways, self.per_gateway_top_l, self.want) < 1:
            raise ValueError("every FanoutConfig count must be >= 1")


@dataclass(frozen=True)
class VerifiedReply:
    """A member's reply, verified end to end: its record, its scores (one per requirement), its QoS."""

    agent_id: str
    record: LedgerRecord
    reply: BeaconResponse
    scores: tuple[float, ...]
    shard: int
    gateway: str

    def published(self, requirements: Sequence[Sequence[float]]) -> list[float]:
        """phi(published c_j, r_i) per requirement: the cap ``BeaconSelector`` puts on each claim."""
        return [match_score(self.record, list(r)) for r in requirements]


@dataclass
class FanoutStats:
    rounds: int = 0
    gateways_asked: int = 0
    waves: int = 0
    failovers: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class GatewayFanout:
    """The initiator's side: ask shard gateways, best bound first, verify every reply end to end.

    Hook for ``BeaconSelector`` (see architecture §9): when ``active(now)``, run the own-shard
    beacon and ``collect`` concurrently with the same sealed beacon envelope and deadline, then
    rank the union.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        identity: Identity,
        book: SummaryBook,
        clock: Callable[[], float],
        config: FanoutConfig = FanoutConfig(),
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.book = book
        self.shard = shard_of(identity.agent_id, book.shards)
        self.clock = clock
        self.config = config
        self.stats = FanoutStats()
        self._guard = ReplayGuard()

    def active(self, now: float) -> bool:
        """Whether any other shard has a fresh summary (the network is sharded and we know it)."""
        return any(s.shard != self.shard for s in self.book.fresh(now=now))

    async def collect(
        self,
        requirements: Sequence[Sequence[float]],
        envelope: Envelope,
        *,
        top_l: int,
        exclude: frozenset[str] = frozenset(),
        deadline_s: float,
    ) -> list[VerifiedReply]:
        """Beacon the other shards through their gateways; return every verified member reply.

        ``envelope`` is the initiator's sealed ``beacon`` for ``requirements`` (the one it sends
        its own shard), relayed unchanged so that members' replies echo its nonce.
        """
        now = self.clock()
        summaries = {s.shard: s for s in self.book.fresh(now=now) if s.shard != self.shard}
        bounds = {shard: [summary_bound(s, r) for r in requirements] for shard, s in summaries.items()}
        priority = {
            shard: max(
                b + summary_estimate(summaries[shard], r) for b, r in zip(bounds[shard], requirements, strict=True)
            )
            for shard in bounds
        }
        pending = sorted(bounds, key=lambda shard: (-priority[shard], shard))
        found: dict[str, VerifiedReply] = {}
        asked: set[int] = set()
        top = min(top_l, self.config.per_gateway_top_l)
        wave = pending[: min(self.config.first_wave, self.config.max_gateways)]
        self.stats.rounds += 1
        with anyio.move_on_after(deadline_s):
            while wave:
                floors = self._floors(found, len(requirements)) if found else []
                async with anyio.create_task_group() as tg:
                    for shard in wave:
                        tg.start_soon(
                            self._ask_shard, summaries[shard], requirements, envelope, top, floors, exclude, found
                        )
                asked.update(wave)
                self.stats.waves += 1
                floors = self._floors(found, len(requirements))
                wave = [
                    shard
                    for shard in pending
                    if shard not in asked and any(b > f for b, f in zip(bounds[shard], floors, strict=True))
                ]
                wave = wave[: min(self.config.wave, self.config.max_gateways - len(asked))]
        self.stats.gateways_asked += len(asked)
        return sorted(found.values(), key=lambda v: v.agent_id)

    def _floors(self, found: dict[str, VerifiedReply], count: int) -> list[float]:
        """Per requirement, the ``want``-th best score found so far (-1 while fewer were found)."""
        floors = []
        for i in range(count):
            scores = sorted((v.scores[i] for v in found.values()), reverse=True)
            floors.append(scores[self.config.want - 1] if len(scores) >= self.config.want else -1.0)
        return floors

    async def _ask_shard(
        self,
        summary: ShardSummary,
        requirements: Sequence[Sequence[float]],
        envelope: Envelope,
        top_l: int,
        floors: list[float],
        exclude: frozenset[str],
        found: dict[str, VerifiedReply],
    ) -> None:
        """Ask the shard's gateway, then its standbys in turn, until one returns a valid bundle."""
        forward = GatewayForward(
            shard=summary.shard,
            shards=summary.shards,
            requirements=[encode_vector(list(r)) for r in requirements],
            floors=floors,
            top_l=top_l,
            exclude=sorted(exclude)[:256],
            deadline_ms=envelope.body["deadline_ms"],
            beacon=envelope,
        )
        contacts = [(summary.gateway, summary.addrs), *((c.agent_id, c.addrs) for c in summary.standby)]
        for attempt, (agent_id, addrs) in enumerate(contacts):
            if attempt:
                self.stats.failovers += 1
            try:
                raw = await self._request(agent_id, addrs, forward)
                replies = self._verify_bundle(raw, agent_id, summary.shard, envelope.nonce, len(requirements), exclude)
            except (PeerError, TransportError, ConfigError) as exc:
                self.stats.rejected[getattr(exc, "reason", type(exc).__name__)] += 1
                continue
            for reply in replies:
                found.setdefault(reply.agent_id, reply)
            return

    async def _request(self, agent_id: str, addrs: list[str], forward: GatewayForward) -> bytes:
        if agent_id not in self.transport.peers() and addrs:
            await self.transport.connect(addrs[0])
        sealed = seal(self.identity, "gateway.forward", forward.model_dump(mode="json"), now_ms=_now_ms(self.clock))
        timeout = max(0.001, forward.deadline_ms / 1000 - self.clock())
        return await self.transport.request(agent_id, GATEWAY_PROTOCOL, sealed.to_bytes(), timeout=timeout)

    def _verify_bundle(
        self, raw: bytes, gateway: str, shard: int, nonce: str, count: int, exclude: frozenset[str]
    ) -> list[VerifiedReply]:
        """Open the gateway's bundle; keep each entry that verifies end to end, count the others.

        Raises:
            PeerError: the bundle itself is invalid, or answers another beacon or shard.
        """
        _, bundle = open_body(
            raw,
            GatewayBundle,
            sender=gateway,
            kind="gateway.bundle",
            guard=self._guard,
            now_ms=_now_ms(self.clock),
            limit=MAX_BUNDLE_BYTES,
        )
        if bundle.nonce != nonce or bundle.shard != shard:
            raise BadSignature(f"bundle from {gateway} answers another beacon or shard")
        verified = []
        for entry in bundle.entries:
            try:
                verified.append(self._verify_entry(entry, gateway, shard, nonce, count, exclude))
            except PeerError as exc:
                self.stats.rejected[exc.reason] += 1
        return verified

    def _verify_entry(
        self, entry: BundleEntry, gateway: str, shard: int, nonce: str, count: int, exclude: frozenset[str]
    ) -> VerifiedReply:
        record = LedgerRecord.from_wire(entry.record)
        if shard_of(record.agent_id, self.book.shards) != shard or record.agent_id in exclude:
            raise MalformedMessage(f"{record.agent_id} is not an eligible member of shard {shard}")
        _, reply = open_body(
            entry.reply.to_bytes(),
            BeaconResponse,
            sender=record.agent_id,
            kind="beacon.reply",
            guard=self._guard,
            now_ms=_now_ms(self.clock),
            limit=MAX_BEACON_BYTES,
        )
        scores = list(reply.scores)
        if reply.nonce != nonce:
            raise BadSignature(f"reply of {record.agent_id} does not echo our nonce")
        if len(scores) != count or not all(math.isfinite(s) for s in scores):
            raise MalformedMessage(f"reply of {record.agent_id} has {len(scores)} scores for {count} requirements")
        return VerifiedReply(
            agent_id=record.agent_id, record=record, reply=reply, scores=tuple(scores), shard=shard, gateway=gateway
        )


__all__ = [
    "GATEWAY_PROTOCOL",
    "RELAY_PROTOCOL",
    "FanoutConfig",
    "FanoutStats",
    "Gateway",
    "GatewayFanout",
    "GatewayStats",
    "RelayResponder",
    "VerifiedReply",
    "beacon_body",
]
