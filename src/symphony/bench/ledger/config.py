"""Targets, production timers, units and the knobs of the ledger benchmark."""

from __future__ import annotations

from dataclasses import dataclass

from symphony.ledger import HEARTBEAT_TOPIC, LEDGER_TOPIC, SYNC_PROTOCOL, GossipConfig, LedgerConfig

TARGET_PROPAGATION_S = 1.0
TARGET_PROPAGATION_N = 20
TARGET_ROUNDS_PER_LOG2N = 2.0
TARGET_UPKEEP_MB = 0.1
PAPER_UPKEEP_MB = 0.8

PRODUCTION = LedgerConfig()
PRODUCTION_GOSSIP = GossipConfig()
MESH_DEGREE = 6  # gossipsub D of both engines (Libp2pConfig.gossip_degree, MemoryNetwork)
MB = 1_000_000
CHANNELS = {LEDGER_TOPIC: "records", HEARTBEAT_TOPIC: "heartbeats", SYNC_PROTOCOL: "sync"}
KINDS = ("bytes_sent", "bytes_received", "messages_sent", "messages_received")
Totals = dict[str, dict[str, int]]


@dataclass(frozen=True)
class LedgerBenchConfig:
    """Knobs of the benchmark.

    Attributes:
        updates: UPDATEs measured per size.
        real_heartbeat_s, real_heartbeats_per_s: ``--heartbeat`` of N node processes is
            max(real_heartbeat_s, N / real_heartbeats_per_s) (TTL = 3 of them), so each
            process receives at most that many heartbeats a second: 20 py-libp2p processes
            beating every 1-2 s saturate 2 cores, and then push gossip stalls.
        real_window_s: quiet window for the processes' upkeep counters.
        real_poll_s: poll interval of the failure-detection sweep.
        real_budget_s: wall-clock budget per process size; later phases are skipped.
        sim_latency_s: one-way link latency range, drawn per connection.
        sim_full_max: largest N run with a LedgerService on every simulated node.
        sim_warmup_heartbeats, sim_window_heartbeats: heartbeat intervals (virtual) before and
            of the upkeep window.
        sim_heartbeat_floods: single-heartbeat floods averaged in the overlay set-up.
        sim_join_timeout_s: virtual seconds a simulated joiner gets to catch up.
        sim_budget_s: wall-clock budget per simulated size and set-up.
    """

    updates: int = 10
    real_heartbeat_s: float = 1.0
    real_heartbeats_per_s: float = 4.0
    real_window_s: float = 30.0
    real_poll_s: float = 0.1
    real_budget_s: float = 300.0
    sim_latency_s: tuple[float, float] = (0.005, 0.020)
    sim_full_max: int = 100
    sim_warmup_heartbeats: float = 2.0
    sim_window_heartbeats: float = 6.0
    sim_heartbeat_floods: int = 20
    sim_join_timeout_s: float = 300.0
    sim_budget_s: float = 300.0

    def real_heartbeat(self, n: int) -> float:
        return max(self.real_heartbeat_s, n / self.real_heartbeats_per_s)

    def __post_init__(self) -> None:
        if self.updates < 1:
            raise ValueError(f"updates must be >= 1, not {self.updates!r}")
        low, high = self.sim_latency_s
        if not 0 <= low <= high:
            raise ValueError(f"sim_latency_s must be (low, high) with 0 <= low <= high, not {self.sim_latency_s!r}")
        if self.real_heartbeat_s <= 0 or self.real_window_s <= 0 or self.sim_window_heartbeats <= 0:
            raise ValueError("heartbeat and window lengths must be > 0")
