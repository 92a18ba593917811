"""Transport layer: one interface (``Transport``), two engines.

- ``Transport`` and its value types (``base``): request/response with timeouts, pubsub, peer
  events, traffic statistics and the offences a transport counts against a peer.
- The memory engine (``MemoryNetwork``, ``MemoryTransport``, ``LinkModel``): an in-process network
  with latency, bandwidth, loss and partitions, deterministic under a fake clock. Not a mock: it
  implements the same interface, so simulations run the code nodes run.
- The libp2p engine lives in the public module ``symphony.transport.libp2p``, imported by name
  where a real network is wanted: py-libp2p is confined to it (and to ``stranger``, a raw libp2p
  peer that speaks outside our protocol, for hostile-peer tests and benches), so importing this
  package does not load py-libp2p.
"""

from symphony.transport.base import (
    OFFENCE_REASONS,
    REACHABILITY,
    MessageHandler,
    OffenceHandler,
    PeerEvent,
    PeerEventHandler,
    RequestHandler,
    Transport,
    TransportOffence,
    TransportStats,
)
from symphony.transport.memory import LinkModel, MemoryNetwork, MemoryTransport

__all__ = [
    "OFFENCE_REASONS",
    "REACHABILITY",
    "LinkModel",
    "MemoryNetwork",
    "MemoryTransport",
    "MessageHandler",
    "OffenceHandler",
    "PeerEvent",
    "PeerEventHandler",
    "RequestHandler",
    "Transport",
    "TransportOffence",
    "TransportStats",
]
