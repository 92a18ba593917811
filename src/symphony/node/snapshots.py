"""Read-only snapshots of a node's view of the network, frozen at one instant of the node's clock.

What the node tells its viewers (the HTTP API, the live events): how it sees a peer (``PeerState``),
one ledger record with its availability here (``LedgerEntry``) and itself (``NodeStatus``). Each is
a value built from the ledger replica, the direct connections and ``now``; ``PeerState`` and
``LedgerEntry`` have one JSON form, ``to_wire()``, the same in ``GET /v1/peers``, ``GET /v1/ledger``
and the ``peer`` / ``record_merged`` events. How a status is shown is the API's (``api.views``).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from symphony.ledger import Ledger
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

    @classmethod
    def of(cls, ledger: Ledger, record: LedgerRecord, *, now: float, connected: AbstractSet[str]) -> PeerState:
        """The state of ``record``'s agent in ``ledger`` at ``now``, ``connected`` being the direct peers."""
        seen = ledger.last_seen(record.agent_id)
        return cls(agent_id=record.agent_id, name=record.name, connected=record.agent_id in connected,
                   available=ledger.is_available(record.agent_id, now=now),
                   last_seen_s_ago=None if seen is None else round(now - seen, 3),
                   models=list(record.models), tags=list(record.tags), addrs=list(record.addrs),
                   reputation=ledger.reputation(record.agent_id))

    def to_wire(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "name": self.name, "connected": self.connected,
                "available": self.available, "last_seen_s_ago": self.last_seen_s_ago, "models": self.models,
                "tags": self.tags, "addrs": self.addrs, "reputation": self.reputation}


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
