"""The one transport interface every engine implements (DESIGN §1: nothing above this
layer imports libp2p).

Semantics both engines share:

- **Identity**: a transport is opened for one ``Identity``; ``peer_id`` equals its agent
  ID. Connections are authenticated, so the ``peer`` passed to handlers is the real
  remote agent (libp2p: Noise handshake; memory: by construction).
- **Addresses** are multiaddr strings ending in ``/p2p/<peer_id>``.
- **Request/response**: ``request(peer, protocol, payload, timeout=...)`` returns the
  handler's reply bytes or raises ``PeerUnreachable`` (not connected / gone /
  partitioned / handler failed) or ``RequestTimeout``. A handler that raises makes the
  request fail on the caller's side; the serving node keeps running.
- **Publish/subscribe**: ``publish(topic, data)`` reaches every subscriber connected
  through the mesh, at most once each, never the publisher itself. Handlers get
  ``(source, data)`` where ``source`` is the original publisher.
- **Events**: ``on_peer_event`` handlers are called with ``PeerEvent("join"|"leave")``
  when a direct connection opens or closes.
- **Statistics**: payload bytes and message counts per protocol/topic, in both
  directions, so benchmarks count real serialized bytes.
- **Offences**: misbehaviour of a remote peer that the transport itself sees (bytes no
  protocol can parse, too many streams at once, a request not sent in time) never reaches
  the handlers above. The offending stream is reset, the offence is counted in
  ``TransportStats.offences`` by reason, and every ``on_offence`` handler is called with a
  ``TransportOffence`` naming the peer, so the node's reputation table can hold it against
  that peer. Rejections by the handlers themselves (``PeerError``) are not offences here:
  the layer that rejects counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
"""``async (peer_id, payload) -> reply``."""

MessageHandler = Callable[[str, bytes], Awaitable[None]]
"""``async (source_peer_id, data) -> None`` for pubsub deliveries."""


@dataclass(frozen=True)
class PeerEvent:
    kind: Literal["join", "leave"]
    peer_id: str


PeerEventHandler = Callable[[PeerEvent], None]


@dataclass(frozen=True)
class TransportOffence:
    """A remote peer broke a protocol's rules at the transport; its stream was reset.

    Attributes:
        peer_id: The authenticated peer that sent the stream.
        protocol: The protocol ID the stream was opened for, or the multistream ID
            when the peer broke protocol negotiation itself.
        reason: A stable word (``OFFENCE_REASONS``).
    """

    peer_id: str
    protocol: str
    reason: str


OffenceHandler = Callable[[TransportOffence], None]

#: how a node learns whether others can dial it (``--reachability``): ``auto`` asks (AutoNAT, in the
#: libp2p engine), ``public`` and ``private`` tell
REACHABILITY = ("auto", "public", "private")

OFFENCE_REASONS = {
    "protocol_error": "a protocol handler failed on the peer's bytes (a frame that does not parse)",
    "invalid_message": "processing a pubsub message the peer forwarded failed",
    "too_many_streams": "more concurrent inbound streams on one protocol than the per-peer cap",
    "slow_request": "a request not fully sent within the read deadline",
    "oversized_request": "a request length prefix above the size limit",
    "truncated_request": "the stream ended (closed, or reset as yamux may report it) before a whole request came; "
    "an honest peer causes it only when its connection breaks in the middle of sending",
    "malformed_request": "a request length prefix that is not a valid varint",
}
"""Every ``TransportOffence.reason`` an engine reports, with what it means."""


@dataclass
class TransportStats:
    """Application payload bytes and message counts, keyed by protocol ID or topic, and
    inbound streams turned away: ``offences`` (the peer's fault) keyed by reason,
    ``refused`` (local overload: every slot of a protocol busy) keyed by protocol."""

    bytes_sent: Counter[str] = field(default_factory=Counter)
    bytes_received: Counter[str] = field(default_factory=Counter)
    messages_sent: Counter[str] = field(default_factory=Counter)
    messages_received: Counter[str] = field(default_factory=Counter)
    offences: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def record_sent(self, channel: str, size: int) -> None:
        self.bytes_sent[channel] += size
        self.messages_sent[channel] += 1

    def record_received(self, channel: str, size: int) -> None:
        self.bytes_received[channel] += size
        self.messages_received[channel] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            "bytes_sent": dict(self.bytes_sent),
            "bytes_received": dict(self.bytes_received),
            "messages_sent": dict(self.messages_sent),
            "messages_received": dict(self.messages_received),
            "offences": dict(self.offences),
            "refused": dict(self.refused),
        }


class Transport(Protocol):
    """A node's connection to the network. Opened by an engine as an async context."""

    @property
    def peer_id(self) -> str: ...

    @property
    def stats(self) -> TransportStats: ...

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs (with ``/p2p/<id>``) others can ``connect`` to."""
        ...

    async def connect(self, addr: str) -> str:
        """Dial ``addr`` (must end in ``/p2p/<id>``); return the remote peer ID.

        Raises ``PeerUnreachable`` if the dial fails, ``ConfigError`` if ``addr`` is malformed.
        """
        ...

    def peers(self) -> list[str]:
        """Peer IDs with an open direct connection now."""
        ...

    def set_handler(self, protocol: str, handler: RequestHandler) -> None: ...

    async def request(self, peer: str, protocol: str, payload: bytes, *, timeout: float) -> bytes: ...

    async def subscribe(self, topic: str, handler: MessageHandler) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None: ...

    def on_peer_event(self, handler: PeerEventHandler) -> None: ...

    def on_offence(self, handler: OffenceHandler) -> None:
        """Call ``handler`` with every ``TransportOffence`` from now on (errors are logged)."""
        ...
