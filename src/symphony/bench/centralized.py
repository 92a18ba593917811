"""Two centralized-orchestrator baselines for the systems comparison (issue #6; paper §5, "centralized").

**Relay hub** (``Coordinator``), the cheapest hub there is:

One **coordinator** holds the registry of every agent (its signed record, sent once at start)
and its load (it sees every task pass, so it needs no status reports). Agents talk only to it:

- the initiator sends each chain's ``Task(role="plan")`` to the coordinator, which picks a
  planner from its registry (cosine match, then fewest tasks in flight) and forwards it;
- a planner sends each ``Task(role="execute")`` to the coordinator, which picks an executor and
  forwards it; every result comes back to the coordinator, which forwards it to the asker.

So the agents run the very same ``TaskService`` (planning, chains, voting, envelopes), with
BEACONSELECT replaced by "ask the coordinator" and every message relayed through one hub: no
beacon and no ledger gossip, but every task message crosses two links. Each hop is a fresh
signed envelope (the coordinator verifies what it receives and signs what it forwards), as a
coordinator that authenticates its agents must. It moves fewer bytes than any hub that shares
context, so it bounds what centralization must cost from below.

**GroupChat** (``GroupChatCoordinator``), the design of AutoGen's ``GroupChat``: the manager
keeps the shared conversation and, as ``GroupChatManager.run_chat`` does, sends every new
message to every member of the group (up to ``group_size`` agents), so that whoever speaks
next holds the whole context. Here the conversation's messages are the question (a chain
starts), each sub-task the planner hands out and each answer; each goes once, signed once,
to every member but its speaker, who acknowledge with an empty reply. Speakers are chosen and
tasks relayed exactly as by the relay hub. A real GroupChat broadcasts each speaker's whole
model reply; we broadcast the sub-task text and the extracted answer only, so this is a lower
bound on its traffic.

Assembly: each agent is built as an ``AgentRuntime`` (the node's assembly: its ledger record,
capability vector and tag encoder), and answers tasks with a ``TaskService`` built the way the
runtime builds its own, but with ``CoordinatorSelector`` in place of BEACONSELECT. That one part
is assembled here because ``AgentRuntime`` builds its ``TaskService`` inside, with no seam for
another selector; an ``AgentRuntime(selector=...)`` argument would let the runtime build it too.
The runtime's ledger service and beacon handlers are built but never run or installed.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from symphony.beacon import Candidate, Selection, select
from symphony.beacon import BeaconOutcome
from symphony.capability import HashingTagEncoder, classify_task_type, requirement_vector
from symphony.errors import PeerError, TransportError
from symphony.ledger.store import unit_cosine, unit_vector
from symphony.node import AgentRuntime, SimulatedAgent
from symphony.pipeline.service import MAX_TASK_BYTES, TASK_PROTOCOL, TaskService
from symphony.protocol import (
    MAX_RECORD_BYTES,
    Identity,
    LedgerRecord,
    ReplayGuard,
    Task,
    TaskResult,
    decode_vector,
    open_body,
    open_envelope,
    seal,
)
from symphony.transport import MemoryNetwork, Transport

REGISTER_PROTOCOL = "/symphony-baseline/register/1.0.0"
GROUPCHAT_PROTOCOL = "/symphony-baseline/groupchat/1.0.0"
GROUPCHAT_KIND = "groupchat.message"


class Coordinator:
    """The hub: registry, selection and relay of every task message."""

    def __init__(self, transport: Transport, identity: Identity, clock: Callable[[], float]) -> None:
        self.transport = transport
        self.identity = identity
        self.clock = clock
        self.encoder = HashingTagEncoder()
        self.registry: dict[str, list[float] | None] = {}  # agent -> its unit capability vector, decoded once
        self.in_flight: Counter[str] = Counter()
        self._guard = ReplayGuard()
        transport.set_handler(REGISTER_PROTOCOL, self._register)
        transport.set_handler(TASK_PROTOCOL, self._relay)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _register(self, peer: str, payload: bytes) -> bytes:
        record = LedgerRecord.parse(payload[:MAX_RECORD_BYTES])
        if record.agent_id != peer:
            raise ValueError("an agent registers its own record only")
        self.registry[peer] = unit_vector(decode_vector(record.capability))
        return b"ok"

    def pick(self, task: Task, *, asker: str) -> str:
        """The best registered agent for ``task`` other than the asker: match, then load."""
        r = unit_vector(list(requirement_vector(task.question, classify_task_type(task.question), self.encoder)))
        candidates = [Candidate(agent_id=a, score=unit_cosine(unit, r), queue_length=self.in_flight[a])
                      for a, unit in self.registry.items() if a != asker]
        ordered = select(candidates).ordered
        if not ordered:
            raise LookupError("no agent is registered")
        return ordered[0].agent_id

    def said(self, task_id: str, speaker: str, content: str) -> None:
        """A message of the conversation passed the hub (the relay hub shares nothing)."""

    async def _relay(self, peer: str, payload: bytes) -> bytes:
        """Verify a task from ``peer``, forward it to the agent picked for it, relay the result."""
        _, task = open_body(payload, Task, sender=peer, kind="task", guard=self._guard, now_ms=self._now_ms(),
                            limit=MAX_TASK_BYTES)
        target = self.pick(task, asker=peer)
        self.said(task.task_id, peer, task.question)
        timeout = max(0.001, task.deadline_ms / 1000 - self.clock())
        forwarded = seal(self.identity, "task", task.wire(), now_ms=self._now_ms())
        self.in_flight[target] += 1
        try:
            raw = await self.transport.request(target, TASK_PROTOCOL, forwarded.to_bytes(), timeout=timeout)
        finally:
            self.in_flight[target] -= 1
        _, result = open_body(raw, TaskResult, sender=target, kind="task.result", guard=self._guard,
                              now_ms=self._now_ms(), limit=MAX_TASK_BYTES)
        self.said(task.task_id, target, result.answer or result.error)
        return seal(self.identity, "task.result", result.wire(), now_ms=self._now_ms()).to_bytes()


class GroupChatCoordinator(Coordinator):
    """The relay hub plus AutoGen GroupChat's broadcast: every message of the conversation goes to every member."""

    def __init__(self, transport: Transport, identity: Identity, clock: Callable[[], float], *,
                 group_size: int = 100) -> None:
        super().__init__(transport, identity, clock)
        self.group_size = group_size
        self.conversation: dict[str, list[tuple[str, str]]] = {}  # task -> (speaker, content), in order
        self._sending: anyio.abc.TaskGroup | None = None
        self._in_flight = 0
        self._idle: anyio.Event | None = None

    @property
    def group(self) -> list[str]:
        """The members: the first ``group_size`` agents registered."""
        return list(self.registry)[: self.group_size]

    def said(self, task_id: str, speaker: str, content: str) -> None:
        chat = task_id.split("/", 1)[0]
        self.conversation.setdefault(chat, []).append((speaker, content))
        envelope = seal(self.identity, GROUPCHAT_KIND, {"task": chat, "from": speaker, "content": content},
                        now_ms=self._now_ms()).to_bytes()
        if self._sending is None:
            raise RuntimeError("open the GroupChat coordinator with serve() before relaying")
        for member in self.group:
            if member != speaker:
                self._in_flight += 1
                self._sending.start_soon(self._deliver, member, envelope)

    async def _deliver(self, member: str, envelope: bytes) -> None:
        try:
            with contextlib.suppress(PeerError, TransportError):  # a member that missed a message still gets tasks
                await self.transport.request(member, GROUPCHAT_PROTOCOL, envelope, timeout=30)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    async def drained(self) -> None:
        """Wait until every broadcast started so far was delivered or failed (so its bytes are counted)."""
        while self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[None]:
        """Run the broadcasts in the background while the system is open."""
        async with anyio.create_task_group() as tg:
            self._sending = tg
            yield
            tg.cancel_scope.cancel()


@dataclass
class GroupChatMember:
    """An agent's copy of the conversations it was sent (verified, bounded)."""

    coordinator: str
    clock: Callable[[], float]
    history: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=1_000))
    guard: ReplayGuard = field(default_factory=ReplayGuard)

    async def handle(self, peer: str, payload: bytes) -> bytes:
        if peer != self.coordinator:
            raise PeerError(f"only the coordinator speaks in the group chat, not {peer}")
        env = open_envelope(payload, guard=self.guard, now_ms=int(self.clock() * 1000), kind=GROUPCHAT_KIND,
                            limit=MAX_TASK_BYTES)
        body = env.body
        self.history.append((str(body.get("task", "")), str(body.get("from", "")), str(body.get("content", ""))))
        return b""  # one-way on a real wire: the empty acknowledgement costs no payload bytes


@dataclass
class CoordinatorSelector:
    """Stands in for ``BeaconSelector`` on an agent: every candidate is the coordinator.

    The coordinator chooses the real agent when it forwards, so an agent's "selection" is just
    whom to send to; ``top_l`` copies let the initiator start its ``cots`` chains (one each)."""

    coordinator: str

    async def select(self, requirement: list[float], *, top_l: int | None = None, **_: Any) -> BeaconOutcome:
        hub = Candidate(agent_id=self.coordinator, score=1.0)
        copies = max(1, top_l or 1)
        return BeaconOutcome(selection=Selection((hub,), (hub,) * (copies - 1)), contacted=0, replied=copies)

    async def select_many(self, requirements: list[list[float]], **options: Any) -> list[BeaconOutcome]:
        return [await self.select(r, **options) for r in requirements]

    async def preconnect(self, requirement: list[float], **_: Any) -> int:
        """Nothing to dial: an agent talks to the coordinator only, connected since it registered."""
        return 0


@dataclass
class CentralizedAgent:
    """An agent of the baseline: the pipeline's ``TaskService`` wired to the coordinator."""

    transport: Transport
    tasks: TaskService

    @property
    def agent_id(self) -> str:
        return self.transport.peer_id


@dataclass
class CentralizedSystem:
    coordinator: Coordinator
    agents: list[CentralizedAgent]

    def transports(self) -> list[Transport]:
        return [self.coordinator.transport, *(a.transport for a in self.agents)]


def centralized_agent(
    transport: Transport, spec: SimulatedAgent, index: int, coordinator: str, *, clock: Callable[[], float],
) -> tuple[CentralizedAgent, bytes]:
    """One agent of the baseline on ``transport``, serving tasks, and its signed record to register
    with ``coordinator`` (``REGISTER_PROTOCOL``). Used here and by ``bench.loopback`` on real processes."""
    # AgentRuntime's record and vector, without its ledger service or beacon
    runtime = AgentRuntime(transport=transport, identity=spec.identity, profile=spec.profile,
                           model=spec.model, clock=clock, rng=random.Random(index))
    tasks = TaskService(transport=transport, identity=spec.identity,
                        selector=CoordinatorSelector(coordinator),  # type: ignore[arg-type]
                        model=spec.model, encoder=runtime.encoder, clock=clock)
    transport.set_handler(TASK_PROTOCOL, tasks.handle)
    record = runtime.gossip._profile.model_copy(update={"issued_at": int(clock() * 1000)})
    return CentralizedAgent(transport, tasks), record.signed_by(spec.identity).to_bytes()


async def register_with(agent: CentralizedAgent, coordinator: str, hub_addr: str, signed: bytes) -> None:
    """Connect ``agent`` to the coordinator at ``hub_addr`` and register its record."""
    await agent.transport.connect(hub_addr)
    await agent.transport.request(coordinator, REGISTER_PROTOCOL, signed, timeout=600)


@asynccontextmanager
async def open_centralized(
    net: MemoryNetwork, coordinator: Identity, agents: Sequence[SimulatedAgent], *, clock: Callable[[], float],
    groupchat: bool = False, group_size: int = 100,
) -> AsyncIterator[CentralizedSystem]:
    """Start a coordinator (the relay hub, or with ``groupchat`` the GroupChat manager) and ``agents``
    on ``net`` in a star; yield once all are registered."""
    async with AsyncExitStack() as stack:
        hub_transport = await stack.enter_async_context(net.open_node(coordinator))
        hub = (GroupChatCoordinator(hub_transport, coordinator, clock, group_size=group_size) if groupchat
               else Coordinator(hub_transport, coordinator, clock))
        members: list[CentralizedAgent] = []
        registrations: list[bytes] = []
        for n, spec in enumerate(agents):
            transport = await stack.enter_async_context(net.open_node(spec.identity))
            member, signed = centralized_agent(transport, spec, n, coordinator.agent_id, clock=clock)
            if groupchat:
                transport.set_handler(GROUPCHAT_PROTOCOL, GroupChatMember(coordinator.agent_id, clock).handle)
            members.append(member)
            registrations.append(signed)

        async with anyio.create_task_group() as tg:
            for member, signed in zip(members, registrations, strict=True):
                tg.start_soon(register_with, member, coordinator.agent_id, hub_transport.listen_addrs()[0], signed)
        if isinstance(hub, GroupChatCoordinator):
            await stack.enter_async_context(hub.serve())
        yield CentralizedSystem(hub, members)


__all__ = ["GROUPCHAT_KIND", "GROUPCHAT_PROTOCOL", "REGISTER_PROTOCOL", "CentralizedAgent", "CentralizedSystem",
           "Coordinator", "CoordinatorSelector", "GroupChatCoordinator", "GroupChatMember", "centralized_agent",
           "open_centralized", "register_with"]
