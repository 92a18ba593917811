"""The replicated capability ledger: pure store (``store``) and gossip shell (``gossip``)."""

from symphony.ledger.gossip import (
    HEARTBEAT_TOPIC,
    LEDGER_TOPIC,
    SYNC_PROTOCOL,
    GossipConfig,
    LedgerService,
)
from symphony.ledger.store import Ledger, LedgerConfig, Merge, QueryFilter, match_score, record_order

__all__ = [
    "HEARTBEAT_TOPIC",
    "LEDGER_TOPIC",
    "SYNC_PROTOCOL",
    "GossipConfig",
    "Ledger",
    "LedgerConfig",
    "LedgerService",
    "Merge",
    "QueryFilter",
    "match_score",
    "record_order",
]
