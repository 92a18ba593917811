"""The ``memory`` engine: a whole network simulated inside one trio process.

It is not a mock (DESIGN §1). It keeps the semantics of ``Transport`` that the libp2p
engine has (request/response with deadlines, gossip pubsub, join/leave events,
partitions, crashes) so that the same protocol code runs on up to 10,000 simulated
nodes, in real time or in virtual time (``trio.testing.MockClock``).

Theory of operation
-------------------
*One clock for the network.* A transmission is an entry in a heap ordered by (due
time, send order), run by one system task that sleeps until the earliest entry. What an
event sends counts its delay from that event's due time, so lag on the real clock does
not add up along a path. A message in flight costs a heap entry, not a task. Under
``MockClock``, messages due at the same instant arrive in the order they were sent, so a
run with a seeded ``rng`` and the same calls replays event by event (handlers are
ordinary tasks, which trio may interleave in any order).

*Tasks.* A request handler, and a pubsub handler while messages wait for it, runs as a
task in a nursery owned by that system task, under a cancel scope of its node that is
cancelled when the node leaves. An idle node costs no task. Nothing runs around the
caller's ``async with open_node(...)`` block: ``kill`` does not cancel the caller's code,
and exceptions leave that block unwrapped.

*Links.* A message of ``n`` bytes arrives ``latency_s + 8n / bandwidth_bps`` after it is
sent, or never, with probability ``loss``, drawn for every hop. Links have no queue:
messages sent at once do not slow each other down. A dial takes one round trip and is
never lost. A message still in flight when its connection closes is lost.

*Connections* are one object shared by both ends. Closing one (partition, kill, close)
fails the requests waiting on it at once, as a stream reset does on libp2p, and gives
each end that is still alive a ``leave`` event.

*Request/response.* The request travels; the handler runs as a task of the serving
node; the reply travels back, and so does a failure (no such handler, handler raised).

*Pubsub* follows gossipsub's mesh
(https://github.com/libp2p/specs/blob/master/pubsub/gossipsub/gossipsub-v1.0.md). For
each topic a subscriber keeps a symmetric mesh of connected subscribers. An edge is
grafted when either end has fewer than ``mesh_degree`` (D) mesh peers and neither has
2·D (gossipsub's D_hi). Meshes are repaired when a node subscribes, connects or loses
a connection, instead of on a heartbeat. A publisher sends to its mesh, or, if it is not
subscribed, to D random connected subscribers (gossipsub's fanout). On first receipt a
node delivers the message and forwards it to its mesh, except to the peer it came from
and to the publisher. A handler gets its topic's messages one at a time, in arrival
order; past ``_INBOX_SIZE`` waiting, new ones are dropped and counted. Left out: IHAVE/IWANT gossip, peer scoring, pruning meshes back
down to D, and the delay before neighbours learn of a subscription (here: at once).

*Deduplication.* Instead of a seen-cache per node, each message carries the set of
nodes that have received it. Only the message's copies in flight reference it, so the
set is freed when the last copy lands: dedup is exact (as with an unbounded seen-cache)
and its memory is bounded by the messages in flight, not by N times the history.

*Scale.* Sending or receiving one message costs O(D). Mesh repair scans only the
repairing node's own connections. A node's memory is its connections, its meshes and
its counters, so 10,000 nodes with a handful of links each fit comfortably.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from symphony.errors import ConfigError, PeerUnreachable, RequestTimeout
from symphony.protocol.identity import Identity
from symphony.transport.base import (
    MessageHandler,
    OffenceHandler,
    PeerEvent,
    PeerEventHandler,
    RequestHandler,
    TransportStats,
)

__all__ = ["DeliveryHook", "LinkModel", "MemoryNetwork", "MemoryTransport"]

logger = logging.getLogger(__name__)

DeliveryHook = Callable[[str, str, int, float], None]
"""``(msg_id, receiver_peer_id, hops, time) -> None``, called on each pubsub delivery."""

_ADDRESS = re.compile(r"/memory/(\d+)/p2p/([1-9A-HJ-NP-Za-km-z]+)")
_INBOX_SIZE = 1024  # pubsub messages a subscriber may have waiting for its handler


@dataclass(frozen=True)
class LinkModel:
    """How a link carries messages, the same in both directions.

    Attributes:
        latency_s: one-way delay in seconds.
        bandwidth_bps: bits per second, or ``None`` for no limit; a message of ``n``
            bytes takes ``8n / bandwidth_bps`` seconds more.
        loss: probability that a message (request, reply or pubsub hop) is dropped.
    """

    latency_s: float = 0.0
    bandwidth_bps: float | None = None
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.latency_s < math.inf:
            raise ConfigError(f"latency_s must be finite and >= 0, not {self.latency_s!r}")
        if self.bandwidth_bps is not None and not self.bandwidth_bps > 0:
            raise ConfigError(f"bandwidth_bps must be > 0 or None, not {self.bandwidth_bps!r}")
        if not 0 <= self.loss <= 1:
            raise ConfigError(f"loss must be within [0, 1], not {self.loss!r}")

    def transfer_time(self, nbytes: int) -> float:
        """Seconds from sending ``nbytes`` to their arrival."""
        if self.bandwidth_bps is None:
            return self.latency_s
        return self.latency_s + nbytes * 8 / self.bandwidth_bps


class MemoryNetwork:
    """A simulated network; nodes join it with ``open_node``.

    Args:
        link: the model of every link that has no ``set_link`` override.
        rng: the source of all randomness (loss, mesh choices); seed it to replay a run.
        mesh_degree: gossipsub's D, the mesh size a subscriber aims for on each topic.

    Attributes:
        on_deliver: if set, called as ``(msg_id, receiver, hops, time)`` when a pubsub
            message is delivered (first receipt); ``hops`` is 1 for the publisher's
            neighbours. Message IDs are ``"<publisher>/<n>"``, ``n`` counting the
            network's publishes from 1. It runs inside the network's clock task: keep it
            quick, and never let it raise (trio would stop the run).
        dropped: messages lost, by cause: ``"loss"`` (the link model),
            ``"disconnected"`` (the connection closed while they were in flight),
            ``"inbox_full"`` (a subscriber's handler fell ``_INBOX_SIZE`` behind).
    """

    def __init__(
        self,
        *,
        link: LinkModel = LinkModel(),
        rng: random.Random | None = None,
        mesh_degree: int = 6,
    ) -> None:
        if mesh_degree < 1:
            raise ConfigError(f"mesh_degree must be >= 1, not {mesh_degree!r}")
        self.link = link
        self.rng = rng if rng is not None else random.Random()
        self.mesh_degree = mesh_degree
        self.on_deliver: DeliveryHook | None = None
        self.dropped: Counter[str] = Counter()
        self._clock = _Clock()
        self._links: dict[tuple[str, str], LinkModel] = {}
        self._groups: dict[str, int] = {}
        self._nodes: dict[str, MemoryTransport] = {}
        self._by_index: dict[int, MemoryTransport] = {}
        self._indexes: dict[str, int] = {}
        self._publishes = itertools.count(1)

    # -- control, for tests and benchmarks -------------------------------------------

    def set_link(self, a: str, b: str, link: LinkModel) -> None:
        """Use ``link`` between peers ``a`` and ``b``, now and for later connections."""
        if a == b:
            raise ConfigError(f"a link joins two different peers, not {a!r} to itself")
        self._links[_pair(a, b)] = link
        node = self._nodes.get(a)
        conn = node._conns.get(b) if node is not None else None
        if conn is not None:
            conn.link = link

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network so that peers in different groups cannot talk.

        Peers not listed form one more group together. Connections across groups close
        at once (a ``leave`` event at both ends; messages in flight on them are lost),
        and dials across fail with ``PeerUnreachable``. Replaces any earlier partition.

        Raises:
            ConfigError: a peer is in two groups, or a group is a bare string.
        """
        assignment: dict[str, int] = {}
        for number, group in enumerate(groups, start=1):
            if isinstance(group, str):
                raise ConfigError(f"a group is a collection of peer IDs, not the string {group!r}")
            for peer_id in group:
                if assignment.setdefault(peer_id, number) != number:
                    raise ConfigError(f"peer {peer_id} is in two partition groups")
        self._groups = assignment
        crossing = [
            conn
            for node in self._nodes.values()
            for conn in node._conns.values()
            if conn.a is node and not self._reachable(conn.a.peer_id, conn.b.peer_id)
        ]
        for conn in crossing:
            self._drop(conn)

    def heal(self) -> None:
        """End the partition. Closed connections stay closed until a node dials again."""
        self._groups = {}

    def kill(self, peer_id: str) -> None:
        """Crash a node: it leaves at once, without a goodbye.

        Its peers get ``leave`` events, its pending and future requests fail with
        ``PeerUnreachable``, and its handlers are cancelled. The code inside its
        ``open_node`` block keeps running, but the node is off the network for good;
        ``open_node`` with the same identity brings it back at the same address.

        Raises:
            ConfigError: no node with this peer ID is on the network.
        """
        node = self._nodes.get(peer_id)
        if node is None:
            raise ConfigError(f"no node {peer_id} is on this network")
        self._retire(node)

    async def wait_idle(self) -> None:
        """Return once no message is in flight (handlers may still be running)."""
        await self._clock.wait_idle()

    @asynccontextmanager
    async def open_node(self, identity: Identity) -> AsyncIterator[MemoryTransport]:
        """Put a node with ``identity`` on the network; it leaves gracefully on exit.

        A peer ID keeps its address across reopenings, as a restarted node with a
        fixed listen port would.

        Raises:
            ConfigError: a node with this identity is already on the network.
        """
        peer_id = identity.agent_id
        await self._clock.start()
        if peer_id in self._nodes:
            raise ConfigError(f"node {peer_id} is already on this network")
        index = self._indexes.setdefault(peer_id, len(self._indexes))
        node = MemoryTransport(self, peer_id, index)
        self._nodes[peer_id] = node
        self._by_index[index] = node
        try:
            yield node
        finally:
            self._retire(node)

    # -- connections ------------------------------------------------------------------

    def _link_between(self, a: str, b: str) -> LinkModel:
        return self._links.get(_pair(a, b), self.link)

    def _reachable(self, a: str, b: str) -> bool:
        return self._groups.get(a, 0) == self._groups.get(b, 0)

    def _dial(self, dialer: MemoryTransport, index: int, peer_id: str) -> MemoryTransport:
        """Return the node a dial reaches, or raise ``PeerUnreachable``."""
        if not dialer._alive:
            raise PeerUnreachable(f"{dialer.peer_id} is off the network and cannot dial")
        remote = self._by_index.get(index)
        if remote is None or remote.peer_id != peer_id:
            raise PeerUnreachable(f"no node {peer_id} at /memory/{index}")
        if not self._reachable(dialer.peer_id, peer_id):
            raise PeerUnreachable(f"{peer_id} is partitioned away from {dialer.peer_id}")
        return remote

    def _connect(self, a: MemoryTransport, b: MemoryTransport) -> None:
        conn = _Connection(a, b, self._link_between(a.peer_id, b.peer_id))
        a._conns[b.peer_id] = conn
        b._conns[a.peer_id] = conn
        for topic in a._topics:
            self._maybe_graft(a, b, topic)
        a._emit("join", b.peer_id)
        b._emit("join", a.peer_id)

    def _drop(self, conn: _Connection) -> None:
        """Close ``conn``: fail its requests, repair meshes, tell the ends still alive."""
        conn.closed = True
        for call in conn.calls:
            call.settle(failure=f"connection {conn.a.peer_id} <-> {conn.b.peer_id} closed")
        conn.calls.clear()
        ends = ((conn.a, conn.b), (conn.b, conn.a))
        for node, other in ends:
            del node._conns[other.peer_id]
        for node, other in ends:
            self._prune(node, other.peer_id)
            if node._alive:
                node._emit("leave", other.peer_id)

    def _retire(self, node: MemoryTransport) -> None:
        """Take ``node`` off the network (closed or killed); idempotent."""
        if not node._alive:
            return
        node._alive = False
        del self._nodes[node.peer_id]
        del self._by_index[node._index]
        for conn in list(node._conns.values()):
            self._drop(conn)
        for scope in node._task_scopes:
            scope.cancel()

    # -- carrying messages ------------------------------------------------------------

    def _transmit(
        self, conn: _Connection, nbytes: int, deliver: Callable[..., None], *args: Any
    ) -> None:
        """Carry ``nbytes`` over ``conn``: call ``deliver(*args)`` on arrival, if any."""
        link = conn.link
        if link.loss and self.rng.random() < link.loss:
            self.dropped["loss"] += 1
            return
        self._clock.call_later(link.transfer_time(nbytes), self._arrive, conn, deliver, args)

    def _arrive(
        self, conn: _Connection, deliver: Callable[..., None], args: tuple[Any, ...]
    ) -> None:
        if conn.closed:
            self.dropped["disconnected"] += 1
            return
        deliver(*args)

    # -- pubsub -----------------------------------------------------------------------

    def _new_message(self, source: MemoryTransport, topic: str, data: bytes) -> _Message:
        msg_id = f"{source.peer_id}/{next(self._publishes)}"
        return _Message(msg_id, topic, source.peer_id, data, {source})

    def _gossip(
        self, sender: MemoryTransport, peer_ids: list[str], msg: _Message, hops: int
    ) -> None:
        size = len(msg.data)
        for peer_id in peer_ids:
            conn = sender._conns[peer_id]
            sender.stats.record_sent(msg.topic, size)
            receiver = conn.other(sender)
            self._transmit(conn, size, receiver._receive_message, sender.peer_id, msg, hops)

    def _fanout(self, node: MemoryTransport, topic: str) -> list[str]:
        """Up to D random connected subscribers of ``topic``, for a non-subscriber."""
        subscribers = [p for p, c in node._conns.items() if topic in c.other(node)._topics]
        return self.rng.sample(subscribers, min(self.mesh_degree, len(subscribers)))

    def _graft_some(self, node: MemoryTransport, topic: str) -> None:
        """Offer ``node``'s connected subscribers of ``topic`` mesh edges, in random order."""
        mesh = node._topics[topic].mesh
        candidates = []
        for peer_id, conn in node._conns.items():
            peer = conn.other(node)
            if peer_id not in mesh and topic in peer._topics:
                candidates.append(peer)
        self.rng.shuffle(candidates)
        for peer in candidates:
            self._maybe_graft(node, peer, topic)

    def _maybe_graft(self, a: MemoryTransport, b: MemoryTransport, topic: str) -> None:
        """Make ``a`` and ``b`` mesh peers on ``topic`` if the degree rules allow."""
        mesh_a = a._topics[topic].mesh
        sub_b = b._topics.get(topic)
        if sub_b is None or b.peer_id in mesh_a:
            return
        mesh_b = sub_b.mesh
        high = 2 * self.mesh_degree
        wanted = len(mesh_a) < self.mesh_degree or len(mesh_b) < self.mesh_degree
        if wanted and len(mesh_a) < high and len(mesh_b) < high:
            mesh_a[b.peer_id] = None
            mesh_b[a.peer_id] = None

    def _prune(self, node: MemoryTransport, gone: str) -> None:
        """Remove ``gone`` from ``node``'s meshes; a live node grafts replacements."""
        for topic, sub in node._topics.items():
            if gone in sub.mesh:
                del sub.mesh[gone]
                if node._alive:
                    self._graft_some(node, topic)


class MemoryTransport:
    """One node of a ``MemoryNetwork``, implementing ``Transport``; see ``open_node``."""

    def __init__(self, network: MemoryNetwork, peer_id: str, index: int) -> None:
        self._network = network
        self._peer_id = peer_id
        self._index = index
        self._task_scopes: set[trio.CancelScope] = set()
        self._stats = TransportStats()
        self._alive = True
        self._conns: dict[str, _Connection] = {}
        self._handlers: dict[str, RequestHandler] = {}
        self._topics: dict[str, _Subscription] = {}
        self._peer_handlers: list[PeerEventHandler] = []

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def stats(self) -> TransportStats:
        return self._stats

    def listen_addrs(self) -> list[str]:
        return [f"/memory/{self._index}/p2p/{self._peer_id}"]

    def peers(self) -> list[str]:
        return list(self._conns)

    def set_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Serve ``protocol`` with ``handler``, replacing any earlier one."""
        self._handlers[protocol] = handler

    def on_peer_event(self, handler: PeerEventHandler) -> None:
        self._peer_handlers.append(handler)

    def on_offence(self, handler: OffenceHandler) -> None:
        """Accepted for the ``Transport`` interface; never called. Messages here are Python
        objects, not bytes, so there is no framing a peer could break, and requests are not
        read from streams that a peer could hold open."""

    async def connect(self, addr: str) -> str:
        """Dial ``addr`` (``/memory/<index>/p2p/<peer_id>``); return the remote peer ID.

        Takes one round trip of the link; returns at once if already connected. Both
        ends get their ``join`` event before this returns.

        Raises:
            ConfigError: ``addr`` is malformed or is this node's own address.
            PeerUnreachable: no such node is alive, it is partitioned away, or this
                node was killed.
        """
        match = _ADDRESS.fullmatch(addr)
        if match is None:
            raise ConfigError(f"not a memory address (/memory/<index>/p2p/<peer_id>): {addr!r}")
        index, peer_id = int(match[1]), match[2]
        if peer_id == self._peer_id:
            raise ConfigError(f"{addr} is this node's own address")
        if peer_id in self._conns:
            await trio.lowlevel.checkpoint()
            return peer_id
        network = self._network
        await network._clock.sleep(2 * network._link_between(self._peer_id, peer_id).latency_s)
        remote = network._dial(self, index, peer_id)
        if peer_id not in self._conns:
            network._connect(self, remote)
        return peer_id

    async def request(self, peer: str, protocol: str, payload: bytes, *, timeout: float) -> bytes:
        """Send ``payload`` to ``peer``'s handler for ``protocol``; return its reply.

        Raises:
            PeerUnreachable: not connected to ``peer``, the connection closed before the
                reply came, or ``peer`` has no handler for ``protocol`` or its handler raised.
            RequestTimeout: no reply within ``timeout`` seconds (what loss looks like).
        """
        conn = self._conns.get(peer)
        if conn is None:
            await trio.lowlevel.checkpoint()
            raise PeerUnreachable(f"{self._peer_id} is not connected to {peer}")
        call = _Call(self, protocol)
        conn.calls.add(call)
        self._stats.record_sent(protocol, len(payload))
        self._network._transmit(conn, len(payload), conn.other(self)._serve, conn, call, payload)
        try:  # a bare scope: fail_after's generator context manager showed in beacon-round profiles
            with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                await call.done.wait()
        finally:
            conn.calls.discard(call)
        if scope.cancelled_caught:
            raise RequestTimeout(f"no reply from {peer} on {protocol!r} in {timeout} s")
        if call.failure is not None:
            raise PeerUnreachable(call.failure)
        return call.reply

    async def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Deliver ``topic``'s messages to ``handler``, one at a time, in arrival order.

        Subscribing again to a topic replaces its handler. A handler that raises loses
        that message only (the error is logged).
        """
        await trio.lowlevel.checkpoint()
        if topic in self._topics:
            self._topics[topic].handler = handler
            return
        self._topics[topic] = _Subscription(handler)
        if self._alive:
            self._network._graft_some(self, topic)

    async def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to ``topic``'s subscribers (never back to this node)."""
        await trio.lowlevel.checkpoint()
        network = self._network
        msg = network._new_message(self, topic, data)
        subscription = self._topics.get(topic)
        if subscription is not None:
            targets = list(subscription.mesh)
        else:
            targets = network._fanout(self, topic)
        network._gossip(self, targets, msg, hops=1)

    # -- arrivals, run by the network's clock -----------------------------------------

    def _serve(self, conn: _Connection, call: _Call, payload: bytes) -> None:
        handler = self._handlers.get(call.protocol)
        if handler is None:
            self._reply(conn, call, failure=f"{self._peer_id} has no handler for {call.protocol!r}")
            return
        self._stats.record_received(call.protocol, len(payload))
        self._spawn(self._handle, handler, conn, call, payload)

    async def _handle(
        self, handler: RequestHandler, conn: _Connection, call: _Call, payload: bytes
    ) -> None:
        """Run a request handler; a failure goes back to the caller and no further."""
        try:
            reply = await handler(call.caller.peer_id, payload)
            if not isinstance(reply, bytes):
                raise TypeError(f"a request handler returns bytes, not {type(reply).__name__}")
        except Exception:
            logger.exception("handler for %r on %s failed", call.protocol, self._peer_id)
            self._reply(
                conn, call, failure=f"{self._peer_id}'s handler for {call.protocol!r} failed"
            )
            return
        self._stats.record_sent(call.protocol, len(reply))
        self._reply(conn, call, reply=reply)

    def _reply(
        self, conn: _Connection, call: _Call, *, reply: bytes = b"", failure: str | None = None
    ) -> None:
        self._network._transmit(
            conn, len(reply), call.caller._take_reply, conn, call, reply, failure
        )

    def _take_reply(
        self, conn: _Connection, call: _Call, reply: bytes, failure: str | None
    ) -> None:
        if call not in conn.calls:
            return  # the caller gave up (timeout or cancellation)
        conn.calls.remove(call)  # settled: closing the connection now must not fail it
        if failure is None:
            self._stats.record_received(call.protocol, len(reply))
        call.settle(reply, failure)

    def _receive_message(self, sender: str, msg: _Message, hops: int) -> None:
        self._stats.record_received(msg.topic, len(msg.data))
        if self in msg.receivers:
            return
        msg.receivers.add(self)
        subscription = self._topics[msg.topic]
        network = self._network
        if len(subscription.inbox) >= _INBOX_SIZE:
            network.dropped["inbox_full"] += 1
        else:
            subscription.inbox.append((msg.source, msg.data))
            if not subscription.draining:
                subscription.draining = True
                self._spawn(self._drain, msg.topic, subscription)
            if network.on_deliver is not None:
                network.on_deliver(msg.id, self._peer_id, hops, network._clock.now())
        onward = [p for p in subscription.mesh if p != sender and p != msg.source]
        network._gossip(self, onward, msg, hops + 1)

    async def _drain(self, topic: str, subscription: _Subscription) -> None:
        """Hand waiting messages to the handler in order; runs only while some wait."""
        try:
            while subscription.inbox:
                source, data = subscription.inbox.popleft()
                try:
                    await subscription.handler(source, data)
                except Exception:
                    logger.exception("pubsub handler for %r on %s raised", topic, self._peer_id)
        finally:
            subscription.draining = False

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of this node, cancelled if the node leaves."""
        self._network._clock.service.start_soon(self._run_task, fn, args)

    async def _run_task(self, fn: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        with trio.CancelScope() as scope:
            if not self._alive:
                return
            self._task_scopes.add(scope)
            try:
                await fn(*args)
            finally:
                self._task_scopes.discard(scope)

    def _emit(self, kind: Literal["join", "leave"], peer_id: str) -> None:
        event = PeerEvent(kind, peer_id)
        for handler in self._peer_handlers:
            try:
                handler(event)
            except Exception:
                logger.exception("peer event handler on %s raised on %s", self._peer_id, event)


@dataclass(eq=False, slots=True)
class _Connection:
    """A direct connection, one object shared by both ends."""

    a: MemoryTransport
    b: MemoryTransport
    link: LinkModel
    closed: bool = False
    calls: set[_Call] = field(default_factory=set)  # requests in flight, either way

    def other(self, node: MemoryTransport) -> MemoryTransport:
        return self.b if node is self.a else self.a


@dataclass(eq=False, slots=True)
class _Call:
    """A request waiting for its reply."""

    caller: MemoryTransport
    protocol: str
    done: trio.Event = field(default_factory=trio.Event)
    reply: bytes = b""
    failure: str | None = None

    def settle(self, reply: bytes = b"", failure: str | None = None) -> None:
        self.reply, self.failure = reply, failure
        self.done.set()


@dataclass(eq=False, slots=True)
class _Subscription:
    """A node's subscription to one topic."""

    handler: MessageHandler
    mesh: dict[str, None] = field(default_factory=dict)  # an ordered set, for replayable runs
    inbox: deque[tuple[str, bytes]] = field(default_factory=deque)  # (source, data)
    draining: bool = False  # a task is handing the inbox to the handler


@dataclass(eq=False, slots=True)
class _Message:
    """A pubsub message; its copies in flight all share this object."""

    id: str
    topic: str
    source: str
    data: bytes
    receivers: set[MemoryTransport]  # who has it already: exact dedup, see module docstring


class _Clock:
    """Runs the network's events in (time, sequence) order from one system task.

    The task also owns ``service``, the nursery that holds every node's tasks.
    """

    service: trio.Nursery

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._event_time: float | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = trio.Event()
        self._idle = trio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Start the clock task in this trio run if not yet done."""
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:  # first node of this trio run
            self._token = token
            self._heap.clear()
            self._sleep = None
            self._idle.set()
            self._ready = trio.Event()
            trio.lowlevel.spawn_system_task(self._run, name="symphony.memory.clock")
        await self._ready.wait()

    def now(self) -> float:
        """The due time of the event being run, else trio's time.

        Events scheduled from an event count from its due time, so a late wake-up on
        the real clock does not add up along a chain of hops.
        """
        return trio.current_time() if self._event_time is None else self._event_time

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        when = self.now() + delay
        heapq.heappush(self._heap, (when, next(self._sequence), fn, args))
        if self._idle.is_set():
            self._idle = trio.Event()
        if self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when

    async def sleep(self, delay: float) -> None:
        """Like ``trio.sleep``, but an event on the heap: no cancellation to raise."""
        woken = trio.Event()
        self.call_later(delay, woken.set)
        await woken.wait()

    async def wait_idle(self) -> None:
        await trio.lowlevel.checkpoint()
        while self._heap:
            await self._idle.wait()

    async def _run(self) -> None:
        async with trio.open_nursery() as self.service:
            self._ready.set()
            while True:
                deadline = self._heap[0][0] if self._heap else math.inf
                with trio.CancelScope(deadline=deadline) as self._sleep:
                    await trio.sleep_forever()
                self._sleep = None
                self._run_due(trio.current_time())

    def _run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            self._event_time, _, fn, args = heapq.heappop(heap)
            fn(*args)
        self._event_time = None
        if not heap:
            self._idle.set()


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)
