"""Transport layer: one interface (``Transport``), two engines (``libp2p``, ``memory``)."""

from symphony.transport.base import (
    MessageHandler,
    PeerEvent,
    PeerEventHandler,
    RequestHandler,
    Transport,
    TransportStats,
)

__all__ = [
    "MessageHandler",
    "PeerEvent",
    "PeerEventHandler",
    "RequestHandler",
    "Transport",
    "TransportStats",
]
