"""Outcome feedback: after a question's vote, the agents that planned or executed learn how they did.

Paper §capability vector: an agent's skill block is a per-task-type success EMA (alpha = 0.9);
Symphony-Coord: a planner's LinUCB learns which executors serve a chain well. Both need the
end-to-end outcome, which only the initiator knows (``initiator.InitiatorDriver.outcomes``, from
the cross-vote verdicts). It flows back along the path the work came, over ``OUTCOME_PROTOCOL``:

- the initiator sends each judged chain's planner a signed ``Outcome`` for the chain's task ID
  (``{task}/c{n}``): whether the chain's answer won, and each of its executors' share of upheld steps;
- the planner moves its own ``planning`` skill EMA, gives its LinUCB the end-to-end reward (1.0 when its chain
  agreed with the vote, 0.0 when not) for every executor it used in that chain, and forwards each
  executor's share to it under the sub-task ID it sent that executor (``{task}/c{n}/s{i}``);
- an executor moves its skill EMA for the sub-task's type.

Who may move an agent's skills: only the node that sent it that piece of work. Every agent keeps
its recent work (task ID -> sender, role, task type; bounded) and takes one outcome per piece:
an outcome for a task it never did, from anyone but the sender, or a second one, is refused,
counted (``refused``) and reported (a ``rejected`` event, reason ``outcome_unknown_task`` or
``outcome_not_sender``: the node's ``symphony_rejected_total`` counts it). The envelope is signed and
replay-checked; the handler sits behind the node's admission guard like the task handler.
The task type is the agent's own classification of the work it did, never the sender's say.

Delivery is off the answer path: the initiator queues a question's outcomes (``queue``, never
blocks) and returns its answer; ``run`` (started by the node, its own nursery) delivers them with
``DELIVERY_WORKERS`` at once, each bounded by ``DELIVER_TIMEOUT_S``. A full queue drops the batch; a
planner that refuses or does not answer fails it; both are counted (``delivery``) and reported
(``outcome_dropped`` / ``outcome_sent`` events), so a stalled planner costs learning, never latency.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from symphony.beacon.ranking import Context, LinUCBStrategy
from symphony.capability.vector import classify_task_type
from symphony.errors import PeerError, TransportError
from symphony.protocol.envelope import ReplayGuard, open_body, seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_OUTCOME_EXECUTORS, Outcome, OutcomeAck, Task
from symphony.transport.base import Transport

OUTCOME_PROTOCOL = "/symphony/outcome/1.0.0"
MAX_OUTCOME_BYTES = 16 * 1024
#: Pieces of work (and chains driven) remembered for their outcome; older ones are forgotten.
WORK_MEMORY = 4096
#: Initiator -> planner; it covers the planner's own forwarding to its executors.
DELIVER_TIMEOUT_S = 3.0
#: Planner -> executor.
FORWARD_TIMEOUT_S = 1.5
#: Questions' outcome batches waiting for delivery (more are dropped and counted), and deliveries at once.
DELIVERY_QUEUE = 64
DELIVERY_WORKERS = 4
#: The skill slot a planner's outcomes move.
PLANNING = "planning"


@dataclass(frozen=True)
class Work:
    """A piece of work this agent took on: who sent it, in which role, of which task type."""

    sender: str
    role: str
    task_type: str


@dataclass(frozen=True)
class Dispatch:
    """A sub-task this agent (as planner) sent: to whom, under which ID, in which LinUCB context."""

    executor: str
    task_id: str
    context: Context


@dataclass(frozen=True)
class ChainOutcome:
    """What the initiator tells one chain's planner (``InitiatorDriver.outcomes``)."""

    task_id: str
    planner: str
    agreed: float | None
    executors: tuple[tuple[str, float], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"task": self.task_id, "planner": self.planner, "agreed": self.agreed,
                "executors": [{"agent": a, "agreed": round(s, 4)} for a, s in self.executors]}


def _bounded_put(book: OrderedDict[str, Any], key: str, value: Any) -> None:
    book.pop(key, None)
    book[key] = value
    while len(book) > WORK_MEMORY:
        book.popitem(last=False)


@dataclass
class OutcomeService:
    """Sends (initiator), forwards (planner) and takes (any worker) outcomes; see the module docstring.

    ``learn(task_type, outcome)`` moves this agent's skill EMA (the runtime owns the skills);
    ``changed()`` says the LinUCB state moved (the runtime saves it at a bounded rate)."""

    transport: Transport
    identity: Identity
    clock: Callable[[], float]
    linucb: LinUCBStrategy
    learn: Callable[[str, float], None]
    changed: Callable[[], None] = lambda: None
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, fields: None
    refused: Counter[str] = field(default_factory=Counter)
    _work: OrderedDict[str, Work] = field(default_factory=OrderedDict)
    _dispatches: OrderedDict[str, list[Dispatch]] = field(default_factory=OrderedDict)
    _guard: ReplayGuard = field(default_factory=ReplayGuard)
    delivery: Counter[str] = field(default_factory=Counter)  # queued, dropped, delivered, failed (outcomes)

    def __post_init__(self) -> None:
        self._outbox, self._inbox = anyio.create_memory_object_stream[Sequence[ChainOutcome]](DELIVERY_QUEUE)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- what this agent did ---------------------------------------------------------------

    def remember(self, sender: str, task: Task) -> None:
        """``sender`` handed us ``task``: its outcome may come, from ``sender`` only.

        A chain's outcome moves the planner's ``planning`` skill, not the question's type: whether a
        chain's answer won says mostly how its executors did, and an agent that plans well but
        computes badly must not look good at arithmetic (measured: with the question's type, weak
        executors gained from the chains they planned and the pool never learned who computes best)."""
        task_type = PLANNING if task.role == "plan" else classify_task_type(task.question)
        _bounded_put(self._work, task.task_id, Work(sender, task.role, task_type))

    def dispatched(self, chain_id: str, executor: str, task_id: str, context: Context) -> None:
        """As planner of ``chain_id`` we sent sub-task ``task_id`` to ``executor`` (LinUCB ``context``)."""
        chain = self._dispatches.get(chain_id, [])
        _bounded_put(self._dispatches, chain_id, [*chain, Dispatch(executor, task_id, context)][-64:])
        self.changed()  # the per-step LinUCB update just made

    # ---- initiator: deliver ----------------------------------------------------------------

    def queue(self, outcomes: Sequence[ChainOutcome]) -> list[dict[str, Any]]:
        """Hand a question's outcomes to ``run`` without waiting; what was queued (or dropped), for the trace."""
        status = "queued"
        if outcomes:
            try:
                self._outbox.send_nowait(tuple(outcomes))
            except anyio.WouldBlock:  # deliveries are stalled: drop, count and say so
                status = "dropped"
                self.on_event("outcome_dropped", {"outcomes": len(outcomes), "queue": DELIVERY_QUEUE})
            self.delivery[status] += len(outcomes)
        return [{**o.to_wire(), "delivery": status} for o in outcomes]

    async def run(self) -> None:
        """Deliver queued outcomes, ``DELIVERY_WORKERS`` batches at once, until cancelled."""
        async with anyio.create_task_group() as tg:
            for _ in range(DELIVERY_WORKERS):
                tg.start_soon(self._deliver_queued, self._inbox.clone())

    async def _deliver_queued(self, inbox: anyio.abc.ObjectReceiveStream[Sequence[ChainOutcome]]) -> None:
        async with inbox:
            async for outcomes in inbox:
                for entry in await self.deliver(outcomes):
                    self.delivery["delivered" if entry["accepted"] else "failed"] += 1

    async def deliver(self, outcomes: Sequence[ChainOutcome]) -> list[dict[str, Any]]:
        """Send every chain's outcome to its planner, concurrently; what each planner answered."""
        sent: list[dict[str, Any]] = []

        async def one(outcome: ChainOutcome) -> None:
            message = Outcome(task_id=outcome.task_id, agreed=outcome.agreed,
                              executors=list(outcome.executors[:MAX_OUTCOME_EXECUTORS]))
            ack = await self._send(outcome.planner, message, timeout=DELIVER_TIMEOUT_S)
            entry = {**outcome.to_wire(), "accepted": ack.accepted, "forwarded": ack.forwarded,
                     **({"reason": ack.reason} if ack.reason else {})}
            self.on_event("outcome_sent", entry)
            sent.append(entry)

        async with anyio.create_task_group() as tg:
            for outcome in outcomes:
                tg.start_soon(one, outcome)
        return sorted(sent, key=lambda e: e["task"])

    async def _send(self, agent_id: str, message: Outcome, *, timeout: float) -> OutcomeAck:
        """``message`` to ``agent_id`` (applied in-process if it is us); failures become a refusal."""
        if agent_id == self.identity.agent_id:
            return await self._apply(agent_id, message)
        try:
            envelope = seal(self.identity, "outcome", message.wire(), now_ms=self._now_ms())
            raw = await self.transport.request(agent_id, OUTCOME_PROTOCOL, envelope.to_bytes(), timeout=timeout)
            _, ack = open_body(raw, OutcomeAck, sender=agent_id, kind="outcome.ack", guard=self._guard,
                               now_ms=self._now_ms(), limit=MAX_OUTCOME_BYTES)
            return ack
        except (TimeoutError, TransportError, PeerError) as exc:
            return OutcomeAck(task_id=message.task_id, accepted=False, reason=type(exc).__name__[:64])

    # ---- any agent: take -------------------------------------------------------------------

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``OUTCOME_PROTOCOL``."""
        _, message = open_body(payload, Outcome, sender=peer, kind="outcome", guard=self._guard,
                               now_ms=self._now_ms(), limit=MAX_OUTCOME_BYTES)
        ack = await self._apply(peer, message)
        return seal(self.identity, "outcome.ack", ack.wire(), now_ms=self._now_ms()).to_bytes()

    async def _apply(self, sender: str, message: Outcome) -> OutcomeAck:
        """Take ``message`` if ``sender`` gave us that work and it is still unjudged; else refuse it."""
        work = self._work.get(message.task_id)
        if work is None or work.sender != sender:
            reason = "unknown_task" if work is None else "not_sender"
            self.refused[reason] += 1
            self.on_event("rejected", {"reason": f"outcome_{reason}", "source": sender, "channel": OUTCOME_PROTOCOL,
                                       "detail": f"outcome for task {message.task_id[:128]!r}"})
            return OutcomeAck(task_id=message.task_id, accepted=False, reason=reason)
        del self._work[message.task_id]  # one outcome per piece of work
        if message.agreed is not None:
            self.learn(work.task_type, message.agreed)
        if work.role != "plan":
            return OutcomeAck(task_id=message.task_id, accepted=True)
        dispatches = self._dispatches.pop(message.task_id, [])
        if message.agreed is not None:
            self._reward_chain(dispatches, message.agreed)
        forwarded = await self._forward(dispatches, message.executors)
        return OutcomeAck(task_id=message.task_id, accepted=True, forwarded=forwarded)

    def _reward_chain(self, dispatches: Sequence[Dispatch], reward: float) -> None:
        """Symphony-Coord's end-to-end reward: every executor of the chain shares its outcome."""
        for dispatch in dispatches:
            self.linucb.update(dispatch.executor, dispatch.context, reward)
        if dispatches:
            self.changed()

    async def _forward(self, dispatches: Sequence[Dispatch], shares: Sequence[tuple[str, float]]) -> int:
        """Each executor's share to it, under the first sub-task ID we sent it; how many took it."""
        first = {d.executor: d.task_id for d in reversed(dispatches)}
        taken = 0

        async def one(executor: str, share: float) -> None:
            nonlocal taken
            message = Outcome(task_id=first[executor], agreed=share)
            taken += (await self._send(executor, message, timeout=FORWARD_TIMEOUT_S)).accepted

        async with anyio.create_task_group() as tg:
            for executor, share in shares:
                if executor in first:  # the initiator cannot make us speak for work we never sent
                    tg.start_soon(one, executor, share)
        return taken


__all__ = ["DELIVERY_QUEUE", "DELIVERY_WORKERS", "OUTCOME_PROTOCOL", "ChainOutcome", "Dispatch", "OutcomeService",
           "Work"]
