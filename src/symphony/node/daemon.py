"""The node daemon: wires identity, transport, ledger gossip and the runtime, and serves its front.

The node knows nothing of HTTP. It offers what a front end needs (``api.node_api.NodeApi``:
questions, read-only snapshots, the event bus, its clock) and serves one ``Front`` beside
itself, whose address it advertises in ``node.json``: ``api.server.HttpApi``, which
``api.server.node_with_api`` (the assembly ``symphony node`` runs) gives it.

Data dir layout (all owned by the node; checked and locked by ``node.datadir``):

- ``lock``         held (fcntl.flock) while the node runs: a second node on the dir is refused
- ``key``          Ed25519 seed, mode 0600: a restarted node keeps its agent ID
- ``record.json``  this agent's last signed record, so a restart continues its Lamport clock
- ``learned.json`` what the agent learned from outcome feedback (skill EMA, LinUCB arms), saved at a
                   bounded rate and loaded at start (``node.runtime.LearningFile``)
- ``node.json``    written once the node is serving (agent ID, addresses, API URL, pid),
                   removed on clean exit — scripts and tests wait for it
- ``events.jsonl`` structured event log, including a ``task_record`` (status, answer, full
                   trace) for every question this node initiated; rotated at a size (``node.eventlog``)

Every event also goes to the in-process ``EventBus`` (``node.bus``: live ``GET /v1/events``, the
dashboard) and to the node's Prometheus counters (``node.metrics``: ``GET /metrics``).

Faults degrade, they do not stop the node: when the disk fills up the event log counts the lines
it loses (``/v1/node`` ``event_log``, ``symphony_event_log_lost_lines``), reads keep working, and a
new question is refused with the reason (it could not be recorded) until space is freed. Task
records kept in memory are bounded (``max_task_records`` finished ones; running ones always).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import trio
from prometheus_client import CollectorRegistry

from symphony import __version__
from symphony.board import TeamService
from symphony.errors import ConfigError
from symphony.ledger import GossipConfig, Ledger, LedgerConfig
from symphony.ledger.store import QueryFilter
from symphony.llm import parse_model_spec
from symphony.llm.base import ModelError
from symphony.node.bus import Event, EventBus
from symphony.node.config import NodeConfig
from symphony.node.datadir import DataDir, os_problem
from symphony.node.defences import GuardedTransport
from symphony.node.eventlog import EventLog
from symphony.node.metrics import MeteredModel, NodeMetrics, NodeStateCollector
from symphony.node.runtime import AgentProfile, AgentRuntime, LearningFile
from symphony.node.snapshots import LedgerEntry, NodeStatus, PeerState, TaskProgress
from symphony.node.tasks import TaskBook, TaskRecord
from symphony.pipeline.service import AskOptions, TaskFailed
from symphony.protocol.identity import Identity
from symphony.protocol.messages import LedgerRecord, record_addrs
from symphony.transport.base import PeerEvent
from symphony.transport.libp2p import Libp2pConfig, Libp2pTransport, check_port_free, open_libp2p_transport
from symphony.transport.reach import RelayServiceLimits

#: Longest wait for peers to acknowledge our ``leaving`` record on shutdown (SIGTERM must exit
#: within 2 s; honest peers answer in milliseconds, and the record is also published).
LEAVE_TIMEOUT_S = 1.0


class Front(Protocol):
    """What a node serves beside itself and advertises (``node.json``'s ``api``): its HTTP API."""

    async def serve(self, node: Node, *, task_status: trio.TaskStatus[str]) -> None:
        """Serve ``node`` until cancelled; report the address served at through ``task_status``."""

    def close(self) -> None:
        """Release what was held for serving (a bound socket) if ``serve`` never ran."""


#: makes the node's front once the node's own checks passed; ``ConfigError`` stops the start
FrontFactory = Callable[[NodeConfig], Front]


class Node:
    """One Symphony agent. ``await Node(config).run()`` serves until cancelled or ``stop()``.

    ``front`` makes what the node serves beside itself (``api.server.node_with_api`` gives the HTTP
    API); it is called last, so a locked data dir or a taken port is reported before its errors.
    ``clock`` is the node's one wall clock (records, events, liveness, the API's timestamps)."""

    def __init__(self, config: NodeConfig, *, front: FrontFactory | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self._clock = clock
        self.data = DataDir.open(config.data_dir)
        try:
            self.identity = Identity.load_or_create(self.data_dir / "key")
            self._lamport = self.data.saved_lamport(self.identity.agent_id)
            self.events = EventLog(self.data_dir / "events.jsonl", max_bytes=int(config.event_log_max_mb * 2**20),
                                   keep=config.event_log_keep, clock=clock)
        except ConfigError:
            self.data.close()
            raise
        try:
            self._set_up(config, front, clock)
        except ConfigError:
            self.events.close()
            self.data.close()
            raise

    def _set_up(self, config: NodeConfig, front: FrontFactory | None, clock: Callable[[], float]) -> None:
        self.bus = EventBus(clock=clock)
        self.task_progress = TaskProgress()  # what a viewer connecting mid-question replays
        self.metrics = NodeMetrics()
        self.model: MeteredModel | None = (MeteredModel(parse_model_spec(config.model), self.metrics)
                                        if config.model else None)
        self.runtime: AgentRuntime | None = None
        self.teams: TeamService | None = None  # the shared task boards (issue #21), while running
        self._transport: Libp2pTransport | None = None  # while running: how each peer is reached
        self.task_records = TaskBook(keep=config.max_task_records)
        self._task_scopes: dict[str, trio.CancelScope] = {}
        self.metrics.registry.register(NodeStateCollector(self))
        self._nursery: trio.Nursery | None = None
        self.api_url: str | None = None
        self.started_at = self.now()
        self._stop = anyio.Event()
        for addr in config.listen:
            check_port_free(addr)
        self._front = None if front is None else front(config)

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    def now(self) -> float:
        """The node's wall clock, in seconds since the epoch."""
        return self._clock()

    @property
    def registry(self) -> CollectorRegistry:
        """The node's Prometheus registry (``node.metrics``); a front adds its own series to it."""
        return self.metrics.registry

    def _save_record(self, record: LedgerRecord) -> None:
        """Keep our newest record for a restart; a failure (disk full) is reported, not raised:
        the record is already in the ledger and on its way to the network."""
        tmp = self.data_dir / "record.json.tmp"
        try:
            tmp.write_bytes(record.to_bytes())
            tmp.replace(self.data_dir / "record.json")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.emit("record_save_failed", {"lamport": record.lamport, "error": exc.strerror or str(exc)})

    def stop(self) -> None:
        """Ask ``run`` to leave the network gracefully and return."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        self.events.emit("starting", {"agent": self.agent_id, "name": cfg.name, "version": __version__})
        # every bootstrap peer is asked to dial us back and, unless it could, for a relay slot; one
        # without --relay-service refuses
        libp2p_config = Libp2pConfig(listen=cfg.listen, relay_service=cfg.relay_service, relays=tuple(cfg.bootstrap),
                                     relay_limits=relay_limits(cfg), reachability=cfg.reachability, mdns=cfg.mdns,
                                     rendezvous_service=cfg.rendezvous_service, rendezvous=cfg.rendezvous,
                                     dht=cfg.dht, upnp=cfg.upnp)
        async with open_libp2p_transport(self.identity, libp2p_config) as transport:
            self._transport = transport
            self.runtime = AgentRuntime(
                transport=transport, identity=self.identity, model=self.model, clock=self._clock,
                profile=AgentProfile(name=cfg.name, tags=tuple(cfg.tags), hardware=cfg.hardware, roles=cfg.roles),
                ledger_config=LedgerConfig(heartbeat_interval_s=cfg.heartbeat_interval_s,
                                           ttl_heartbeats=cfg.ttl_heartbeats),
                gossip_config=GossipConfig(anti_entropy_interval_s=cfg.anti_entropy_interval_s,
                                           target_degree=cfg.target_degree),
                bootstrap=cfg.bootstrap, lamport=self._lamport,
                on_event=self.emit, on_own_record=self._save_record, shards=cfg.shards,
                privacy_sigma=cfg.privacy_sigma, throughput=self.model.throughput if self.model else None,
                task_defaults=cfg.task_defaults(),
                learning_store=LearningFile(self.data_dir / "learned.json"),
                learning_interval_s=cfg.learn_republish_s,
                warm_peers=cfg.warm_peers,
            )
            transport.set_membership(self.runtime.holds_slots)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.runtime.run)
                    self.teams = TeamService(GuardedTransport(transport, self.runtime.defences), self.identity,
                                             self.model, clock=self._clock, is_member=self.runtime.holds_slots,
                                             emit=self.emit)
                    await nursery.start(self.teams.run)
                    transport.on_peer_event(self._on_peer_event)
                    if self._front is not None:
                        self.api_url = await nursery.start(self._front.serve, self)
                    self._write_runtime_info(transport.listen_addrs())
                    self.events.emit("ready", {"addrs": transport.listen_addrs(), "api": self.api_url})
                    task_status.started()
                    nursery.start_soon(self._warm_up)
                    nursery.start_soon(self._publish_new_addrs, transport)
                    await self._stop.wait()
                    await self._leave()
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None  # peer events during shutdown have nowhere to go
        if self.model is not None:
            await self.model.aclose()
        if self._front is not None:
            self._front.close()
        (self.data_dir / "node.json").unlink(missing_ok=True)
        self.events.emit("stopped", {})
        self.events.close()
        self.data.close()

    # ---- events ---------------------------------------------------------------------------

    def emit(self, kind: str, fields: dict[str, Any]) -> None:
        """The node's one event sink: the log file, the counters and the live bus."""
        self.events.emit(kind, fields)
        self.metrics.observe(kind, fields)
        if kind in ("record_merged", "record_issued") and self.bus.subscribers:
            agent_id = fields.get("agent", self.agent_id)
            fields = {**fields, "record": _wire(self.ledger_entry(agent_id)), "peer": _wire(self.peer(agent_id))}
        self.task_progress.observe(self.bus.publish(kind, fields))

    def _on_peer_event(self, event: PeerEvent) -> None:
        """A direct connection opened or closed: published once every transport handler (the
        ledger's liveness bookkeeping included) has seen it, so the row shows the ledger's verdict."""
        if event.kind == "leave":  # when this node saw a peer's last connection close (issue #19: kill recovery)
            self.events.emit("peer_closed", {"agent": event.peer_id})
        if self._nursery is not None:  # None once the node is shutting down
            self._nursery.start_soon(self._publish_peer_event, event)

    async def _publish_peer_event(self, event: PeerEvent) -> None:
        """A close without a ``leaving`` record is a *suspect* (unavailable here until heard from again)."""
        change: str = event.kind
        record = self.ledger.records.get(event.peer_id)
        if change == "leave" and (record is None or record.availability != "leaving"):
            change = "suspect"
        self.bus.publish("peer", {"change": change, "agent_id": event.peer_id, "peer": _wire(self.peer(event.peer_id))})

    # ---- questions --------------------------------------------------------------------------

    def submit(self, question: str, options: AskOptions, *, task_id: str | None = None) -> TaskRecord:
        """Start answering ``question`` in the background; returns its (running) task record.

        A question that cannot be recorded (the event log fails: disk full) is not started; its
        record says why (``status: failed``, ``reason: storage``)."""
        assert self._nursery is not None, "submit() is for a running node"
        record = TaskRecord(task_id=task_id or uuid.uuid4().hex, question=question,
                            submitted_at=round(self.now(), 3))
        self.task_records.add(record)
        if not self.events.emit("task_submitted", {"task_id": record.task_id}):
            refused = record.failed(reason="storage", error=(
                f"this node cannot record new questions: writing {self.events.path} failed ({self.events.error}); "
                f"free space under {self.data_dir}"))
            self.task_records.finish(refused)
            self.metrics.task_done("failed", 0.0)
            self.bus.publish("task_record", refused.to_wire())
            return refused
        self._task_scopes[record.task_id] = trio.CancelScope()
        self.bus.publish("task_submitted", record.to_wire())
        self._nursery.start_soon(self._answer, record, options)
        return record

    def task(self, task_id: str) -> TaskRecord | None:
        """The record of a question this node initiated, as it stands (None: unknown or dropped)."""
        return self.task_records.get(task_id)

    def tasks(self) -> list[TaskRecord]:
        """The task records kept, oldest first."""
        return list(self.task_records.values())

    def progress(self) -> list[Event]:
        """The progress events of the tasks in flight here, oldest first (``TaskProgress``)."""
        return self.task_progress.events()

    async def wait_task(self, task_id: str) -> TaskRecord:
        """The final record of ``task_id`` once it is finished. ``KeyError`` if unknown."""
        return await self.task_records.wait(task_id)

    def cancel(self, task_id: str) -> None:
        """Stop working on a question (its client went away); its status becomes ``cancelled``."""
        scope = self._task_scopes.get(task_id)
        if scope is not None:
            scope.cancel()

    async def _answer(self, record: TaskRecord, options: AskOptions) -> None:
        assert self.runtime is not None
        started = time.perf_counter()
        final = record.cancelled("cancelled: the node is stopping")  # unless it ends otherwise below
        try:
            with self._task_scopes[record.task_id] as scope:
                final = record.answered(await self.runtime.tasks.ask(record.question, options,
                                                                     task_id=record.task_id))
            if scope.cancelled_caught:
                final = record.cancelled("cancelled: the client went away")
        except TaskFailed as exc:
            final = record.failed(str(exc), reason=exc.reason, trace=exc.trace)
        finally:
            del self._task_scopes[record.task_id]
            self.task_records.finish(final)
            self.metrics.task_done(final.status, time.perf_counter() - started)
            view = final.to_wire()
            self.events.emit("task_record", view)
            self.task_progress.observe(self.bus.publish("task_record", view))

    async def _publish_new_addrs(self, transport: Libp2pTransport) -> None:
        """Re-issue our record when our addresses change: at once when a relay slot is granted
        (a node behind NAT is unreachable until its record carries the /p2p-circuit address; at
        the default 60 s heartbeat that wait was up to a minute), and checked once a heartbeat
        (a slot expired)."""
        while True:
            with trio.move_on_after(self.config.heartbeat_interval_s):
                await transport.wait_addrs_changed()
            addrs = record_addrs(transport.listen_addrs())
            own = self.runtime.gossip.own_record
            if own is not None and list(own.addrs) != addrs:
                await self.runtime.gossip.update(addrs=addrs)

    async def _warm_up(self) -> None:
        """Load an embedded model now, not at the first question; log when it is ready."""
        if self.model is None:
            return
        try:
            seconds = await self.model.load()
        except ModelError as exc:
            self.emit("model_failed", {"error": str(exc)[:1000]})
            return
        if seconds is not None:
            self.emit("model_loaded", {"model": self.model.name, "load_s": round(seconds, 2)})

    async def _leave(self) -> None:
        """Announce the departure (published, and pushed to each direct peer), waiting at most
        ``LEAVE_TIMEOUT_S`` for acknowledgements: a peer that holds the push must not hold the exit."""
        assert self.runtime is not None
        with anyio.move_on_after(LEAVE_TIMEOUT_S):
            await self.runtime.gossip.leave()
        self.events.emit("leaving", {})

    def _write_runtime_info(self, addrs: list[str]) -> None:
        info = {"agent_id": self.agent_id, "name": self.config.name, "addrs": addrs,
                "api": self.api_url, "pid": os.getpid()}
        tmp = self.data_dir / "node.json.tmp"
        try:
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(self.data_dir / "node.json")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_problem(self.data_dir / "node.json", exc, "write") from None

    # ---- what the node shows: read-only snapshots (api.node_api.NodeApi) ------------------------

    @property
    def ledger(self) -> Ledger:
        assert self.runtime is not None
        return self.runtime.ledger

    def status(self) -> NodeStatus:
        assert self.runtime is not None
        svc = self.runtime.gossip
        record = svc.own_record
        return NodeStatus(
            agent_id=self.agent_id, name=self.config.name, addrs=svc.transport.listen_addrs(), api_url=self.api_url,
            lamport=None if record is None else record.lamport, uptime_s=round(self.now() - self.started_at, 3),
            connected_peers=len(svc.transport.peers()), ledger_size=len(self.ledger.records),
            rejected=dict(self.ledger.rejected), refused=dict(self.runtime.defences.rejected),
            event_log=self.events.stats(), task_records=len(self.task_records),
            traffic=svc.transport.stats.snapshot(), reach=self._transport_now().reach_status(),
            model_features=self.model.features() if self.model is not None else {},
        )

    def peers(self) -> list[PeerState]:
        """Every other agent with a record here, by agent ID."""
        assert self.runtime is not None
        now, connected = self.now(), self._connections()
        return [PeerState.of(self.ledger, record, now=now, connected=connected)
                for agent_id, record in sorted(self.ledger.records.items()) if agent_id != self.agent_id]

    def peer(self, agent_id: str) -> PeerState | None:
        """One of ``peers()`` (None for this node itself or an agent without a record)."""
        assert self.runtime is not None
        record = self.ledger.records.get(agent_id)
        if record is None or agent_id == self.agent_id:
            return None
        return PeerState.of(self.ledger, record, now=self.now(), connected=self._connections())

    def _connections(self) -> dict[str, str]:
        """Each connected peer and how it is reached: direct, relayed or hole-punched (issue 20)."""
        return self._transport_now().connection_kinds()

    def _transport_now(self) -> Libp2pTransport:
        assert self._transport is not None
        return self._transport

    def ledger_entries(self) -> list[LedgerEntry]:
        """Every record of the ledger replica (this node's own included), by agent ID."""
        now = self.now()
        return [LedgerEntry.of(self.ledger, record, now=now) for _, record in sorted(self.ledger.records.items())]

    def ledger_entry(self, agent_id: str) -> LedgerEntry | None:
        record = self.ledger.records.get(agent_id)
        return None if record is None else LedgerEntry.of(self.ledger, record, now=self.now())

    def has_agents(self, where: QueryFilter) -> bool:
        """Whether any available agent matches ``where`` now."""
        return bool(self.ledger.query(where, now=self.now()))

    async def update_record(self, **fields: Any) -> LedgerRecord:
        """Change fields of this node's own record; returns the new signed record (published)."""
        assert self.runtime is not None
        return await self.runtime.gossip.update(**fields)


def relay_limits(cfg: NodeConfig) -> RelayServiceLimits:
    """What a ``relay_service`` node grants: the config's ``relay_*`` keys over the transport's defaults."""
    given = {"max_reservations": cfg.relay_max_reservations, "max_circuits": cfg.relay_max_circuits,
             "circuit_bytes": None if cfg.relay_circuit_mb is None else cfg.relay_circuit_mb * 1024 * 1024,
             "circuit_seconds": cfg.relay_circuit_seconds}
    return RelayServiceLimits(**{key: value for key, value in given.items() if value is not None})


def _wire(snapshot: PeerState | LedgerEntry | None) -> dict[str, Any] | None:
    return None if snapshot is None else snapshot.to_wire()
