"""A node's defences at its network edge: blacklist, rate limits, and reputation fed by rejections.

``Defences`` sits between the transport and the protocol handlers of one node (DESIGN §1:
"every network input is untrusted"). For each incoming request it

1. refuses it unread if the sender is blacklisted (``ReputationTable``),
2. drops it if the sender's token bucket for that protocol is empty (``RateLimiter``) and
   records a ``FLOOD`` offence,
3. runs the handler, and when the handler rejects the input (``PeerError``: bad signature,
   replay, stale, malformed) records an ``INVALID`` offence before the error goes back to the
   transport (which fails the request on the sender's side).

Reputation is shared, not trusted: a node publishes the agents it suspects (local score under
0.4; blacklisted ones at 0) in its own ledger record (``reputation``, signed by it like the
rest of the record), and ``absorb`` turns each accusation, from an accuser it does not itself
distrust, into an ``ACCUSED`` offence weighted by how low the published score is (0.4 -> 0.2,
0 -> 1; only increases count, once per accuser). So one lie caught by each of several nodes adds
up to a blacklisting everywhere, while an agent with local merits survives a few slanderers
(a weakness remains: colluders can slander an honest agent that a node has no merits for).

It also listens to the node's event stream: a ledger record that fails its owner-signature check
is a ``FORGED_RECORD`` by whoever published it, and a capped beacon score claim is an
``INFLATED_CLAIM``. Every drop is counted in ``rejected`` under a stable reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from symphony.errors import PeerError
from symphony.ledger.reputation import Offence, ReputationTable
from symphony.protocol.limits import RateLimiter
from symphony.protocol.messages import LedgerRecord
from symphony.transport.base import (
    MessageHandler,
    OffenceHandler,
    PeerEventHandler,
    RequestHandler,
    Transport,
    TransportStats,
)

EventSink = Callable[[str, dict[str, Any]], None]


# Rejections an honest peer can cause (a newer protocol version, a clock outside the skew window):
# counted, but no evidence of malice.
HONEST_MISTAKES = frozenset({"wrong_version", "stale"})


class Refused(PeerError):
    """The sender is blacklisted or over its rate limit; the request was not read."""

    reason = "refused"


@dataclass
class Defences:
    """Blacklist + rate limit + reputation bookkeeping for one node."""

    clock: Callable[[], float]
    reputation: ReputationTable = field(default_factory=ReputationTable)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    on_event: EventSink = lambda kind, fields: None
    rejected: Counter[str] = field(default_factory=Counter)
    _absorbed: dict[tuple[str, str], float] = field(default_factory=dict)

    def guard(self, protocol: str, handler: RequestHandler) -> RequestHandler:
        """Wrap a request handler with the checks of the module docstring."""

        async def guarded(peer: str, payload: bytes) -> bytes:
            now = self.clock()
            if self.reputation.is_blacklisted(peer, now=now):
                self._count("blacklisted", peer, protocol)
                raise Refused(f"{peer} is blacklisted")
            if not self.limiter.allow(peer, protocol, now=now):
                self._count("rate_limited", peer, protocol)
                self.penalize(peer, Offence.FLOOD)
                raise Refused(f"{peer} is over its rate limit on {protocol}")
            try:
                return await handler(peer, payload)
            except PeerError as exc:
                self._count(exc.reason, peer, protocol)
                if exc.reason not in HONEST_MISTAKES:
                    self.penalize(peer, Offence.INVALID)
                raise

        return guarded

    def observe(self, kind: str, fields: dict[str, Any]) -> None:
        """Event sink: turns rejections seen elsewhere in the stack into reputation."""
        if kind == "rejected" and fields.get("reason") == "bad_signature" and isinstance(fields.get("source"), str):
            self.penalize(fields["source"], Offence.FORGED_RECORD)
        elif kind == "score_claim_capped" and isinstance(fields.get("agent"), str):
            self.penalize(fields["agent"], Offence.INFLATED_CLAIM)

    def penalize(self, peer: str, offence: Offence, *, weight: float = 1.0) -> None:
        now = self.clock()
        if self.reputation.penalize(peer, offence, now=now, weight=weight):
            standing = self.reputation.standing(peer)
            first = standing.first_offence if standing is not None else now
            self.on_event("blacklisted", {"agent": peer, "offence": offence.value,
                                          "detect_s": round(now - (first if first is not None else now), 3)})

    def accusations(self, *, now: float, limit: int = 64) -> dict[str, float]:
        """What to publish in our ledger record: the agents we suspect, worst first, at most ``limit``."""
        suspects = self.reputation.suspects(now=now)
        return dict(sorted(suspects.items(), key=lambda item: (item[1], item[0]))[:limit])

    def absorb(self, records: Iterable[LedgerRecord], *, me: str) -> None:
        """Count the growth of each accusation in others' records, unless we distrust the accuser."""
        now = self.clock()
        for record in records:
            accuser = record.agent_id
            if accuser == me or self.reputation.is_blacklisted(accuser, now=now):
                continue
            for accused, score in record.reputation.items():
                if accused == me or not 0.0 <= score < 0.5:
                    continue
                weight = (0.5 - score) * 2.0
                done = self._absorbed.get((accuser, accused), 0.0)
                if weight > done + 1e-9:
                    self._absorbed[(accuser, accused)] = weight
                    self.penalize(accused, Offence.ACCUSED, weight=weight - done)
        if len(self._absorbed) > 64 * self.reputation.config.capacity:
            self._absorbed.clear()

    def _count(self, reason: str, peer: str, protocol: str) -> None:
        self.rejected[reason] += 1
        self.on_event("request_refused", {"reason": reason, "peer": peer, "protocol": protocol})


class GuardedTransport:
    """A transport whose request handlers all pass through ``Defences.guard``; the rest delegates.

    Handed to the protocol services instead of the raw transport, so every handler a service
    installs (ledger sync, beacon, task) is guarded without the services knowing."""

    def __init__(self, inner: Transport, defences: Defences) -> None:
        self.inner = inner
        self.defences = defences

    @property
    def peer_id(self) -> str:
        return self.inner.peer_id

    @property
    def stats(self) -> TransportStats:
        return self.inner.stats

    def listen_addrs(self) -> list[str]:
        return self.inner.listen_addrs()

    async def connect(self, addr: str) -> str:
        return await self.inner.connect(addr)

    def peers(self) -> list[str]:
        return self.inner.peers()

    def set_handler(self, protocol: str, handler: RequestHandler) -> None:
        self.inner.set_handler(protocol, self.defences.guard(protocol, handler))

    async def request(self, peer: str, protocol: str, payload: bytes, *, timeout: float) -> bytes:
        return await self.inner.request(peer, protocol, payload, timeout=timeout)

    async def subscribe(self, topic: str, handler: MessageHandler) -> None:
        await self.inner.subscribe(topic, handler)

    async def publish(self, topic: str, data: bytes) -> None:
        await self.inner.publish(topic, data)

    def on_peer_event(self, handler: PeerEventHandler) -> None:
        self.inner.on_peer_event(handler)

    def on_offence(self, handler: OffenceHandler) -> None:
        self.inner.on_offence(handler)
