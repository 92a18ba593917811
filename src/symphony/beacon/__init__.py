"""BEACONSELECT (paper Alg. 1): choosing the agents for a chain's sub-tasks.

General layout: a pure core and the shells that carry its messages; no module here imports one
above it.

- ``ranking``: the pure core (no I/O): replies and ``now`` go in, a ``Selection`` comes out;
  the selection strategies (cosine, random, LinUCB).
- ``responder``: the answering side; an agent scores a beacon with its private vector
  (``BeaconResponder``, ``BEACON_PROTOCOL``).
- ``service``: the asking side; pre-filter by ledger QUERY, fan out one beacon, collect signed
  replies until the deadline, rank (``BeaconSelector``).
- ``gateway``: the same across shards (architecture §9): an initiator asks other shards' gateways
  (``GatewayFanout``), a gateway relays to its members (``Gateway``, ``RelayResponder``).
"""

from symphony.beacon.gateway import (
    GATEWAY_PROTOCOL,
    RELAY_PROTOCOL,
    FanoutConfig,
    Gateway,
    GatewayFanout,
    RelayResponder,
)
from symphony.beacon.ranking import (
    CONTEXT_FEATURES,
    BeaconRound,
    Candidate,
    Context,
    CosineStrategy,
    LinUCBConfig,
    LinUCBStrategy,
    RandomStrategy,
    Selection,
    SelectionStrategy,
    linucb_reward,
    rank_key,
    select,
)
from symphony.beacon.responder import BEACON_PROTOCOL, BeaconResponder
from symphony.beacon.service import BeaconConfig, BeaconOutcome, BeaconSelector
from symphony.beacon.warm import WARM_PEERS, WarmConnections

__all__ = [
    "BEACON_PROTOCOL",
    "CONTEXT_FEATURES",
    "GATEWAY_PROTOCOL",
    "RELAY_PROTOCOL",
    "WARM_PEERS",
    "BeaconConfig",
    "BeaconOutcome",
    "BeaconResponder",
    "BeaconRound",
    "BeaconSelector",
    "Candidate",
    "Context",
    "CosineStrategy",
    "FanoutConfig",
    "Gateway",
    "GatewayFanout",
    "LinUCBConfig",
    "LinUCBStrategy",
    "RandomStrategy",
    "RelayResponder",
    "Selection",
    "SelectionStrategy",
    "WarmConnections",
    "linucb_reward",
    "rank_key",
    "select",
]
