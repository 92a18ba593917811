"""BEACONSELECT over the network (paper Alg. 1, subroutine BEACONSELECT).

Theory of operation
-------------------
1. **Pre-filter**: ledger QUERY for available agents, ranked by phi(published c_j, r(t)),
   cut to the top L. This costs nothing on the network: the ledger is local.
2. **Beacon**: one signed envelope ``Beacon{requirements, deadline, priority}`` with a fresh
   nonce goes to each candidate concurrently (the local agent answers in-process). A planner
   puts all its chain's sub-task requirements (at most 12) in one beacon: one round per
   chain instead of one per sub-task (``select_many``).
3. **Local scoring**: each candidate scores with its *private, exact* vector (the ledger
   copy may be coarsened or noised) and replies ``BeaconResponse{nonce, scores, queue,
   expected latency}``, one score per requirement, in its own signed envelope. Echoing the
   nonce binds the reply to this beacon (attestation, no replay). That side lives in
   ``beacon.responder``; on a sharded network ``beacon.gateway`` asks the other shards.
4. **Collect until every candidate answered, or the deadline**, then rank per
   requirement (``ranking.select``: score, then QoS) and return primaries and backups for each.

Replies are checked: signature, sender = the agent asked, nonce echoed, and the
claimed score against the agent's published vector — a claim more than
``claim_tolerance`` above phi(published, r) is capped to the published score and
reported, so inflating one's score buys nothing (DESIGN §2).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from symphony.beacon.gateway import GatewayFanout
from symphony.beacon.ranking import Candidate, Selection, SelectionStrategy, merge_by_rank, select
from symphony.beacon.responder import BEACON_PROTOCOL, MAX_BEACON_BYTES, BeaconResponder
from symphony.errors import BadSignature, ConfigError, MalformedMessage, PeerError, PeerUnreachable, TransportError
from symphony.ledger.reputation import ReputationTable
from symphony.ledger.store import Ledger, QueryFilter, unit_cosine, unit_vector
from symphony.protocol.envelope import ReplayGuard, open_body, seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_BEACON_REQUIREMENTS, Beacon, BeaconResponse, LedgerRecord, encode_sparse
from symphony.transport.base import Transport


@dataclass(frozen=True)
class BeaconConfig:
    top_l: int = 8
    deadline_s: float = 2.0
    claim_tolerance: float = 0.05


@dataclass
class RoundTiming:
    """Where a round's time went (issue #19: in-task rounds took 10x a standalone one): dials made
    inside the round and the longest of them, when the last reply came (ms after the fan-out),
    and the candidates still silent when the deadline cut the round. The ``beacon_round`` event's
    extra fields."""

    dials: int = 0
    dial_ms: float = 0.0
    last_reply_ms: float = 0.0
    unanswered: int = 0

    def to_wire(self) -> dict[str, float | int]:
        return {"dials": self.dials, "dial_ms": round(self.dial_ms, 2),
                "last_reply_ms": round(self.last_reply_ms, 2), "unanswered": self.unanswered}


@dataclass
class BeaconOutcome:
    """A selection plus what it cost, for the task trace and the benchmarks."""

    selection: Selection
    contacted: int = 0
    replied: int = 0
    elapsed_s: float = 0.0
    query_s: float = 0.0  # of which the local ledger QUERY (pre-filter), by the selector's clock
    rejected: dict[str, str] = field(default_factory=dict)
    timing: RoundTiming = field(default_factory=RoundTiming)


class BeaconSelector:
    """Runs BEACONSELECT rounds from this node."""

    def __init__(
        self,
        *,
        transport: Transport,
        identity: Identity,
        ledger: Ledger,
        responder: BeaconResponder,
        clock: Callable[[], float],
        config: BeaconConfig = BeaconConfig(),
        on_event: Callable[[str, dict[str, Any]], None] = lambda kind, fields: None,
        reputation: ReputationTable | None = None,
        fanout: GatewayFanout | None = None,
    ) -> None:
        self.transport = transport
        self.fanout = fanout
        self.identity = identity
        self.ledger = ledger
        self.reputation = reputation
        self.responder = responder
        self.clock = clock
        self.config = config
        self.on_event = on_event
        self._guard = ReplayGuard()
        self._dialling: dict[str, anyio.Event] = {}  # agent -> its dial under way (``_dial``)

    async def select(
        self,
        requirement: list[float],
        *,
        task_type: str = "",
        m: int = 1,
        top_l: int | None = None,
        strategy: SelectionStrategy | None = None,
        exclude: frozenset[str] = frozenset(),
        tags_any: frozenset[str] = frozenset(),
        deadline_s: float | None = None,
        priority: int = 0,
        latency_budget_ms: float | None = None,
        outstanding: Mapping[str, int] | None = None,
    ) -> BeaconOutcome:
        """BEACONSELECT(r, L, m) for one requirement (``select_many`` with one)."""
        outcomes = await self.select_many([requirement], task_type=task_type, m=m, top_l=top_l, strategy=strategy,
                                          exclude=exclude, tags_any=tags_any, deadline_s=deadline_s,
                                          priority=priority, latency_budget_ms=latency_budget_ms,
                                          outstanding=outstanding)
        return outcomes[0]

    async def select_many(
        self,
        requirements: list[list[float]],
        *,
        task_type: str = "",
        m: int = 1,
        top_l: int | None = None,
        strategy: SelectionStrategy | None = None,
        exclude: frozenset[str] = frozenset(),
        tags_any: frozenset[str] = frozenset(),
        deadline_s: float | None = None,
        priority: int = 0,
        latency_budget_ms: float | None = None,
        outstanding: Mapping[str, int] | None = None,
    ) -> list[BeaconOutcome]:
        """BEACONSELECT for up to 12 requirements (a chain's sub-tasks) in ONE round: pre-filter,
        fan out one beacon, collect one signed multi-score reply per candidate until all have replied or
        the deadline, then rank the candidates separately for each requirement.
        Returns one outcome per requirement.
        ``priority`` (0-9) travels in the beacon; candidates whose expected latency exceeds
        ``latency_budget_ms`` rank after all the others (``ranking.select``). ``outstanding``: requests
        this node has out to each agent, unanswered; an agent's queue counts as at least that many
        (its reply may predate them), so a planner does not pile its own chains on one executor.

        Raises:
            ValueError: no requirement, or more than ``MAX_BEACON_REQUIREMENTS``.
        """
        if not 1 <= len(requirements) <= MAX_BEACON_REQUIREMENTS:
            raise ValueError(f"a beacon carries 1 to {MAX_BEACON_REQUIREMENTS} requirements, not {len(requirements)}")
        started = time.perf_counter()
        deadline_s = self.config.deadline_s if deadline_s is None else deadline_s
        if self.reputation is not None:  # blacklisted agents are not even invited
            exclude = exclude | self.reputation.blacklisted(now=self.clock())
        queried = self.clock()
        invited = self._invite(requirements, QueryFilter(exclude=exclude, tags_any=tags_any),
                               top_l or self.config.top_l, now=queried)
        query_s = self.clock() - queried
        now_ms = int(self.clock() * 1000)
        beacon = Beacon(requirements=[encode_sparse(r) for r in requirements],
                        deadline_ms=now_ms + int(deadline_s * 1000), task_type=task_type[:64], priority=priority)
        envelope = seal(self.identity, "beacon", beacon.wire(), now_ms=now_ms)
        replies: dict[str, BeaconResponse] = {}
        rejected: dict[str, str] = {}
        connected = set(self.transport.peers())
        timing = RoundTiming()
        fanned_out = time.perf_counter()

        async def ask(agent_id: str, addrs: list[str]) -> None:
            try:
                if agent_id == self.identity.agent_id:
                    reply = self.responder.score(beacon, envelope.nonce)
                else:
                    if agent_id not in connected and addrs:  # a top-L candidate we have no connection to yet
                        dialling = time.perf_counter()
                        timing.dials += 1
                        try:
                            await self._dial(agent_id, addrs[0])
                        finally:
                            timing.dial_ms = max(timing.dial_ms, (time.perf_counter() - dialling) * 1000)
                    raw = await self.transport.request(agent_id, BEACON_PROTOCOL, envelope.to_bytes(),
                                                       timeout=deadline_s)
                    reply = self._check_reply(raw, agent_id, envelope.nonce, len(requirements))
            except (PeerError, TransportError, ConfigError) as exc:
                rejected[agent_id] = type(exc).__name__
                return
            replies[agent_id] = reply
            timing.last_reply_ms = (time.perf_counter() - fanned_out) * 1000

        async def remote(fanout: GatewayFanout) -> None:
            verified = await fanout.collect(requirements, envelope, top_l=top_l or self.config.top_l,
                                            exclude=exclude | frozenset(invited), deadline_s=deadline_s)
            for v in verified:
                if v.agent_id not in invited and (not tags_any or tags_any.intersection(v.record.tags)):
                    invited[v.agent_id] = (v.record.addrs, v.published(requirements))
                    replies[v.agent_id] = v.reply
                    remote_ids.add(v.agent_id)

        remote_ids: set[str] = set()
        sharded = self.fanout is not None and self.fanout.active(self.clock())
        with anyio.move_on_after(deadline_s):
            async with anyio.create_task_group() as tg:
                for agent_id, (addrs, _) in list(invited.items()):
                    tg.start_soon(ask, agent_id, addrs)
                if sharded and self.fanout is not None:
                    tg.start_soon(remote, self.fanout)
        timing.unanswered = len(invited) - len(replies) - len(rejected)
        outcomes = [BeaconOutcome(
            selection=select([self._candidate(a, reply, reply.scores[i], invited[a][1][i],
                                              sent=(outstanding or {}).get(a, 0))
                              for a, reply in replies.items()], m=m, strategy=strategy,
                             latency_budget_ms=latency_budget_ms),
            contacted=len(invited), replied=len(replies), elapsed_s=0.0, query_s=query_s, rejected=rejected,
            timing=timing,
        ) for i in range(len(requirements))]
        if remote_ids:
            await self._reach(outcomes, remote_ids, {a: invited[a][0] for a in remote_ids})
        elapsed_s = time.perf_counter() - started
        for outcome in outcomes:
            outcome.elapsed_s = elapsed_s
        return outcomes

    async def preconnect(self, requirement: list[float], *, tags_any: frozenset[str] = frozenset(),
                         top_l: int | None = None) -> int:
        """Open connections to the candidates a round for ``requirement`` would invite and that we
        have none to yet, so the round does not wait for their dials (a planner calls this while its
        model plans: issue #19, in-task rounds were 10-20x a warm round when a dial sat in them). A
        round that starts meanwhile joins a dial still under way instead of dialling again (``_dial``).
        A failed dial is counted and suspects the agent (``_dial``), so the round does not invite it.
        Returns the dials tried."""
        exclude = self.reputation.blacklisted(now=self.clock()) if self.reputation is not None else frozenset()
        invited = self._invite([requirement], QueryFilter(exclude=exclude, tags_any=tags_any),
                               top_l or self.config.top_l, now=self.clock())
        return await self._dial_each({agent_id: addrs for agent_id, (addrs, _) in invited.items()}, source="ledger")

    async def warm(self, *, limit: int, roles: Sequence[frozenset[str]]) -> int:
        """Hold connections to the first ``limit`` available agents of ``roles`` (in that order: an
        initiator's first round invites planners, a planner's invites executors), dialling those we have
        none to (agents already connected count toward ``limit``), so no question's round dials them
        (issue #19: the first batch's rounds dialled 1-7 planners each, all at once, 1.6-2.2 s a round).
        Agents of one role are taken in an order of our own (a hash of our ID and theirs) so that nodes
        do not all warm the same few. Failures are
        ``_dial``'s to count and suspect. Returns the dials tried."""
        now = self.clock()
        exclude = (self.reputation.blacklisted(now=now) if self.reputation is not None else frozenset()) | {
            self.identity.agent_id}
        ordered = (record for tags in roles  # lazily: a role's query runs only while places are left
                   for record in sorted((r for r, _ in self.ledger.query(QueryFilter(exclude=exclude, tags_any=tags),
                                                                           now=now)), key=self._warm_order)
                   if record.addrs)
        wanted: dict[str, list[str]] = {}
        for record in ordered:
            if len(wanted) >= limit:
                break
            wanted.setdefault(record.agent_id, record.addrs)
        return await self._dial_each(wanted, source="warm")

    def _warm_order(self, record: LedgerRecord) -> bytes:
        return hashlib.blake2b(f"{self.identity.agent_id}/{record.agent_id}".encode(), digest_size=8).digest()

    async def _dial_each(self, addrs: Mapping[str, list[str]], *, source: str) -> int:
        """Dial, at once and within the round deadline, every agent of ``addrs`` we have no connection
        to (failures are ``_dial``'s to count). Returns the dials tried."""
        connected = set(self.transport.peers()) | {self.identity.agent_id}
        cold = {agent_id: a[0] for agent_id, a in addrs.items() if agent_id not in connected and a}

        async def dial(agent_id: str, addr: str) -> None:
            try:
                await self._dial(agent_id, addr, source=source)
            except (TransportError, ConfigError):
                pass  # counted and suspected by ``_dial``

        with anyio.move_on_after(self.config.deadline_s):
            async with anyio.create_task_group() as tg:
                for agent_id, addr in sorted(cold.items()):
                    tg.start_soon(dial, agent_id, addr)
        return len(cold)

    async def _dial(self, agent_id: str, addr: str, *, source: str = "ledger") -> None:
        """Connect to a candidate known from the ledger (or a gateway: ``source``), or wait for the dial
        to it already under way (a planner's pre-dial) rather than dial twice. A failed dial suspects it
        here, as a dropped connection does (``Ledger.suspect``, until we hear from it again): a node that
        never had a connection to a crashed agent gets no leave event, and without this every round it
        ran kept inviting it and waited for py-libp2p's dial retries (issue #19: up to the 2 s round
        deadline, twice per question). Counted as ``dial_failed`` with its ``source``. Re-raises the failure."""
        under_way = self._dialling.get(agent_id)
        if under_way is not None:
            await under_way.wait()
            if agent_id not in self.transport.peers():
                raise PeerUnreachable(f"the dial to {agent_id} under way failed")
            return
        done = self._dialling[agent_id] = anyio.Event()
        try:
            await self.transport.connect(addr)
        except (TransportError, ConfigError) as exc:
            self.ledger.suspect(agent_id, now=self.clock())
            self.on_event("dial_failed", {"agent": agent_id, "error": type(exc).__name__, "source": source})
            raise
        finally:
            done.set()
            del self._dialling[agent_id]

    async def _reach(self, outcomes: list[BeaconOutcome], remote: set[str], addrs: dict[str, list[str]]) -> None:
        """Connect to the selected agents of other shards (found through their gateways, so not yet
        connected): the pipeline sends them Tasks next. Failures are left to the pipeline's failover."""
        chosen = {c.agent_id for o in outcomes for c in o.selection.ordered[:2]} & remote
        await self._dial_each({agent_id: addrs[agent_id] for agent_id in chosen}, source="gateway")

    def _invite(self, requirements: list[list[float]], flt: QueryFilter, limit: int,
                *, now: float) -> dict[str, tuple[list[str], list[float]]]:
        """The candidates to beacon: agent -> (addrs, phi(published c_j, r_i) for every requirement).

        Each requirement's top-L from QUERY, merged rank by rank (every requirement's best first),
        capped at L as a one-requirement beacon is: a chain's sub-tasks mostly want the same agents;
        when they differ, each still reaches at least its L/k best, and every invited agent scores
        every requirement."""
        ranked = [[record for record, _ in self.ledger.query(flt, requirement=r, limit=limit, now=now)]
                  for r in requirements]
        units = [unit_vector(r) for r in requirements]
        return {
            record.agent_id: (record.addrs, [unit_cosine(self.ledger.unit(record), u) for u in units])
            for record in merge_by_rank(ranked, limit, key=lambda record: record.agent_id)
        }

    def _check_reply(self, raw: bytes, agent_id: str, nonce: str, count: int) -> BeaconResponse:
        _, reply = open_body(raw, BeaconResponse, sender=agent_id, kind="beacon.reply", guard=self._guard,
                             now_ms=int(self.clock() * 1000), limit=MAX_BEACON_BYTES)
        if reply.nonce != nonce:
            raise BadSignature("beacon reply does not echo our nonce")
        if len(reply.scores) != count:
            raise MalformedMessage(f"beacon reply has {len(reply.scores)} scores for {count} requirements")
        return reply

    def _candidate(self, agent_id: str, reply: BeaconResponse, score: float, published: float,
                   *, sent: int = 0) -> Candidate:
        if agent_id != self.identity.agent_id and score > published + self.config.claim_tolerance:
            self.on_event("score_claim_capped", {"agent": agent_id, "claimed": score, "published": published})
            score = published
        if self.reputation is not None and score > 0:  # a doubtful agent's claim counts for less
            score *= self.reputation.weight(agent_id, now=self.clock())
        return Candidate(
            agent_id=agent_id,
            score=score if math.isfinite(score) else 0.0,
            queue_length=max(reply.queue_length, sent),  # ours are in its queue, or about to be
            expected_latency_ms=reply.expected_latency_ms,
            reputation=self.ledger.reputation(agent_id),
            available=True,
        )


# BEACON_PROTOCOL, MAX_BEACON_BYTES and BeaconResponder live in ``beacon.responder``; re-exported for callers
__all__ = ["BEACON_PROTOCOL", "MAX_BEACON_BYTES", "BeaconConfig", "BeaconOutcome", "BeaconResponder", "BeaconSelector"]
