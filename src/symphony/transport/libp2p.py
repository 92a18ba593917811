"""The py-libp2p engine behind the ``Transport`` interface.

This is the only module in Symphony that imports ``libp2p``. Everything above it sees
``symphony.transport.base.Transport`` and Symphony's own error tree.

Theory of operation
-------------------
``open_libp2p_transport`` builds one py-libp2p host and runs it for the lifetime of the
``async with`` block:

- **Host**: TCP, Noise (the *only* security protocol offered, so a peer can neither
  downgrade us to plaintext nor to secio) and yamux. The libp2p key is derived from the
  ``Identity`` seed, so ``peer_id == identity.agent_id`` and every connection is
  authenticated as that agent by the Noise handshake.
- **Request/response**: the wire format of py-libp2p's ``RequestResponse``: one
  varint-length-prefixed request and one reply per stream, then close. The client side is
  ``RequestResponse.send_request``. The server side is ours (``_request_server``), because
  py-libp2p's takes one of the protocol's slots before reading the request and reads it
  under the handler's deadline: about 65 silent streams held every slot for an hour. Ours
  reads the request under its own short deadline (``request_read_timeout_s``), then runs
  the handler under the long one. A failing handler resets the stream, which the caller
  sees as ``PeerUnreachable``.
- **Publish/subscribe**: ``Pubsub`` over ``GossipSub`` with strict signing (the source
  handed to a handler is the verified original publisher). Each subscribed topic gets a
  pump task in our nursery that drains libp2p's subscription channel into the handler,
  one message at a time and in order.
- **Peer events**: a network notifee (py-libp2p's ``INotifee``). The swarm removes a
  closed connection from its table *before* it notifies, so "leave" is emitted when the
  last connection to a peer closes and "join" when the first one opens.

Hostile peers
-------------
Any peer that completes the Noise handshake can open streams on every protocol the host
serves and write any bytes. py-libp2p lets an exception from a protocol handler escape
into the connection's nursery (``SwarmConn._handle_muxed_stream``), which ends the whole
process: one non-protobuf frame on ``/meshsub/1.1.0`` did (``Pubsub.stream_handler``
catches only stream errors, not ``DecodeError``). So every inbound stream runs under a
``_StreamGuard``, installed where py-libp2p hands a negotiated stream to its handler
(``_GuardedMultiselect``, sharing the host's handler table, so protocols registered later
are guarded too) and around negotiation itself (``BasicHost._swarm_stream_handler``, which
lets a non-UTF-8 protocol line's ``UnicodeDecodeError`` escape). The guard

- caps the streams one peer holds open on one protocol (``max_inbound_streams_per_peer``;
  the next is reset), so one peer cannot take a protocol's shared slots, and
- turns any exception from the handler into a reset of that stream.

py-libp2p also runs work for a peer outside the stream's handler: ``Pubsub`` processes
each received message in a task of its service (``push_msg``), and an exception there
cancels the service. ``_ContainedPubsub`` catches it. Each of these is an offence of the
peer (``TransportOffence``): counted in ``stats.offences`` and passed to ``on_offence``
handlers, never an error of the node.

Why not py-libp2p's resource manager (``libp2p.rcmgr``): the swarm consults it only once
per inbound stream, before negotiation (``SwarmConn._handle_muxed_stream`` calls
``acquire_stream(peer, INBOUND)``), so its per-protocol and per-peer-per-protocol limits
(``acquire_scoped_stream``) are never applied to inbound streams; with it set, the swarm
also queues every stream on one global semaphore, which a single peer can fill. It
neither reads requests under a deadline nor tells us who offended.

Shutdown runs in reverse: our pumps are cancelled, then gossipsub and pubsub stop, then
``_close_host`` closes every connection and listener (explicitly: see its docstring for
the py-libp2p bug that makes this necessary). No peer events are delivered once closing
has begun.

What is switched off, and why
-----------------------------
The network must contact nothing but the addresses passed to ``connect`` (DESIGN: no
background discovery, no third-party servers). py-libp2p does more by default:

- UPnP and bootstrap: not enabled (``new_host`` defaults; no bootstrap list). mDNS only
  with ``config.mdns`` (``transport.reach.LanDiscovery``): it dials whom it hears of.
  Rendezvous only with ``config.rendezvous``: it dials whom our relays (bootstrap peers)
  have registered (``transport.reach.Rendezvous``). The Kademlia DHT only with
  ``config.dht`` (``transport.dht``): its lookups dial the peers other DHT nodes name.
- Relays: only the peers in ``config.relays`` are asked to dial us back (AutoNAT) and
  for a slot, once ``connect`` has reached them; py-libp2p's ``RelayDiscovery`` (probing every peer) is not run. Circuit
  relay v2 and DCUtR are wired in ``transport.reach``.
- Identify's observed addresses are recorded (DCUtR needs them) but never advertised:
  ``_BoundAddrsOnly``.
- The swarm's *auto-connector* re-dials known peers from the peerstore whenever we have
  fewer than 100 connections, including addresses peers merely claimed via identify.
  It is replaced by ``_NoAutoDial``. No watermark setting turns it off: the target is
  the midpoint of the two watermarks, and a zero high watermark makes the pruner close
  every connection.
- GossipSub peer exchange: a PRUNE carrying signed peer records makes py-libp2p dial the
  listed peers, whatever our own ``do_px`` says. A peer could make us dial any host and
  port, so ``_NoPeerExchangeGossipSub`` ignores PX.
- GossipSub spam protection: its default silently drops a peer's messages above 10 per
  second per topic (measured: 11 of 20 arrived). Symphony bounds traffic in its own
  layers, so it is off.
- ``request`` never dials: it refuses peers we have no connection to. (py-libp2p's
  ``new_stream`` would otherwise dial whatever addresses the peerstore holds. A
  connection that closes in the instant between our check and the stream opening can
  still lead it to redial that peer's known address.)
"""

from __future__ import annotations

import logging
import socket as stdlib_socket
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from libp2p import new_host
from libp2p.abc import IHost, IMultiselectCommunicator, INetConn, INetStream, INetwork, INotifee, ISubscriptionAPI
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import StreamHandlerFn, TProtocol
from libp2p.exceptions import BaseLibp2pError, ParseError
from libp2p.host.basic_host import BasicHost
from libp2p.host.exceptions import StreamFailure
from libp2p.io.exceptions import IncompleteReadError, IOException, MessageTooLarge
from libp2p.io.msgio import VarIntLengthMsgReadWriter
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import ProtocolNotSupportedError as MultiselectProtocolNotSupportedError
from libp2p.protocol_muxer.multiselect import DEFAULT_NEGOTIATE_TIMEOUT, MULTISELECT_PROTOCOL_ID, Multiselect
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.request_response import (
    BytesCodec,
    ProtocolNotSupportedError,
    RequestResponse,
    RequestResponseConfig,
    RequestResponseError,
    RequestTimeoutError,
)
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr  # type: ignore[import-untyped]

from symphony.errors import ConfigError, PeerError, PeerUnreachable, RequestTimeout
from symphony.protocol.identity import Identity
from symphony.transport.dht import Dht
from symphony.transport.dial import end_head_start_on_connect
from symphony.transport.reach import (
    LanDiscovery,
    PortMapping,
    Reach,
    RelayServiceLimits,
    Rendezvous,
)
from symphony.transport.rpcmux import MAX_PROTOCOL, MUX_PROTOCOL, MuxClient, MuxFailure, MuxServer
from symphony.transport.base import (
    REACHABILITY,
    MessageHandler,
    OffenceHandler,
    PeerEvent,
    PeerEventHandler,
    RequestHandler,
    TransportOffence,
    TransportStats,
)

__all__ = ["Libp2pConfig", "Libp2pTransport", "open_libp2p_transport"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
_CODEC = BytesCodec()
# /meshsub/1.1.0 brings prune backoff and scoring hooks; 1.0.0 for older peers.
_GOSSIP_PROTOCOLS = [PROTOCOL_ID_V11, PROTOCOL_ID]
# py-libp2p refuses inbound pubsub frames above 1 MiB and then drops the peer's stream;
# this leaves room for the signature, key and framing around the payload.
_MAX_PUBLISH_CEILING = _MIB - 4096
# Closing waits 0.1 s per connection inside py-libp2p; bounded so exit cannot hang.
_CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Libp2pConfig:
    """Settings for one libp2p node. Checked on construction.

    Attributes:
        listen: Multiaddrs to listen on, e.g. ``["/ip4/127.0.0.1/tcp/0"]`` (port 0 picks
            a free port; ``listen_addrs()`` reports the real one).
        gossip_degree: GossipSub mesh degree D; D_low = D - 2 (at least 1), D_high = 2 D.
        gossip_heartbeat_s: GossipSub heartbeat; a new peer joins the mesh within one.
        max_request_bytes: Largest request payload sent or accepted.
        max_reply_bytes: Largest reply payload sent or accepted.
        max_publish_bytes: Largest pubsub payload we publish (below 1 MiB, py-libp2p's
            inbound frame limit).
        max_concurrent_inbound: Inbound requests served at once per protocol, from all
            members together; more are reset and counted in ``stats.refused``.
        max_concurrent_inbound_strangers: Inbound requests served at once per protocol
            from peers that are not members (see ``set_membership``), all of them
            together, in a pool apart from the members' slots: however many keys a
            stranger makes, it cannot take a member's slot. Newcomers' first syncs share
            this pool; their records also arrive by gossip, which needs no slot.
        max_inbound_streams_per_peer: Inbound streams one peer may hold open at once on
            one protocol (any protocol: ours, gossipsub, identify, ping); more are reset
            and reported as a ``too_many_streams`` offence. An honest peer keeps one
            gossipsub stream per connection and rarely has more than a few requests in
            flight to one node.
        request_read_timeout_s: Server-side limit to receive a whole request once its
            stream is open; a slower peer is reset and reported (``slow_request``). At
            the default, a 1 MiB request needs at least 100 KB/s.
        handler_timeout_s: Server-side limit to run the handler and write the reply,
            counted once the request is read. It must outlast the longest legitimate
            request: a planner runs its whole chain inside one Task request (minutes on
            CPU models), and Task handlers already stop at the task's own deadline (at
            most an hour).
        dial_timeout_s: Limit for ``connect``.
        relay_service: Offer circuit relay v2 to others within ``relay_limits`` (for a
            node others can dial directly; see ``transport.reach``).
        relay_limits: What a relay grants: slots, circuits, bytes and seconds per circuit.
        relays: Peer addresses (``.../p2p/<id>``) to join once ``connect`` reaches them:
            each is asked to dial us back (AutoNAT) and, unless it could, for a relay slot;
            a granted slot adds a ``/p2p-circuit`` address to ``listen_addrs``.
        reachability: ``"auto"`` (ask AutoNAT), or what we know we are: ``"public"``
            (take no slot) or ``"private"`` (take a slot on every relay, unasked).
        mdns: Announce us on the LAN by mDNS and dial the Symphony nodes heard of
            (``transport.reach.LanDiscovery``).
        rendezvous_service: Serve rendezvous (``transport.reach.Rendezvous``).
        rendezvous: Register at each of ``relays`` once ``connect`` reaches it and dial
            the Symphony nodes registered there (``transport.reach.Rendezvous``).
        dht: Serve the Kademlia DHT, add every peer ``connect`` reaches to it, announce us
            there and dial the other Symphony nodes it names (``transport.dht``).
        upnp: Ask the router (UPnP IGD) to forward our listen ports at start and list the
            external address first (``transport.reach.PortMapping``).
    """

    listen: list[str]
    gossip_degree: int = 6
    gossip_heartbeat_s: float = 1.0
    max_request_bytes: int = _MIB
    max_reply_bytes: int = 4 * _MIB
    max_publish_bytes: int = 512 * 1024
    max_concurrent_inbound: int = 64
    max_concurrent_inbound_strangers: int = 16
    max_inbound_streams_per_peer: int = 8
    request_read_timeout_s: float = 10.0
    handler_timeout_s: float = 3600.0
    dial_timeout_s: float = 10.0
    relay_service: bool = False
    relay_limits: RelayServiceLimits = RelayServiceLimits()
    relays: tuple[str, ...] = ()
    reachability: str = "auto"
    mdns: bool = False
    rendezvous_service: bool = False
    rendezvous: bool = False
    dht: bool = False
    upnp: bool = False

    def __post_init__(self) -> None:
        _require(bool(self.listen), "listen must name at least one multiaddr")
        for addr in self.listen:
            _parse_listen(addr)
        _require(self.gossip_degree >= 1, f"gossip_degree must be >= 1, not {self.gossip_degree!r}")
        for name in ("gossip_heartbeat_s", "request_read_timeout_s", "handler_timeout_s", "dial_timeout_s"):
            value = getattr(self, name)
            _require(value > 0, f"{name} must be > 0, not {value!r}")
        for name in ("max_request_bytes", "max_reply_bytes", "max_concurrent_inbound",
                     "max_concurrent_inbound_strangers", "max_inbound_streams_per_peer"):
            value = getattr(self, name)
            _require(value >= 1, f"{name} must be >= 1, not {value!r}")
        _require(
            1 <= self.max_publish_bytes <= _MAX_PUBLISH_CEILING,
            f"max_publish_bytes must be in 1..{_MAX_PUBLISH_CEILING}, not {self.max_publish_bytes!r}",
        )
        for addr in self.relays:
            _parse_peer_addr(addr)
        _require(self.reachability in REACHABILITY,
                 f"reachability must be one of {', '.join(REACHABILITY)}, not {self.reachability!r}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _parse_listen(addr: str) -> Multiaddr:
    try:
        maddr = Multiaddr(addr)
    except ValueError as exc:
        raise ConfigError(f"malformed listen multiaddr {addr!r}: {exc}") from exc
    names = [p.name for p in maddr.protocols()]
    if "tcp" not in names or "p2p" in names:
        raise ConfigError(f"listen multiaddr must be /ip4|ip6/<host>/tcp/<port>, not {addr!r}")
    return maddr


def check_port_free(addr: str) -> None:
    """Refuse a fixed listen port another process already holds.

    py-libp2p binds with SO_REUSEPORT (for hole punching), so on Linux a second node
    would silently *share* a port with the first and the kernel would split incoming
    connections between them. A probe bind without SO_REUSEPORT detects that.

    The probe does set SO_REUSEADDR, as the listener itself does (trio sets it): without
    it, the connections a crashed node left in TIME_WAIT on this port refused a restart
    for a minute, though no process held the port. With it, only a socket still
    listening on the port makes the bind fail.
    """
    maddr = _parse_listen(addr)
    port = int(maddr.value_for_protocol("tcp"))
    if port == 0:
        return
    family, host = (
        (stdlib_socket.AF_INET6, maddr.value_for_protocol("ip6"))
        if "ip6" in [p.name for p in maddr.protocols()]
        else (stdlib_socket.AF_INET, maddr.value_for_protocol("ip4"))
    )
    with stdlib_socket.socket(family, stdlib_socket.SOCK_STREAM) as probe:
        probe.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {addr} ({exc.strerror}): another process holds the port; "
                "choose another port or use tcp/0"
            ) from exc


def check_peer_addr(addr: str) -> None:
    """Raise ``ConfigError`` unless ``addr`` is a well-formed ``.../p2p/<peer id>`` multiaddr."""
    _parse_peer_addr(addr)


def _parse_peer_addr(addr: str) -> PeerInfo:
    """Split ``.../p2p/<id>`` into a ``PeerInfo``. Raises ``ConfigError`` if malformed."""
    try:
        return info_from_p2p_addr(Multiaddr(addr))
    except (ValueError, BaseLibp2pError) as exc:
        raise ConfigError(f"malformed peer multiaddr {addr!r} (need .../p2p/<peer id>): {exc}") from exc


class _NoAutoDial(AutoConnector):
    """The swarm's auto-connector with dialling removed: we only dial in ``connect``."""

    async def run_background_task(self, nursery: trio.Nursery) -> None:
        return None

    async def maybe_connect(self) -> None:
        return None


class _NoPeerExchangeGossipSub(GossipSub):
    """GossipSub that ignores peer exchange (PX) instead of dialling the listed peers, and
    backs off from the peers its heartbeat prunes."""

    async def _do_px(self, px_peers: list[rpc_pb2.PeerInfo]) -> None:
        if px_peers:
            logger.debug("ignoring gossipsub peer exchange offering %d peers", len(px_peers))

    def mesh_heartbeat(self) -> tuple[defaultdict[ID, list[str]], defaultdict[ID, list[str]]]:
        """py-libp2p's heartbeat, plus the backoff the GossipSub v1.1 spec asks of a pruning peer.

        py-libp2p 0.8.1 prunes an oversubscribed mesh (more than D_high peers) without recording
        a backoff of its own, while the pruned peer starts its GRAFT-flood clock. Once our mesh
        shrank below D_low we re-grafted the peers just pruned, they flagged us for a GRAFT flood,
        penalised and pruned us again: mesh churn and penalties on every node once N > D_high
        (seen at 25 real nodes, ``bench systems-libp2p``). The backoff is the one py-libp2p uses
        for a pruned peer (``prune_back_off``), so the heartbeat's grafting skips them meanwhile.
        """
        peers_to_graft, peers_to_prune = super().mesh_heartbeat()
        for peer, topics in peers_to_prune.items():
            for topic in topics:
                self._add_back_off(peer, topic, False)
        return peers_to_graft, peers_to_prune


class _OffenceLog:
    """Counts peers' offences in ``stats.offences`` and hands each to the ``on_offence``
    handlers. Shared by the stream guard, the pubsub service and the request server."""

    def __init__(self, stats: TransportStats) -> None:
        self.stats = stats
        self._handlers: list[OffenceHandler] = []

    def subscribe(self, handler: OffenceHandler) -> None:
        self._handlers.append(handler)

    def report(self, peer: ID, protocol: str, reason: str, detail: str = "") -> None:
        # Logged at debug only: a stranger can cause these at line rate, and the counters
        # (API, metrics) already make them visible.
        logger.debug("offence by %s on %s: %s %s", peer, protocol, reason, detail)
        self.stats.offences[reason] += 1
        offence = TransportOffence(peer.to_base58(), protocol, reason)
        for handler in list(self._handlers):
            try:
                handler(offence)
            except Exception:
                logger.exception("offence handler failed on %s", offence)


class _StreamGuard:
    """Runs inbound streams' handlers so that no peer can stop the node or hog a protocol.

    ``run`` caps the streams one peer holds open on one protocol, and ``contain`` turns
    an exception from a handler into a reset of that stream and an offence of its peer.
    Catching every ``Exception`` is the point here: py-libp2p's handlers raise whatever
    their parsers raise (``DecodeError``, ``UnicodeDecodeError``, ``ValueError``, ...),
    and anything that escapes ends the process (see the module docstring). Cancellation
    is a ``BaseException`` and passes through.
    """

    def __init__(self, offences: _OffenceLog, per_peer: int) -> None:
        self._offences = offences
        self._per_peer = per_peer
        self._open: Counter[tuple[ID, str]] = Counter()

    async def run(self, protocol: str, handler: StreamHandlerFn, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        key = (peer, protocol)
        if self._open[key] >= self._per_peer:
            self._offences.report(peer, protocol, "too_many_streams")
            await _reset(stream)
            return
        self._open[key] += 1
        try:
            await self.contain(protocol, handler, stream)
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]

    async def contain(self, protocol: str, handler: StreamHandlerFn, stream: INetStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # noqa: BLE001 - containing every error is the point (docstring)
            self._offences.report(stream.muxed_conn.peer_id, protocol, "protocol_error", repr(exc))
            await _reset(stream)

    def negotiation(self, dispatch: StreamHandlerFn) -> StreamHandlerFn:
        """Wrap the host's whole inbound dispatch (negotiation, then the handler) so a
        peer that breaks multistream negotiation is contained too."""

        async def contained(stream: INetStream) -> None:
            await self.contain(MULTISELECT_PROTOCOL_ID, dispatch, stream)

        return contained


class _GuardedMultiselect(Multiselect):
    """py-libp2p's ``Multiselect`` (protocol_muxer/multiselect.py) whose ``negotiate`` hands
    ``BasicHost._swarm_stream_handler`` the chosen handler wrapped in ``_StreamGuard.run``.

    It shares the host's handler table, so a protocol registered at any time (pubsub's,
    ours, identify, ping, whatever a later py-libp2p adds) is guarded without listing it.
    """

    def __init__(self, handlers: dict[TProtocol | None, StreamHandlerFn | None], guard: _StreamGuard) -> None:
        super().__init__()
        self.handlers = handlers  # the same dict object: later set_stream_handler calls land here
        self._guard = guard

    async def negotiate(
        self, communicator: IMultiselectCommunicator, negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT
    ) -> tuple[TProtocol | None, StreamHandlerFn | None]:
        protocol, handler = await super().negotiate(communicator, negotiate_timeout)
        if protocol is None or handler is None:
            return protocol, handler
        chosen, run = handler, self._guard.run

        async def guarded(stream: INetStream) -> None:
            await run(protocol, chosen, stream)

        return protocol, guarded


def _guard_inbound_streams(host: IHost, guard: _StreamGuard) -> None:
    if not isinstance(host, BasicHost):
        raise TypeError(f"new_host built a {type(host).__name__}, not a BasicHost; update _guard_inbound_streams")
    host.multiselect = _GuardedMultiselect(host.multiselect.handlers, guard)
    host.get_network().set_stream_handler(guard.negotiation(host._swarm_stream_handler))


class _ContainedPubsub(Pubsub):
    """``Pubsub`` whose per-message work cannot stop the service.

    py-libp2p's read loop (``Pubsub.continuously_read_stream``) hands each received
    message to ``push_msg`` as a task of the Pubsub service (``manager.run_task``); if that
    task raises, the service manager cancels the whole service, and the node with it.
    Here a failure on a message from another peer is that peer's ``invalid_message``
    offence; a failure on our own message (``publish`` also goes through ``push_msg``)
    still reaches our caller.
    """

    def __init__(self, host: IHost, router: GossipSub, offences: _OffenceLog) -> None:
        super().__init__(host, router, strict_signing=True)
        self._gossip = router
        self._offences = offences

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            if msg_forwarder == self.my_id:
                raise
            protocol = self._gossip.peer_protocol.get(msg_forwarder, PROTOCOL_ID_V11)
            self._offences.report(msg_forwarder, protocol, "invalid_message", repr(exc))


async def _reset(stream: INetStream) -> None:
    """Reset ``stream``, ignoring failure: the connection may already be gone."""
    try:
        await stream.reset()
    except Exception:
        logger.debug("resetting a stream failed", exc_info=True)


class _PeerEventNotifee(INotifee):
    """Forwards swarm connection events to ``Libp2pTransport._on_connected/_on_closed``."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self._transport = transport

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._transport._on_connected(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._transport._on_closed(conn.muxed_conn.peer_id)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None


def _has_unique_topics(msg: rpc_pb2.Message) -> bool:
    # py-libp2p hands a message once per listed topic, so a crafted message naming our
    # topic twice would reach the handler twice.
    return len(set(msg.topicIDs)) == len(msg.topicIDs)


class Libp2pTransport:
    """A running libp2p node implementing ``symphony.transport.base.Transport``.

    Obtain one from ``open_libp2p_transport``; it is only usable inside that block.
    """

    def __init__(
        self, host: IHost, pubsub: Pubsub, config: Libp2pConfig, offences: _OffenceLog, reach: Reach
    ) -> None:
        self._host = host
        self._reach = reach
        self._lan = LanDiscovery(host) if config.mdns else None
        self._rendezvous = Rendezvous(host, service=config.rendezvous_service, addrs=self.listen_addrs)
        self._dht = Dht(host, addrs=self.listen_addrs) if config.dht else None
        self._upnp = PortMapping() if config.upnp else None
        self._relays = {_parse_peer_addr(addr).peer_id: addr for addr in config.relays}
        self._pubsub = pubsub
        self._config = config
        self._rr = RequestResponse(host)  # client side only; we serve with _request_server
        self._peer_id = host.get_id().to_base58()
        self._offences = offences
        self._stats = offences.stats
        self._peer_handlers: list[PeerEventHandler] = []
        self._joined: set[ID] = set()
        self._topic_handlers: dict[str, MessageHandler] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._is_member: Callable[[str], bool] = lambda peer: True
        self._handlers: dict[str, RequestHandler] = {}
        self._pools: dict[str, dict[str, trio.Semaphore]] = {}
        self._mux_client = MuxClient(self._open_mux_stream, self._spawn, config.max_reply_bytes)
        self._no_mux: set[ID] = set()  # connected peers that do not serve MUX_PROTOCOL
        host.get_network().register_notifee(_PeerEventNotifee(self))

    # -- identity, addresses, statistics -------------------------------------------

    @property
    def peer_id(self) -> str:
        """Our peer ID, equal to the ``Identity``'s agent ID."""
        return self._peer_id

    @property
    def stats(self) -> TransportStats:
        """Live counters of application payload bytes (not framing or encryption).

        Requests count as sent once attempted, even if they then fail; a publish counts
        once, however many peers it reaches; only deliveries to our handlers count as
        received. ``offences`` and ``refused`` count inbound streams turned away."""
        return self._stats

    def served_protocols(self) -> list[str]:
        """Every protocol ID the host answers now: ours, gossipsub's, identify, ping
        (libp2p-specific; each one is guarded against hostile bytes)."""
        return sorted(str(p) for p in self._host.get_mux().get_protocols() if p)

    def listen_addrs(self) -> list[str]:
        """Our addresses, each ending in ``/p2p/<peer_id>``: first the router's external address
        of each port UPnP mapped, then one through each relay we hold a slot on (a node that
        asked for slots may be unreachable otherwise, and peers dial the first address of a
        record), then the bound listen addresses (real ports)."""
        suffix = f"/p2p/{self._peer_id}"
        mapped = [f"{addr}{suffix}" for addr in self._upnp.addrs()] if self._upnp is not None else []
        direct = [f"{addr}{suffix}" for addr in self._host.get_transport_addrs()]
        return mapped + self._reach.circuit_addrs(self._peer_id) + direct

    async def wait_addrs_changed(self) -> None:
        """Return once ``listen_addrs`` gained an address (a relay slot granted), so the ledger
        record can carry it at once rather than at the next heartbeat (libp2p-specific)."""
        await self._reach.wait_addrs_changed()

    def relay_slots(self) -> dict[str, str]:
        """Each relay we joined: ``"granted"`` or ``"refused"`` (its last answer to our slot
        request), or ``"not needed"`` (it dialed us back: we are public) (libp2p-specific)."""
        return dict(self._reach.slots)

    def reach_status(self) -> dict[str, object]:
        """How others reach us (libp2p-specific, for ``/v1/node``): AutoNAT's
        ``reachability`` (public, private, unknown), our ``relay_slots``, and the peers
        DCUtR ``hole_punched``; with ``mdns``, the LAN peers it connected to and the
        announcements it dropped."""
        status: dict[str, object] = {"reachability": self._reach.reachability, "relay_slots": self.relay_slots(),
                                     "hole_punched": self._reach.hole_punched()}
        if self._lan is not None:
            status["mdns"] = {"found": self._lan.found, "dropped": self._lan.dropped}
        if self._config.rendezvous or self._config.rendezvous_service:
            status["rendezvous"] = self._rendezvous.status()
        if self._dht is not None:
            status["dht"] = self._dht.status()
        if self._upnp is not None:
            status["upnp"] = self._upnp.status()
        return status

    async def _dial_found_peer(self, addr: str) -> bool:
        """``connect`` for a peer mDNS, a rendezvous point or the DHT told us of: True once connected; a
        failure is only logged (anyone may announce an address that does not answer)."""
        try:
            await self.connect(addr)
        except (ConfigError, PeerUnreachable) as exc:
            logger.info("could not connect to discovered peer %s: %s", addr, exc)
            return False
        return True

    def connection_kinds(self) -> dict[str, str]:
        """How we reach each connected peer (libp2p-specific): ``"relayed"`` when every
        connection to it goes through a relay, ``"hole-punched"`` when DCUtR upgraded a
        relayed one, else ``"direct"``."""
        punched = set(self._reach.hole_punched())
        kinds: dict[str, str] = {}
        for peer, conns in self._host.get_network().get_connections_map().items():
            name = peer.to_base58()
            if all(_is_relayed(conn) for conn in conns):
                kinds[name] = "relayed"
            else:
                kinds[name] = "hole-punched" if name in punched else "direct"
        return kinds

    # -- connections and peer events -----------------------------------------------

    async def connect(self, addr: str) -> str:
        """Dial ``addr`` and return the remote peer ID once the connection is usable.

        Already being connected is not an error. The Noise handshake proves the remote
        holds the key of the ``/p2p/`` ID, or the dial fails.

        Raises:
            ConfigError: ``addr`` is malformed, lacks ``/p2p/<id>`` or names ourselves.
            PeerUnreachable: the dial or handshake failed or took over ``dial_timeout_s``.
        """
        info = _parse_peer_addr(addr)
        if info.peer_id == self._host.get_id():
            raise ConfigError(f"refusing to connect to our own peer id: {addr!r}")
        try:
            with trio.fail_after(self._config.dial_timeout_s):
                if "/p2p-circuit" in addr:
                    await self._dial_circuit(info.peer_id, Multiaddr(addr))
                else:
                    await self._host.connect(info)
        except trio.TooSlowError as exc:
            raise PeerUnreachable(f"dial to {addr} timed out after {self._config.dial_timeout_s} s") from exc
        except (BaseLibp2pError, OSError, trio.BrokenResourceError) as exc:  # ConnectionError is an OSError
            raise PeerUnreachable(f"dial to {addr} failed: {exc}") from exc
        if info.peer_id in self._relays:
            self._require_nursery().start_soon(self._join_relay, info.peer_id)
        if self._dht is not None:
            self._require_nursery().start_soon(self._dht.join, info.peer_id, self._dial_found_peer)
        return info.peer_id.to_base58()

    async def _join_relay(self, relay: ID) -> None:
        """Take a slot on ``relay`` if we need one, then (with ``rendezvous``) register there:
        in this order, so the registration carries the ``/p2p-circuit`` address the slot gives."""
        await self._reach.join_relay(relay, self._relays[relay])
        if self._config.rendezvous:
            await self._rendezvous.join(relay, self._dial_found_peer)

    async def _dial_circuit(self, peer: ID, maddr: Multiaddr) -> None:
        """Connect through a relay, unless already connected (``CircuitV2Transport.dial``
        would open a second connection)."""
        if not self._host.get_network().get_connections(peer):
            await self._reach.dial_circuit(maddr)

    def peers(self) -> list[str]:
        """Peer IDs with at least one open connection now."""
        return [peer.to_base58() for peer in self._host.get_connected_peers()]

    def on_peer_event(self, handler: PeerEventHandler) -> None:
        """Call ``handler`` on every join/leave from now on. Errors are logged, not raised."""
        self._peer_handlers.append(handler)

    def _on_connected(self, peer: ID) -> None:
        if self._closing or peer in self._joined:
            return
        self._joined.add(peer)
        self._emit(PeerEvent("join", peer.to_base58()))

    def _on_closed(self, peer: ID) -> None:
        if self._closing or peer not in self._joined:
            return
        if self._host.get_network().get_connections(peer):
            return  # another connection to this peer is still open
        self._joined.discard(peer)
        self._mux_client.forget(peer)
        self._no_mux.discard(peer)
        self._emit(PeerEvent("leave", peer.to_base58()))

    def on_offence(self, handler: OffenceHandler) -> None:
        """Call ``handler`` with every ``TransportOffence`` from now on (see the module
        docstring and ``base.OFFENCE_REASONS``). Errors are logged, not raised."""
        self._offences.subscribe(handler)

    def _emit(self, event: PeerEvent) -> None:
        for handler in list(self._peer_handlers):
            try:
                handler(event)
            except Exception:
                logger.exception("peer event handler failed on %s", event)

    # -- request/response ----------------------------------------------------------

    def set_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Serve ``protocol`` with ``handler``, replacing any previous handler.

        The handler gets the authenticated remote peer ID and the request payload and
        returns the reply. If it raises, the error is logged and the caller's request
        fails; this node keeps serving.
        """
        _check_protocol(protocol)
        _require(len(protocol.encode()) <= MAX_PROTOCOL, f"protocol id longer than {MAX_PROTOCOL} bytes: {protocol!r}")
        if not self._handlers:
            self._host.set_stream_handler(TProtocol(MUX_PROTOCOL), self._mux_server().serve)
        self._handlers[protocol] = handler
        self._pools.setdefault(protocol, {
            "member": trio.Semaphore(self._config.max_concurrent_inbound),
            "stranger": trio.Semaphore(self._config.max_concurrent_inbound_strangers),
        })
        self._host.set_stream_handler(TProtocol(protocol), self._request_server(protocol))

    def set_membership(self, is_member: Callable[[str], bool]) -> None:
        """Say which peers get the members' request slots (libp2p-specific).

        ``is_member(peer_id)`` is asked once per inbound request stream, before the request
        is read; peers it rejects share the ``max_concurrent_inbound_strangers`` pool. Until
        this is called every peer counts as a member.
        """
        self._is_member = is_member

    def _mux_server(self) -> MuxServer:
        """The server of ``MUX_PROTOCOL``: the same handlers, slots and offences as the
        per-request streams, applied per request (see ``transport.rpcmux``)."""
        return MuxServer(
            answer=self._run_handler,
            admit=self._admit,
            report=self._offences.report,
            max_request_bytes=self._config.max_request_bytes,
            max_reply_bytes=self._config.max_reply_bytes,
            read_timeout_s=self._config.request_read_timeout_s,
            max_in_flight=self._config.max_inbound_streams_per_peer,
            write_timeout_s=self._config.handler_timeout_s,
        )

    def _admit(self, peer: str, protocol: str) -> trio.Semaphore | None:
        """Take a member's or a stranger's slot for one request on ``protocol``, or count the
        refusal and return None. The caller releases the slot when the handler is done."""
        pools = self._pools.get(protocol)
        if pools is None:  # not served: ``_run_handler`` refuses it at once, within a pool of its own
            pools = self._pools.setdefault("", {"member": trio.Semaphore(self._config.max_concurrent_inbound_strangers)})
            protocol, pool = "", "member"
        else:
            pool = "member" if self._is_member(peer) else "stranger"
        slots = pools[pool]
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            self._stats.refused[protocol if pool == "member" else f"{protocol} (strangers)"] += 1
            # counted in stats.refused (metrics, /v1/node): a warning per refusal would let a flood flood the log
            logger.debug("all %s slots for %s busy: refusing a request", pool, protocol)
            return None
        return slots

    def _request_server(self, protocol: str) -> StreamHandlerFn:
        """The server side of ``RequestResponse``'s wire format for ``protocol``: one request per
        stream, within the slots ``_admit`` gives (the per-peer cap is the guard's)."""

        async def serve(stream: INetStream) -> None:
            slot = self._admit(stream.muxed_conn.peer_id.to_base58(), protocol)
            if slot is None:
                await _reset(stream)
                return
            try:
                await self._answer(protocol, stream)
            finally:
                slot.release()

        return serve

    async def _answer(self, protocol: str, stream: INetStream) -> None:
        """Read the request, run the handler, write the reply and close; on any failure
        reset the stream, which the caller sees as ``PeerUnreachable``."""
        payload = await self._read_request(protocol, stream)
        if payload is None:
            return
        peer = stream.muxed_conn.peer_id.to_base58()
        reply = await self._run_handler(peer, protocol, payload)
        if reply is None:
            await _reset(stream)
            return
        with trio.move_on_after(self._config.handler_timeout_s) as deadline:  # a caller that never reads
            try:
                await VarIntLengthMsgReadWriter(stream, self._config.max_reply_bytes).write_msg(reply)
                await stream.close()
                return
            except IOException as exc:  # the caller gave up or the connection broke
                logger.debug("could not reply to %s on %s: %s", peer, protocol, exc)
        if deadline.cancelled_caught:
            logger.debug("%s did not read its reply on %s within %s s", peer, protocol, self._config.handler_timeout_s)
        await _reset(stream)

    async def _run_handler(self, peer: str, protocol: str, payload: bytes) -> bytes | None:
        """Run ``protocol``'s handler on a request within ``handler_timeout_s``; the reply, or
        None when there is no handler, it failed, timed out or its reply is too large."""
        handler = self._handlers.get(protocol)
        if handler is None:
            logger.debug("request from %s for %s, which we do not serve", peer, protocol)
            return None
        self._stats.record_received(protocol, len(payload))
        reply = None
        with trio.move_on_after(self._config.handler_timeout_s) as deadline:
            reply = await _call_handler(protocol, handler, peer, payload)
        if deadline.cancelled_caught:
            logger.warning("%s handler did not answer %s within %s s", protocol, peer, self._config.handler_timeout_s)
        if reply is not None and len(reply) > self._config.max_reply_bytes:
            logger.error("%s reply of %d bytes exceeds max_reply_bytes", protocol, len(reply))
            reply = None
        if reply is not None:
            self._stats.record_sent(protocol, len(reply))
        return reply

    async def _read_request(self, protocol: str, stream: INetStream) -> bytes | None:
        """Read one length-prefixed request within ``request_read_timeout_s``. If the peer
        does not send one in time and in shape, reset the stream, report the offence and
        return None."""
        peer = stream.muxed_conn.peer_id
        reader = VarIntLengthMsgReadWriter(stream, self._config.max_request_bytes)
        reason = "slow_request"
        with trio.move_on_after(self._config.request_read_timeout_s):
            try:
                return await reader.read_msg()
            except MessageTooLarge:
                reason = "oversized_request"
            except ParseError:
                reason = "malformed_request"
            except (IncompleteReadError, StreamEOF):
                reason = "truncated_request"
            except IOException as exc:  # reset by the peer or the connection closed: it gave up
                logger.debug("%s request from %s abandoned: %s", protocol, peer, exc)
                await _reset(stream)
                return None
        self._offences.report(peer, protocol, reason)
        await _reset(stream)
        return None

    async def request(self, peer: str, protocol: str, payload: bytes, *, timeout: float) -> bytes:
        """Send ``payload`` to ``peer`` on ``protocol`` and return the reply.

        Only peers with an open connection are asked; this never dials.

        Raises:
            PeerUnreachable: not connected, the peer does not serve ``protocol``, its
                handler failed, the reply was too large, or the connection broke.
            RequestTimeout: no reply within ``timeout`` seconds.
            ConfigError: ``timeout`` is not positive or ``payload`` exceeds
                ``max_request_bytes``.
        """
        _require(timeout > 0, f"timeout must be > 0, not {timeout!r}")
        _require(
            len(payload) <= self._config.max_request_bytes,
            f"request of {len(payload)} bytes exceeds max_request_bytes={self._config.max_request_bytes}",
        )
        target = self._connected_peer(peer)
        self._stats.record_sent(protocol, len(payload))
        reply = await self._request_on_mux(target, protocol, payload, timeout)
        if reply is None:
            reply = await self._request_on_new_stream(target, protocol, payload, timeout)
        self._stats.record_received(protocol, len(reply))
        return reply

    async def _request_on_mux(self, target: ID, protocol: str, payload: bytes, timeout: float) -> bytes | None:
        """Ask on our persistent ``MUX_PROTOCOL`` stream to ``target``; None if it does not serve one."""
        if target in self._no_mux:
            return None
        peer = target.to_base58()
        try:
            with trio.fail_after(timeout):
                return await self._mux_client.request(target, protocol, payload)
        except trio.TooSlowError as exc:
            raise RequestTimeout(f"no reply from {peer} on {protocol} within {timeout} s") from exc
        except MuxFailure as exc:
            raise PeerUnreachable(f"request to {peer} on {protocol} failed: {exc}") from exc
        except StreamFailure as exc:
            if not isinstance(exc.__cause__, MultiselectProtocolNotSupportedError) and \
                    "protocol not supported" not in str(exc.__cause__):
                raise PeerUnreachable(f"cannot open a stream to {peer}: {exc}") from exc
            self._no_mux.add(target)  # an older node: one stream per request, until it leaves
            return None
        except BaseLibp2pError as exc:  # the connection closed under us
            raise PeerUnreachable(f"request to {peer} on {protocol} failed: {exc}") from exc

    async def _open_mux_stream(self, target: ID) -> INetStream:
        return await self._host.new_stream(target, [TProtocol(MUX_PROTOCOL)])

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        self._require_nursery().start_soon(fn, *args)

    async def _request_on_new_stream(self, target: ID, protocol: str, payload: bytes, timeout: float) -> bytes:
        """Ask in ``RequestResponse``'s format: a new stream and a negotiation for this request alone."""
        peer = target.to_base58()
        client_config = RequestResponseConfig(
            timeout=timeout,
            max_request_size=self._config.max_request_bytes,
            max_response_size=self._config.max_reply_bytes,
        )
        try:
            return await self._rr.send_request(target, [TProtocol(protocol)], payload, _CODEC, client_config)
        except RequestTimeoutError as exc:
            raise RequestTimeout(f"no reply from {peer} on {protocol} within {timeout} s") from exc
        except ProtocolNotSupportedError as exc:
            raise PeerUnreachable(f"{peer} does not serve {protocol}") from exc
        except RequestResponseError as exc:
            raise PeerUnreachable(f"request to {peer} on {protocol} failed: {exc}") from exc

    def _connected_peer(self, peer: str) -> ID:
        try:
            peer_id = ID.from_base58(peer)
        except ValueError as exc:
            raise PeerUnreachable(f"not a peer id: {peer!r}") from exc
        if not self._host.get_network().get_connections(peer_id):
            raise PeerUnreachable(f"not connected to {peer}")
        return peer_id

    # -- publish/subscribe ---------------------------------------------------------

    async def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Deliver messages on ``topic`` published by other peers to ``handler``.

        Subscribing again replaces the handler. Messages arrive one at a time in the
        order received; a handler error is logged and delivery goes on. A slow handler
        holds up its topic, and py-libp2p drops messages once 32 are queued.
        """
        _require(bool(topic), "topic must not be empty")
        nursery = self._require_nursery()
        replacing = topic in self._topic_handlers
        self._topic_handlers[topic] = handler
        if replacing:
            return
        self._pubsub.set_topic_validator(topic, self._validate, False)
        subscription = await self._pubsub.subscribe(topic)
        nursery.start_soon(self._pump, topic, subscription)

    @staticmethod
    def _validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
        return _has_unique_topics(msg)

    async def publish(self, topic: str, data: bytes) -> None:
        """Sign ``data`` and send it into the ``topic`` mesh (never to ourselves).

        Delivery is best effort: a peer that joined less than a heartbeat ago may not be
        in the mesh yet. Raises ``ConfigError`` above ``max_publish_bytes``.
        """
        _require(bool(topic), "topic must not be empty")
        _require(
            len(data) <= self._config.max_publish_bytes,
            f"message of {len(data)} bytes exceeds max_publish_bytes={self._config.max_publish_bytes}",
        )
        self._stats.record_sent(topic, len(data))
        await self._pubsub.publish(topic, data)

    def mesh_peers(self, topic: str) -> list[str]:
        """Peers in our GossipSub mesh for ``topic`` (libp2p-specific; for tests and
        diagnostics). A published message goes to these peers first."""
        mesh = getattr(self._pubsub.router, "mesh", {})
        return sorted(peer.to_base58() for peer in mesh.get(topic, ()))

    async def _pump(self, topic: str, subscription: ISubscriptionAPI) -> None:
        own_id = self._host.get_id().to_bytes()
        while True:
            msg = await subscription.get()
            if msg.from_id != own_id:
                await self._deliver(topic, msg)

    async def _deliver(self, topic: str, msg: rpc_pb2.Message) -> None:
        source = ID(msg.from_id).to_base58()
        self._stats.record_received(topic, len(msg.data))
        handler = self._topic_handlers[topic]
        try:
            await handler(source, msg.data)
        except Exception:
            logger.exception("handler for topic %s failed on a message from %s", topic, source)

    # -- lifecycle -----------------------------------------------------------------

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None or self._closing:
            raise ConfigError("transport is not running (use it inside open_libp2p_transport)")
        return self._nursery

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def _begin_close(self) -> None:
        self._closing = True


async def _call_handler(protocol: str, handler: RequestHandler, peer: str, payload: bytes) -> bytes | None:
    """Run a request handler and return its reply, or log its failure and return None
    (the stream is then reset: the caller sees ``PeerUnreachable``)."""
    try:
        reply = await handler(peer, payload)
    except PeerError as exc:
        # the guard counts and reports every rejection (a ``rejected`` event, metrics): debug only, so a flood of
        # bad requests cannot flood the log as well
        logger.debug("rejected %s request from %s: %s (%s)", protocol, peer, exc, exc.reason)
        return None
    except Exception:
        logger.exception("%s handler failed on a request from %s", protocol, peer)
        return None
    if not isinstance(reply, bytes):
        logger.error("%s handler returned %s, not bytes", protocol, type(reply).__name__)
        return None
    return reply


def _is_relayed(conn: INetConn) -> bool:
    """Whether ``conn`` runs through a relay (py-libp2p tags relayed connections with
    their ``/p2p-circuit`` address)."""
    try:
        return any("/p2p-circuit" in str(addr) for addr in conn.get_transport_addresses())
    except Exception:  # a connection closing under us
        return False


def _check_protocol(protocol: str) -> None:
    if not protocol.startswith("/") or any(c.isspace() for c in protocol):
        raise ConfigError(f"protocol must look like /name/version without spaces, not {protocol!r}")


def _build_host(identity: Identity, config: Libp2pConfig, listen: list[Multiaddr], offences: _OffenceLog) -> IHost:
    key_pair = create_new_key_pair(identity.seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    bound = _BoundAddrsOnly()
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: noise},
        listen_addrs=listen,
        # identify's observed addresses feed DCUtR hole punching (see ``transport.reach``) ...
        disable_identify_address_discovery=False,
        # ... but are never advertised as ours
        addrs_factory=bound,
    )
    bound.host = host
    _disable_auto_dial(host)
    end_head_start_on_connect(host.get_network())  # type: ignore[arg-type]  # a Swarm: _disable_auto_dial checked
    _guard_inbound_streams(host, _StreamGuard(offences, config.max_inbound_streams_per_peer))
    return host


class _BoundAddrsOnly:
    """The addresses the host advertises (identify's ``listen_addrs``, ``host.get_addrs``):
    only those it is bound to, never the ones peers claim to observe.

    With identify address discovery on, ``BasicHost.get_addrs`` adds every observed address
    that four peers reported; four colluding peers could then make us advertise any address.
    DCUtR reads the observations directly (``DCUtRProtocol._get_observed_addrs``), so hole
    punching still sees them.
    """

    host: IHost | None = None

    def __call__(self, candidates: list[Multiaddr]) -> list[Multiaddr]:
        return list(self.host.get_transport_addrs()) if self.host is not None else []


def _disable_auto_dial(host: IHost) -> None:
    swarm = host.get_network()
    if not isinstance(swarm, Swarm):
        raise TypeError(f"new_host built a {type(swarm).__name__}, not a Swarm; update _disable_auto_dial")
    swarm.auto_connector = _NoAutoDial(swarm)


def _build_router(config: Libp2pConfig) -> GossipSub:
    degree = config.gossip_degree
    return _NoPeerExchangeGossipSub(
        protocols=_GOSSIP_PROTOCOLS,
        degree=degree,
        degree_low=max(1, degree - 2),
        degree_high=2 * degree,
        heartbeat_interval=config.gossip_heartbeat_s,  # type: ignore[arg-type]
        spam_protection_enabled=False,
    )


@asynccontextmanager
async def open_libp2p_transport(identity: Identity, config: Libp2pConfig) -> AsyncIterator[Libp2pTransport]:
    """Start a libp2p node for ``identity``, listening on ``config.listen``.

    Yields the running ``Libp2pTransport``; on exit every task, connection and listener
    is closed.

    Raises:
        ConfigError: bad ``config`` (raised by ``Libp2pConfig`` itself), or a fixed
            listen port already in use.
        OSError: a listen address could not be bound.
    """
    listen = [_parse_listen(addr) for addr in config.listen]
    for addr in config.listen:
        check_port_free(addr)
    offences = _OffenceLog(TransportStats())
    host = _build_host(identity, config, listen, offences)
    router = _build_router(config)
    pubsub = _ContainedPubsub(host, router, offences)
    reach = Reach(host, relay_service=config.relay_service, limits=config.relay_limits,
                  reachability=config.reachability)
    transport = Libp2pTransport(host, pubsub, config, offences, reach)
    async with host.run(listen_addrs=listen):
        try:
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    await nursery.start(reach.run)
                    if transport._dht is not None:
                        await nursery.start(transport._dht.run)
                    if transport._upnp is not None:  # before the first connect: AutoNAT then finds us public
                        ports = [int(addr.value_for_protocol("tcp")) for addr in host.get_transport_addrs()]
                        await transport._upnp.start(ports)
                    transport._start(nursery)
                    if transport._lan is not None:
                        nursery.start_soon(transport._lan.run, transport._dial_found_peer)
                    try:
                        yield transport
                    finally:
                        transport._begin_close()
                        nursery.cancel_scope.cancel()
                        if transport._upnp is not None:
                            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
                                await transport._upnp.stop()
        finally:
            await _close_host(host)


async def _close_host(host: IHost) -> None:
    """Close connections and listeners explicitly, shielded from cancellation.

    ``host.run`` alone is not enough: the swarm's shutdown path awaits each connection's
    close inside an already-cancelled scope, so it stops at the first one and never
    reaches the listeners, whose sockets (owned by trio system tasks) then keep
    accepting connections after we have gone.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S) as scope:
        await host.close()
    if scope.cancelled_caught:
        logger.warning("libp2p host did not close within %s s", _CLOSE_TIMEOUT_S)
