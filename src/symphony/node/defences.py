"""A node's defences at its network edge: blacklist, rate limits, admission of expensive work,
and reputation fed by rejections.

``Defences`` sits between the transport and the protocol handlers of one node (DESIGN §1:
"every network input is untrusted"). Every request handler a node serves (ledger sync and
liveness, beacon, task, gateway, relay) is installed through ``GuardedTransport``, so for each
incoming request it

1. refuses it unread if the sender is blacklisted (``ReputationTable``),
2. drops it if the sender's token bucket for that protocol is empty (``RateLimiter``; the task
   protocol has a bucket of its own, ``TASK_RATE``, far tighter than the beacon's) and records a
   ``FLOOD`` offence,
3. runs the handler, and when the handler rejects the input (``PeerError``: bad signature,
   replay, stale, malformed) records an ``INVALID`` offence before the error goes back to the
   transport (which fails the request on the sender's side).

Every refusal is counted in ``rejected`` under a stable reason and reported once as a
``rejected`` event (reason, source, channel), which the node logs and counts in its metrics;
a handler that reports its own rejections (the ledger service does) is not reported twice.

**Admission of expensive work** (``admit``): a Task (plan or execute) costs model calls, so on top
of the above it is served only for a peer that holds an available record in our ledger (a known
agent, not a fresh key) and is not a suspect (local score at least ``AdmissionConfig.min_score``,
the level under which we would publish an accusation), and at most
``AdmissionConfig.max_active_per_peer`` at a time per peer. These refusals (``unknown_peer``,
``low_standing``, ``peer_busy``) are counted but are no offence: an honest agent whose record has
not reached us yet, or a busy initiator, causes them too. The node's own tasks never pass here
(``TaskService`` serves them in process).

Reputation is shared, not trusted: a node publishes the agents it suspects (local score under
0.4; blacklisted ones at 0) in its own ledger record (``reputation``, signed by it like the
rest of the record), and ``absorb`` turns each accusation, from an accuser it does not itself
distrust, into an ``ACCUSED`` offence weighted by how low the published score is (0.4 -> 0.2,
0 -> 1; only increases count, once per accuser). So one lie caught by each of several nodes adds
up to a blacklisting everywhere, while an agent with local merits survives a few slanderers
(a weakness remains: colluders can slander an honest agent that a node has no merits for).

It also listens to the node's event stream: a ledger record that fails its owner-signature check
is a ``FORGED_RECORD`` by whoever published it, and a capped beacon score claim is an
``INFLATED_CLAIM``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from symphony.errors import PeerError
from symphony.ledger.reputation import Offence, ReputationTable
from symphony.pipeline.service import STOP_PROTOCOL, TASK_PROTOCOL
from symphony.protocol.limits import RateLimit, RateLimiter
from symphony.protocol.messages import LedgerRecord
from symphony.transport.base import (
    MessageHandler,
    OffenceHandler,
    PeerEventHandler,
    RequestHandler,
    Transport,
    TransportOffence,
    TransportStats,
)

EventSink = Callable[[str, dict[str, Any]], None]

#: Per-peer bucket for Tasks: each one is model calls. An honest planner sends an executor one
#: sub-task at a time per chain; a burst of 20 covers many concurrent questions, 2/s sustained
#: (beacons: 50/s, burst 100, the ``RateLimit`` default).
TASK_RATE = RateLimit(rate_per_s=2.0, burst=20.0)
#: Per-peer bucket for stops (no model call: a cancel and a reply), which a planner sends per step it gives up on.
STOP_RATE = RateLimit(rate_per_s=10.0, burst=40.0)

# Transport offences (``transport.base.OFFENCE_REASONS``) that only a peer writing bytes no honest
# implementation writes can cause.
MALFORMED_BYTES = frozenset({"protocol_error", "invalid_message", "oversized_request", "malformed_request"})

# Rejections an honest peer can cause (a newer protocol version, a clock outside the skew window,
# a record that has not reached us yet, a busy initiator): counted, but no evidence of malice.
HONEST_MISTAKES = frozenset({"wrong_version", "stale", "unknown_peer", "low_standing", "peer_busy"})

#: Reasons of the ``rejected`` events emitted while the current request's handler runs (the
#: handler's task sets it), so a rejection the handler reported itself is not reported twice.
_reported: ContextVar[list[str] | None] = ContextVar("symphony_reported_rejections", default=None)


class Refused(PeerError):
    """The sender is blacklisted (reason ``blacklisted``) or over its rate limit (``rate_limited``);
    the request was not read."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotAdmitted(Refused):
    """A Task from a peer that may not hand us expensive work now (``unknown_peer``,
    ``low_standing``, ``peer_busy``); the request was not read."""


@dataclass(frozen=True)
class AdmissionConfig:
    """Who may hand this node a Task (see the module docstring)."""

    max_active_per_peer: int = 8
    min_score: float = 0.4

    def __post_init__(self) -> None:
        if self.max_active_per_peer < 1 or not 0.0 <= self.min_score <= 1.0:
            raise ValueError("max_active_per_peer must be >= 1 and min_score in [0, 1]")


def _default_limiter() -> RateLimiter:
    return RateLimiter(RateLimit(), per_channel={TASK_PROTOCOL: TASK_RATE, STOP_PROTOCOL: STOP_RATE})


@dataclass
class Defences:
    """Blacklist + rate limits + admission + reputation bookkeeping for one node."""

    clock: Callable[[], float]
    reputation: ReputationTable = field(default_factory=ReputationTable)
    limiter: RateLimiter = field(default_factory=_default_limiter)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    on_event: EventSink = lambda kind, fields: None
    rejected: Counter[str] = field(default_factory=Counter)
    #: Tasks each peer has in progress here (admitted, not yet answered)
    active: Counter[str] = field(default_factory=Counter)
    _absorbed: dict[tuple[str, str], float] = field(default_factory=dict)

    def guard(self, protocol: str, handler: RequestHandler) -> RequestHandler:
        """Wrap a request handler with the checks of the module docstring."""

        async def guarded(peer: str, payload: bytes) -> bytes:
            now = self.clock()
            if self.reputation.is_blacklisted(peer, now=now):
                raise self._refuse(Refused(f"{peer} is blacklisted", reason="blacklisted"), peer, protocol)
            if not self.limiter.allow(peer, protocol, now=now):
                self.penalize(peer, Offence.FLOOD)
                raise self._refuse(Refused(f"{peer} is over its rate limit on {protocol}", reason="rate_limited"),
                                   peer, protocol)
            reported: list[str] = []
            token = _reported.set(reported)
            try:
                return await handler(peer, payload)
            except PeerError as exc:
                self.rejected[exc.reason] += 1
                if exc.reason not in reported:
                    self._emit(exc.reason, peer, protocol, str(exc))
                if exc.reason not in HONEST_MISTAKES:
                    self.penalize(peer, Offence.INVALID)
                raise
            finally:
                _reported.reset(token)

        return guarded

    def admit(self, handler: RequestHandler, *, is_member: Callable[[str, float], bool]) -> RequestHandler:
        """Wrap the Task handler: serve only members (``is_member(peer, now)``: an available record
        in our ledger) in good standing, ``admission.max_active_per_peer`` at a time each.

        Raises ``NotAdmitted`` (reason ``unknown_peer``, ``low_standing`` or ``peer_busy``) before
        the payload is read; installed inside ``guard``, which counts and reports it."""
        config = self.admission

        async def admitted(peer: str, payload: bytes) -> bytes:
            now = self.clock()
            if not is_member(peer, now):
                raise NotAdmitted(f"{peer} has no available record in this node's ledger", reason="unknown_peer")
            score = self.reputation.score(peer, now=now)
            if score < config.min_score:
                raise NotAdmitted(f"{peer} is a suspect here (score {score:.2f} < {config.min_score})",
                                  reason="low_standing")
            if self.active[peer] >= config.max_active_per_peer:
                raise NotAdmitted(f"{peer} already has {self.active[peer]} tasks in progress here",
                                  reason="peer_busy")
            self.active[peer] += 1
            try:
                return await handler(peer, payload)
            finally:
                self.active[peer] -= 1
                if not self.active[peer]:
                    del self.active[peer]

        return admitted

    def observe(self, kind: str, fields: dict[str, Any]) -> None:
        """Event sink: turns rejections seen elsewhere in the stack into reputation."""
        if kind == "rejected":
            reported = _reported.get()
            if reported is not None:  # emitted by the handler of the request being guarded
                reported.append(str(fields.get("reason")))
        if kind == "rejected" and fields.get("reason") == "bad_signature" and isinstance(fields.get("source"), str):
            self.penalize(fields["source"], Offence.FORGED_RECORD)
        elif kind == "score_claim_capped" and isinstance(fields.get("agent"), str):
            self.penalize(fields["agent"], Offence.INFLATED_CLAIM)

    def on_transport_offence(self, offence: TransportOffence) -> None:
        """A peer misbehaved below the protocol handlers (``Transport.on_offence``): bytes that do not
        parse are as bad as an invalid message; holding streams or sending slowly counts like a
        flood, and so does a cut-off request, which an honest peer's broken connection also causes."""
        self.rejected[offence.reason] += 1
        self._emit(offence.reason, offence.peer_id, offence.protocol, "transport offence")
        if offence.reason in MALFORMED_BYTES:
            self.penalize(offence.peer_id, Offence.INVALID)
        else:
            self.penalize(offence.peer_id, Offence.FLOOD)

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

    def _refuse(self, exc: Refused, peer: str, protocol: str) -> Refused:
        """Count and report a request refused unread; returns ``exc`` to raise."""
        self.rejected[exc.reason] += 1
        self._emit(exc.reason, peer, protocol, str(exc))
        return exc

    def _emit(self, reason: str, peer: str, protocol: str, detail: str) -> None:
        self.on_event("rejected", {"reason": reason, "source": peer, "channel": protocol, "detail": detail[:200]})


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
