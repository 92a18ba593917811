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
- **Request/response**: py-libp2p's ``RequestResponse`` with ``BytesCodec``; one
  length-prefixed request and one reply per stream. Our wrapper counts bytes, turns the
  remote peer's ID into a string and logs handler failures; a failing handler resets the
  stream, which the caller sees as ``PeerUnreachable``.
- **Publish/subscribe**: ``Pubsub`` over ``GossipSub`` with strict signing (the source
  handed to a handler is the verified original publisher). Each subscribed topic gets a
  pump task in our nursery that drains libp2p's subscription channel into the handler,
  one message at a time and in order.
- **Peer events**: a network notifee (py-libp2p's ``INotifee``). The swarm removes a
  closed connection from its table *before* it notifies, so "leave" is emitted when the
  last connection to a peer closes and "join" when the first one opens.

Shutdown runs in reverse: our pumps are cancelled, then gossipsub and pubsub stop, then
``_close_host`` closes every connection and listener (explicitly: see its docstring for
the py-libp2p bug that makes this necessary). No peer events are delivered once closing
has begun.

What is switched off, and why
-----------------------------
The network must contact nothing but the addresses passed to ``connect`` (DESIGN: no
background discovery, no third-party servers). py-libp2p does more by default:

- mDNS, UPnP and bootstrap: not enabled (``new_host`` defaults; no bootstrap list).
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
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee, ISubscriptionAPI
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.request_response import (
    BytesCodec,
    ProtocolNotSupportedError,
    RequestContext,
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
from symphony.transport.base import (
    MessageHandler,
    PeerEvent,
    PeerEventHandler,
    RequestHandler,
    TransportStats,
)

__all__ = ["Libp2pConfig", "Libp2pTransport", "open_libp2p_transport"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
_CODEC = BytesCodec()
_ServeFn = Callable[[bytes, RequestContext], Awaitable[bytes]]
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
        max_concurrent_inbound: Inbound requests served at once per protocol; more are
            reset.
        handler_timeout_s: Server-side limit to read a request, run the handler and
            write the reply. It must outlast the longest legitimate request: a planner
            runs its whole chain inside one Task request (minutes on CPU models), and
            Task handlers already stop at the task's own deadline (at most an hour).
        dial_timeout_s: Limit for ``connect``.
    """

    listen: list[str]
    gossip_degree: int = 6
    gossip_heartbeat_s: float = 1.0
    max_request_bytes: int = _MIB
    max_reply_bytes: int = 4 * _MIB
    max_publish_bytes: int = 512 * 1024
    max_concurrent_inbound: int = 64
    handler_timeout_s: float = 3600.0
    dial_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _require(bool(self.listen), "listen must name at least one multiaddr")
        for addr in self.listen:
            _parse_listen(addr)
        _require(self.gossip_degree >= 1, f"gossip_degree must be >= 1, not {self.gossip_degree!r}")
        for name in ("gossip_heartbeat_s", "handler_timeout_s", "dial_timeout_s"):
            value = getattr(self, name)
            _require(value > 0, f"{name} must be > 0, not {value!r}")
        for name in ("max_request_bytes", "max_reply_bytes", "max_concurrent_inbound"):
            value = getattr(self, name)
            _require(value >= 1, f"{name} must be >= 1, not {value!r}")
        _require(
            1 <= self.max_publish_bytes <= _MAX_PUBLISH_CEILING,
            f"max_publish_bytes must be in 1..{_MAX_PUBLISH_CEILING}, not {self.max_publish_bytes!r}",
        )


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

    def __init__(self, host: IHost, pubsub: Pubsub, config: Libp2pConfig) -> None:
        self._host = host
        self._pubsub = pubsub
        self._config = config
        self._rr = RequestResponse(host)
        self._peer_id = host.get_id().to_base58()
        self._stats = TransportStats()
        self._peer_handlers: list[PeerEventHandler] = []
        self._joined: set[ID] = set()
        self._topic_handlers: dict[str, MessageHandler] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._server_config = RequestResponseConfig(
            timeout=config.handler_timeout_s,
            max_request_size=config.max_request_bytes,
            max_response_size=config.max_reply_bytes,
            max_concurrent_inbound=config.max_concurrent_inbound,
        )
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
        received."""
        return self._stats

    def listen_addrs(self) -> list[str]:
        """The bound listen addresses (real ports) each ending in ``/p2p/<peer_id>``."""
        suffix = f"/p2p/{self._peer_id}"
        return [f"{addr}{suffix}" for addr in self._host.get_transport_addrs()]

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
                await self._host.connect(info)
        except trio.TooSlowError as exc:
            raise PeerUnreachable(f"dial to {addr} timed out after {self._config.dial_timeout_s} s") from exc
        except (BaseLibp2pError, OSError, trio.BrokenResourceError) as exc:
            raise PeerUnreachable(f"dial to {addr} failed: {exc}") from exc
        return info.peer_id.to_base58()

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
        self._emit(PeerEvent("leave", peer.to_base58()))

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
        self._rr.set_handler(TProtocol(protocol), self._serve(protocol, handler), _CODEC, self._server_config)

    def _serve(self, protocol: str, handler: RequestHandler) -> _ServeFn:
        async def serve(payload: bytes, ctx: RequestContext) -> bytes:
            peer = ctx.peer_id.to_base58()
            self._stats.record_received(protocol, len(payload))
            reply = await _call_handler(protocol, handler, peer, payload)
            self._stats.record_sent(protocol, len(reply))
            return reply

        return serve

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
        client_config = RequestResponseConfig(
            timeout=timeout,
            max_request_size=self._config.max_request_bytes,
            max_response_size=self._config.max_reply_bytes,
        )
        self._stats.record_sent(protocol, len(payload))
        try:
            reply = await self._rr.send_request(target, [TProtocol(protocol)], payload, _CODEC, client_config)
        except RequestTimeoutError as exc:
            raise RequestTimeout(f"no reply from {peer} on {protocol} within {timeout} s") from exc
        except ProtocolNotSupportedError as exc:
            raise PeerUnreachable(f"{peer} does not serve {protocol}") from exc
        except RequestResponseError as exc:
            raise PeerUnreachable(f"request to {peer} on {protocol} failed: {exc}") from exc
        self._stats.record_received(protocol, len(reply))
        return reply

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


async def _call_handler(protocol: str, handler: RequestHandler, peer: str, payload: bytes) -> bytes:
    """Run a request handler; log any failure and raise it as a libp2p error, which
    makes ``RequestResponse`` reset the stream (the caller sees ``PeerUnreachable``)."""
    try:
        reply = await handler(peer, payload)
    except PeerError as exc:
        logger.warning("rejected %s request from %s: %s (%s)", protocol, peer, exc, exc.reason)
        raise RequestResponseError(f"request rejected: {exc.reason}") from exc
    except Exception as exc:
        logger.exception("%s handler failed on a request from %s", protocol, peer)
        raise RequestResponseError("handler failed") from exc
    if not isinstance(reply, bytes):
        logger.error("%s handler returned %s, not bytes", protocol, type(reply).__name__)
        raise RequestResponseError("handler returned no bytes")
    return reply


def _check_protocol(protocol: str) -> None:
    if not protocol.startswith("/") or any(c.isspace() for c in protocol):
        raise ConfigError(f"protocol must look like /name/version without spaces, not {protocol!r}")


def _build_host(identity: Identity, config: Libp2pConfig, listen: list[Multiaddr]) -> IHost:
    key_pair = create_new_key_pair(identity.seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: noise},
        listen_addrs=listen,
        disable_identify_address_discovery=True,
    )
    _disable_auto_dial(host)
    return host


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
    host = _build_host(identity, config, listen)
    router = _build_router(config)
    pubsub = Pubsub(host, router, strict_signing=True)
    transport = Libp2pTransport(host, pubsub, config)
    async with host.run(listen_addrs=listen):
        try:
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    transport._start(nursery)
                    try:
                        yield transport
                    finally:
                        transport._begin_close()
                        nursery.cancel_scope.cancel()
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
