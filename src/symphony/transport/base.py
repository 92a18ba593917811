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


@dataclass
class TransportStats:
    """Application payload bytes and message counts, keyed by protocol ID or topic."""

    bytes_sent: Counter[str] = field(default_factory=Counter)
    bytes_received: Counter[str] = field(default_factory=Counter)
    messages_sent: Counter[str] = field(default_factory=Counter)
    messages_received: Counter[str] = field(default_factory=Counter)

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
