"""Transport layer: one interface (``Transport``), two engines (``libp2p``, ``memory``)."""

from symphony.transport.base import (
    OFFENCE_REASONS,
    MessageHandler,
    OffenceHandler,
    PeerEvent,
    PeerEventHandler,
    RequestHandler,
    Transport,
    TransportOffence,
    TransportStats,
)

__all__ = [
    "OFFENCE_REASONS",
    "MessageHandler",
    "OffenceHandler",
    "PeerEvent",
    "PeerEventHandler",
    "RequestHandler",
    "Transport",
    "TransportOffence",
    "TransportStats",
]
