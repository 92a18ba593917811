"""What the HTTP API needs of a node, and all it may touch: ``NodeApi``.

``node.daemon.Node`` has it; the API never reaches past it (into the runtime, the transport or the
gossip service), and reads time only from the node's clock. Everything it reads is a snapshot or a
record value (``node.snapshots``, ``node.tasks``); the changes it may ask for are a question
(submit, cancel) and an update of the node's own record.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from symphony.board import TeamService
from symphony.ledger.store import QueryFilter
from symphony.node.bus import Event, EventBus
from symphony.node.snapshots import LedgerEntry, NodeStatus, PeerState
from symphony.node.tasks import TaskRecord
from symphony.pipeline.service import AskOptions
from symphony.protocol.messages import LedgerRecord


class NodeApi(Protocol):
    """A running node as its API sees it."""

    @property
    def agent_id(self) -> str: ...

    @property
    def started_at(self) -> float:
        """When the node started, on its clock."""

    @property
    def bus(self) -> EventBus:
        """The node's live events (``GET /v1/events`` subscribes to it)."""

    @property
    def registry(self) -> CollectorRegistry:
        """The node's Prometheus series; the API adds its own (``GET /metrics`` renders it)."""

    @property
    def teams(self) -> TeamService | None:
        """The node's shared task boards (``/v1/teams``); None until the node runs."""

    def now(self) -> float:
        """The node's wall clock: the only time the API reads."""

    def status(self) -> NodeStatus: ...

    def peers(self) -> list[PeerState]: ...

    def ledger_entries(self) -> list[LedgerEntry]: ...

    def ledger_entry(self, agent_id: str) -> LedgerEntry | None: ...

    def has_agents(self, where: QueryFilter) -> bool:
        """Whether any available agent matches ``where`` now."""

    def tasks(self) -> list[TaskRecord]:
        """The task records kept, oldest first."""

    def task(self, task_id: str) -> TaskRecord | None: ...

    def progress(self) -> list[Event]:
        """The published progress events of the tasks in flight here, oldest first: a viewer that
        connects mid-question replays them after the task records."""

    def submit(self, question: str, options: AskOptions, *, task_id: str | None = None) -> TaskRecord:
        """Start answering ``question``; its record, running (or failed at once: it could not be recorded)."""

    def cancel(self, task_id: str) -> None:
        """Stop working on a question whose client went away."""

    async def wait_task(self, task_id: str) -> TaskRecord:
        """The final record of ``task_id`` once it is finished."""

    async def update_record(self, **fields: Any) -> LedgerRecord:
        """Change fields of the node's own record; the new signed record."""
