"""The node daemon: wires identity, transport, ledger gossip and the HTTP API.

Data dir layout (all owned by the node; checked and locked by ``node.datadir``):

- ``lock``         held (fcntl.flock) while the node runs: a second node on the dir is refused
- ``key``          Ed25519 seed, mode 0600: a restarted node keeps its agent ID
- ``record.json``  this agent's last signed record, so a restart continues its Lamport clock
- ``node.json``    written once the node is serving (agent ID, addresses, API URL, pid),
                   removed on clean exit — scripts and tests wait for it
- ``events.jsonl`` structured event log, including a ``task_record`` (status, answer, full
                   trace) for every question this node initiated; rotated at a size (``node.eventlog``)

Every event also goes to the in-process ``EventBus`` (live ``GET /v1/events``, the dashboard)
and to the node's Prometheus counters (``GET /metrics``).

Faults degrade, they do not stop the node: when the disk fills up the event log counts the lines
it loses (``/v1/node`` ``event_log``, ``symphony_event_log_lost_lines``), reads keep working, and a
new question is refused with the reason (it could not be recorded) until space is freed. Task
records kept in memory are bounded (``max_task_records`` finished ones; running ones always).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

import anyio
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from symphony import __version__
from symphony.api.events import EventBus
from symphony.api.metrics import MeteredModel, NodeMetrics, NodeStateCollector
from symphony.errors import ConfigError
from symphony.ledger import GossipConfig, Ledger, LedgerConfig
from symphony.llm.base import ModelError, parse_model_spec
from symphony.node.config import NodeConfig, parse_host_port
from symphony.node.datadir import DataDir, os_problem
from symphony.node.eventlog import EventLog
from symphony.node.runtime import AgentProfile, AgentRuntime
from symphony.pipeline.service import AskOptions, TaskFailed
from symphony.protocol.identity import Identity
from symphony.protocol.messages import LedgerRecord
from symphony.transport.base import PeerEvent
from symphony.transport.libp2p import Libp2pConfig, check_port_free, open_libp2p_transport

#: Longest wait for peers to acknowledge our ``leaving`` record on shutdown (SIGTERM must exit
#: within 2 s; honest peers answer in milliseconds, and the record is also published).
LEAVE_TIMEOUT_S = 1.0


class Node:
    """One Symphony agent. ``await Node(config).run()`` serves until cancelled or ``stop()``."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.data = DataDir.open(config.data_dir)
        try:
            self.identity = Identity.load_or_create(self.data_dir / "key")
            self._lamport = self.data.saved_lamport(self.identity.agent_id)
            self.events = EventLog(self.data_dir / "events.jsonl", max_bytes=int(config.event_log_max_mb * 2**20),
                                   keep=config.event_log_keep)
        except ConfigError:
            self.data.close()
            raise
        try:
            self._set_up(config)
        except ConfigError:
            self.events.close()
            self.data.close()
            raise

    def _set_up(self, config: NodeConfig) -> None:
        self.bus = EventBus()
        self.metrics = NodeMetrics()
        self.model: MeteredModel | None = (MeteredModel(parse_model_spec(config.model), self.metrics)
                                        if config.model else None)
        self.runtime: AgentRuntime | None = None
        self.task_records: dict[str, dict[str, Any]] = {}
        self._task_scopes: dict[str, trio.CancelScope] = {}
        self.metrics.registry.register(NodeStateCollector(self))
        self._nursery: trio.Nursery | None = None
        self.api_url: str | None = None
        self.started_at = time.time()
        self._stop = anyio.Event()
        for addr in config.listen:
            check_port_free(addr)
        self._api_socket = self._bind_api_socket()

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

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
        async with open_libp2p_transport(self.identity, Libp2pConfig(listen=cfg.listen)) as transport:
            self.runtime = AgentRuntime(
                transport=transport, identity=self.identity, model=self.model, clock=time.time,
                profile=AgentProfile(name=cfg.name, tags=tuple(cfg.tags), hardware=cfg.hardware, roles=cfg.roles),
                ledger_config=LedgerConfig(heartbeat_interval_s=cfg.heartbeat_interval_s,
                                           ttl_heartbeats=cfg.ttl_heartbeats),
                gossip_config=GossipConfig(anti_entropy_interval_s=cfg.anti_entropy_interval_s,
                                           target_degree=cfg.target_degree),
                bootstrap=cfg.bootstrap, lamport=self._lamport,
                on_event=self.emit, on_own_record=self._save_record, shards=cfg.shards,
            )
            transport.set_membership(self.runtime.holds_slots)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.runtime.run)
                    transport.on_peer_event(self._on_peer_event)
                    if self._api_socket is not None:
                        await self._start_api(nursery, self._api_socket)
                    self._write_runtime_info(transport.listen_addrs())
                    self.events.emit("ready", {"addrs": transport.listen_addrs(), "api": self.api_url})
                    task_status.started()
                    nursery.start_soon(self._warm_up)
                    await self._stop.wait()
                    await self._leave()
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None  # peer events during shutdown have nowhere to go
        if self.model is not None:
            await self.model.aclose()
        if self._api_socket is not None:
            self._api_socket.close()
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
            fields = {**fields, "record": self.record_view(agent_id), "peer": self.peer_row(agent_id)}
        self.bus.publish(kind, fields)

    def _on_peer_event(self, event: PeerEvent) -> None:
        """A direct connection opened or closed: published once every transport handler (the
        ledger's liveness bookkeeping included) has seen it, so the row shows the ledger's verdict."""
        if self._nursery is not None:  # None once the node is shutting down
            self._nursery.start_soon(self._publish_peer_event, event)

    async def _publish_peer_event(self, event: PeerEvent) -> None:
        """A close without a ``leaving`` record is a *suspect* (unavailable here until heard from again)."""
        change: str = event.kind
        record = self.ledger.records.get(event.peer_id)
        if change == "leave" and (record is None or record.availability != "leaving"):
            change = "suspect"
        self.bus.publish("peer", {"change": change, "agent_id": event.peer_id, "peer": self.peer_row(event.peer_id)})

    # ---- questions --------------------------------------------------------------------------

    def submit(self, question: str, options: AskOptions, *, task_id: str | None = None) -> dict[str, Any]:
        """Start answering ``question`` in the background; returns its (running) task record.

        A question that cannot be recorded (the event log fails: disk full) is not started; its
        record says why (``status: failed``, ``reason: storage``)."""
        assert self._nursery is not None
        task_id = task_id or uuid.uuid4().hex
        record: dict[str, Any] = {"task_id": task_id, "status": "running", "question": question,
                                  "submitted_at": round(time.time(), 3), "done": trio.Event()}
        self._keep(record)
        if not self.events.emit("task_submitted", {"task_id": task_id}):
            record.update(status="failed", reason="storage", error=(
                f"this node cannot record new questions: writing {self.events.path} failed ({self.events.error}); "
                f"free space under {self.data_dir}"))
            record["done"].set()
            self.metrics.task_done("failed", 0.0)
            self.bus.publish("task_record", task_view(record))
            return record
        self._task_scopes[task_id] = trio.CancelScope()
        self.bus.publish("task_submitted", task_view(record))
        self._nursery.start_soon(self._answer, record, options)
        return record

    def _keep(self, record: dict[str, Any]) -> None:
        """Add a task record; of the finished ones only the newest ``max_task_records`` stay."""
        self.task_records[record["task_id"]] = record
        self._prune()

    def _prune(self) -> None:
        finished = [tid for tid, r in self.task_records.items() if r["status"] != "running"]
        for tid in finished[: max(0, len(finished) - self.config.max_task_records)]:
            del self.task_records[tid]

    def cancel(self, task_id: str) -> None:
        """Stop working on a question (its client went away); its status becomes ``cancelled``."""
        scope = self._task_scopes.get(task_id)
        if scope is not None:
            scope.cancel()

    async def _answer(self, record: dict[str, Any], options: AskOptions) -> None:
        assert self.runtime is not None
        started = time.perf_counter()
        try:
            with self._task_scopes[record["task_id"]] as scope:
                record["trace"] = await self.runtime.tasks.ask(record["question"], options,
                                                               task_id=record["task_id"])
                record.update(status="done", answer=record["trace"]["answer"])
            if scope.cancelled_caught:
                record.update(status="cancelled", error="cancelled: the client went away")
        except TaskFailed as exc:
            record.update(status="failed", error=str(exc), reason=exc.reason, trace=exc.trace)
        finally:
            del self._task_scopes[record["task_id"]]
            if record["status"] == "running":  # cancelled from outside: the node is stopping
                record.update(status="cancelled", error="cancelled: the node is stopping")
            record["done"].set()
            self.metrics.task_done(record["status"], time.perf_counter() - started)
            view = task_view(record)
            self.events.emit("task_record", view)
            self.bus.publish("task_record", view)
            self._prune()

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

    def _bind_api_socket(self) -> socket.socket | None:
        """Bind the API socket at construction, so "port in use" is a clear, early error."""
        if self.config.api is None:
            return None
        host, port = parse_host_port(self.config.api)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot serve the API on {host}:{port} ({exc.strerror}); pick a free port with --api {host}:0 "
                "or turn the API off with --api none"
            ) from exc
        return sock

    async def _start_api(self, nursery: trio.Nursery, sock: socket.socket) -> None:
        from symphony.api.app import create_app

        hc = HypercornConfig()
        hc.bind = [f"fd://{sock.detach()}"]  # hypercorn now owns (and will close) the fd
        self._api_socket = None
        hc.accesslog = None
        hc.errorlog = None
        binds = await nursery.start(serve, create_app(self), hc)
        self.api_url = binds[0]

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

    # ---- views for the API --------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        assert self.runtime is not None
        return self.runtime.ledger

    def info(self) -> dict[str, Any]:
        assert self.runtime is not None
        svc = self.runtime.gossip
        record = svc.own_record
        return {
            "agent_id": self.agent_id,
            "name": self.config.name,
            "version": __version__,
            "addrs": svc.transport.listen_addrs(),
            "api": self.api_url,
            "lamport": None if record is None else record.lamport,
            "uptime_s": round(time.time() - self.started_at, 3),
            "connected_peers": len(svc.transport.peers()),
            "ledger_size": len(self.ledger.records),
            "rejected": dict(self.ledger.rejected),
            "refused": dict(self.runtime.defences.rejected),
            "event_log": self.events.stats(),
            "task_records": len(self.task_records),
            "traffic": svc.transport.stats.snapshot(),
        }

    def peers(self) -> list[dict[str, Any]]:
        assert self.runtime is not None
        now = time.time()
        connected = set(self.runtime.transport.peers())
        return [self._peer_row(agent_id, record, now, connected)
                for agent_id, record in sorted(self.ledger.records.items()) if agent_id != self.agent_id]

    def peer_row(self, agent_id: str) -> dict[str, Any] | None:
        """One row of ``peers()`` (None for this node itself or an agent without a record)."""
        assert self.runtime is not None
        record = self.ledger.records.get(agent_id)
        if record is None or agent_id == self.agent_id:
            return None
        return self._peer_row(agent_id, record, time.time(), set(self.runtime.transport.peers()))

    def _peer_row(self, agent_id: str, record: LedgerRecord, now: float, connected: set[str]) -> dict[str, Any]:
        seen = self.ledger.last_seen(agent_id)
        return {
            "agent_id": agent_id, "name": record.name, "connected": agent_id in connected,
            "available": self.ledger.is_available(agent_id, now=now),
            "last_seen_s_ago": None if seen is None else round(now - seen, 3),
            "models": record.models, "tags": record.tags, "addrs": record.addrs,
            "reputation": self.ledger.reputation(agent_id),
        }

    def snapshot(self, *, max_tasks: int = 50) -> dict[str, Any]:
        """Everything a new ``/v1/events`` subscriber needs before the live events."""
        return {"node": self.info(), "peers": self.peers(), "ledger": self.ledger_view(),
                "tasks": [task_view(r) for r in list(self.task_records.values())[-max_tasks:]]}

    def ledger_view(self) -> list[dict[str, Any]]:
        now = time.time()
        return [self._record_view(record, now) for _, record in sorted(self.ledger.records.items())]

    def record_view(self, agent_id: str) -> dict[str, Any] | None:
        record = self.ledger.records.get(agent_id)
        return None if record is None else self._record_view(record, time.time())

    def _record_view(self, record: LedgerRecord, now: float) -> dict[str, Any]:
        return {**record.model_dump(mode="json"), "vector": record.vector,
                "available": self.ledger.is_available(record.agent_id, now=now)}


def task_view(record: dict[str, Any]) -> dict[str, Any]:
    """A task record as JSON (without its completion event)."""
    return {k: v for k, v in record.items() if k != "done"}
