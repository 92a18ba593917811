"""The replicated capability ledger (DESIGN §3): who is in the network, what each
agent can do, and whether it is up.

General layout: pure cores, then the shells that carry their messages.

- ``store``: the pure replica, a single-writer LWW map of signed records plus liveness
  (``Ledger``); ``shard``: pure shard math and shard summaries; ``reputation``: the pure
  reputation table.
- ``gossip``: ``LedgerService``, one node's shell; it keeps push gossip and heartbeats and
  assembles the parts below, which share a ``context.GossipContext``:
  ``sync`` (anti-entropy), ``liveness`` (sharded liveness around the pure ``GatewayState``),
  ``upkeep`` (connections and garbage collection).
- ``summaries``: ``SummaryService``, the shell that issues and spreads shard summaries.
"""

from symphony.ledger.context import GossipConfig, GossipContext
from symphony.ledger.gossip import HEARTBEAT_TOPIC, LEDGER_TOPIC, LedgerService
from symphony.ledger.liveness import LIVENESS_PROTOCOL, SHARD_TOPIC, GatewayState, LivenessDelta
from symphony.ledger.reputation import Offence, ReputationConfig, ReputationTable
from symphony.ledger.shard import SummaryBook, keeps_shard, shard_of, shards_for
from symphony.ledger.store import Ledger, LedgerConfig, Merge, QueryFilter, match_score, record_order
from symphony.ledger.summaries import SummaryConfig, SummaryService
from symphony.ledger.sync import SYNC_PROTOCOL

__all__ = [
    "HEARTBEAT_TOPIC",
    "LEDGER_TOPIC",
    "LIVENESS_PROTOCOL",
    "SHARD_TOPIC",
    "SYNC_PROTOCOL",
    "GatewayState",
    "GossipConfig",
    "GossipContext",
    "Ledger",
    "LedgerConfig",
    "LedgerService",
    "LivenessDelta",
    "Merge",
    "Offence",
    "QueryFilter",
    "ReputationConfig",
    "ReputationTable",
    "SummaryBook",
    "SummaryConfig",
    "SummaryService",
    "keeps_shard",
    "match_score",
    "record_order",
    "shard_of",
    "shards_for",
]
