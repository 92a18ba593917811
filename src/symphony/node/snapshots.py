"""Read-only snapshots of a node's view of the network, frozen at one instant of the node's clock.

What the node tells its viewers (the HTTP API, the live events): how it sees a peer (``PeerState``),
one ledger record with its availability here (``LedgerEntry``) and itself (``NodeStatus``). Each is
a value built from the ledger replica, the direct connections and ``now``; ``PeerState`` and
``LedgerEntry`` have one JSON form, ``to_wire()``, the same in ``GET /v1/peers``, ``GET /v1/ledger``
and the ``peer`` / ``record_merged`` events. How a status is shown is the API's (``api.views``).

``TaskProgress`` keeps what a running question's records cannot say yet: the progress events
(chains started, plans made, steps assigned and finished) of the tasks in flight here, so a viewer
that connects mid-question (a reloaded dashboard) replays them after the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from symphony.ledger import Ledger
from symphony.node.bus import Event
from symphony.protocol.messages import LedgerRecord


@dataclass(frozen=True, kw_only=True)
class PeerState:
    """Another agent as this node sees it: its record's self-description, the connection, liveness."""

    agent_id: str
    name: str
    connected: bool
    available: bool
    last_seen_s_ago: float | None
    models: list[str]
    tags: list[str]
    addrs: list[str]
    reputation: float
    #: how this node reaches the agent now: ``direct``, ``relayed`` or ``hole-punched``; None when not connected
    connection: str | None = None

    @classmethod
    def of(cls, ledger: Ledger, record: LedgerRecord, *, now: float, connected: Mapping[str, str]) -> PeerState:
        """The state of ``record``'s agent in ``ledger`` at ``now``; ``connected`` maps each connected peer to
        how it is reached (``Libp2pTransport.connection_kinds``)."""
        seen = ledger.last_seen(record.agent_id)
        return cls(agent_id=record.agent_id, name=record.name, connected=record.agent_id in connected,
                   connection=connected.get(record.agent_id),
                   available=ledger.is_available(record.agent_id, now=now),
                   last_seen_s_ago=None if seen is None else round(now - seen, 3),
                   models=list(record.models), tags=list(record.tags), addrs=list(record.addrs),
                   reputation=ledger.reputation(record.agent_id))

    def to_wire(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "name": self.name, "connected": self.connected,
                "available": self.available, "last_seen_s_ago": self.last_seen_s_ago, "models": self.models,
                "tags": self.tags, "addrs": self.addrs, "reputation": self.reputation, "connection": self.connection}


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One record of the ledger replica and whether its agent is available here."""

    record: LedgerRecord
    available: bool

    @classmethod
    def of(cls, ledger: Ledger, record: LedgerRecord, *, now: float) -> LedgerEntry:
        return cls(record=record, available=ledger.is_available(record.agent_id, now=now))

    def to_wire(self) -> dict[str, Any]:
        """The signed record's fields, its decoded capability ``vector`` and ``available``."""
        return {**self.record.model_dump(mode="json"), "vector": self.record.vector, "available": self.available}


@dataclass(frozen=True, kw_only=True)
class NodeStatus:
    """This node: identity, addresses, clock, and the counters of what it refused, lost and carried."""

    agent_id: str
    name: str
    addrs: list[str]
    api_url: str | None
    lamport: int | None
    uptime_s: float
    connected_peers: int
    ledger_size: int
    rejected: Mapping[str, int]
    refused: Mapping[str, int]
    event_log: Mapping[str, Any]
    task_records: int
    traffic: Mapping[str, Mapping[str, int]]
    #: what this node's model server was found to support (``OpenAIModel.features``); {} for other backends
    model_features: Mapping[str, str] = field(default_factory=dict)
    #: how others reach this node (issue 20): ``reachability`` (AutoNAT: public, private, unknown),
    #: ``relay_slots`` (relay -> granted, refused, not needed), the peers ``hole_punched``
    reach: Mapping[str, Any] = field(default_factory=dict)


#: the events that tell how a question is progressing (``pipeline.service``), on the initiator
#: (``task_started``, ``chain_finished``, ``task_finished``) or on a chain's planner (the rest)
PROGRESS_EVENTS = frozenset({"task_started", "plan_made", "step_assigned", "step_finished", "chain_finished",
                             "chain_launched", "task_finished"})


class TaskProgress:
    """The progress events published for the tasks in flight here, by task, as the bus sent them.

    An event's task is the root of its ``task`` ID (chains are ``<task>/c<i>``). A task's events are
    forgotten when its final ``task_record`` is published (the record's trace then says it all). A
    chain planned here for another node ends without a record here: its events stay until newer
    tasks push them out. Bounded: ``max_tasks`` tasks of at most ``max_events`` events each; what
    does not fit is counted in ``dropped`` (a viewer then shows less of that task, never a wrong one).
    """

    def __init__(self, *, max_tasks: int = 50, max_events: int = 500) -> None:
        if max_tasks < 1 or max_events < 1:
            raise ValueError("max_tasks and max_events must be >= 1")
        self.max_tasks = max_tasks
        self.max_events = max_events
        self.dropped = 0
        self._tasks: dict[str, list[Event]] = {}  # oldest task first

    def observe(self, event: Event) -> None:
        """Keep ``event`` if it tells a task's progress; forget a task once its record is final."""
        data = event["data"]
        if event["type"] == "task_record" and data.get("status") != "running":
            self._tasks.pop(str(data.get("task_id")), None)
        elif event["type"] in PROGRESS_EVENTS:
            events = self._tasks.setdefault(str(data.get("task", "")).split("/")[0], [])
            if len(events) < self.max_events:
                events.append(event)
            else:
                self.dropped += 1
            while len(self._tasks) > self.max_tasks:
                self.dropped += len(self._tasks.pop(next(iter(self._tasks))))

    def events(self) -> list[Event]:
        """The events kept, in the order they were published."""
        return sorted((event for events in self._tasks.values() for event in events), key=lambda e: e["seq"])
