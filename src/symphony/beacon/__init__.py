"""BEACONSELECT (paper Alg. 1): the pure ranking core and the selection strategies.

``ranking`` holds no I/O: replies and ``now`` go in, a ``Selection`` comes out. The trio shell
that fans out beacons and waits for the deadline lives elsewhere and only calls into this.
"""

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

__all__ = [
    "CONTEXT_FEATURES",
    "BeaconRound",
    "Candidate",
    "Context",
    "CosineStrategy",
    "LinUCBConfig",
    "LinUCBStrategy",
    "RandomStrategy",
    "Selection",
    "SelectionStrategy",
    "linucb_reward",
    "rank_key",
    "select",
]
