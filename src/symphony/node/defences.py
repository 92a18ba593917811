"""A node's defences at its network edge: blacklist, rate limits, and reputation fed by rejections.

``Defences`` sits between the transport and the protocol handlers of one node (DESIGN §1:
"every network input is untrusted"). For each incoming request it

1. refuses it unread if the sender is blacklisted (``ReputationTable``),
2. drops it if the sender's token bucket for that protocol is empty (``RateLimiter``) and
   records a ``FLOOD`` offence,
3. runs the handler, and when the handler rejects the input (``PeerError``: bad signature,
   replay, stale, malformed) records an ``INVALID`` offence before the error goes back to the
   transport (which fails the request on the sender's side).

It also listens to the node's event stream: a ledger record that fails its owner-signature check
is a ``FORGED_RECORD`` by whoever published it, and a capped beacon score claim is an
``INFLATED_CLAIM``. Every drop is counted in ``rejected`` under a stable reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from symphony.errors import PeerError
from symphony.ledger.reputation import Offence, ReputationTable
from symphony.protocol.limits import RateLimiter
from symphony.transport.base import MessageHandler, PeerEventHandler, RequestHandler, Transport, TransportStats

EventSink = Callable[[str, dict[str, Any]], None]


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
