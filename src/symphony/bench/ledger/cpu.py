"""CPU a full network would need per node, derived from micro-benchmarks on this machine."""

from __future__ import annotations

import time
from typing import Any

from symphony.bench.ledger.config import PRODUCTION
from symphony.ledger import record_order
from symphony.protocol import Heartbeat, Identity, LedgerRecord


def _cpu_costs() -> dict[str, float]:
    """Microseconds of this machine's CPU per heartbeat check, record check and order key."""
    ident = Identity(bytes(range(32)))
    heartbeat = Heartbeat(agent_id=ident.agent_id, lamport=1, ts=int(time.time() * 1000)).signed_by(ident).to_bytes()
    record = LedgerRecord(
        agent_id=ident.agent_id,
        lamport=1,
        issued_at=int(time.time() * 1000),
        name="agent-0",
        addrs=[f"/memory/0/p2p/{ident.agent_id}"],
    ).signed_by(ident)
    wire = record.model_dump(mode="json")
    rounds = 300
    t0 = time.perf_counter()
    for _ in range(rounds):
        Heartbeat.parse(heartbeat)
    t1 = time.perf_counter()
    for _ in range(rounds):
        LedgerRecord.from_wire(wire)
    t2 = time.perf_counter()
    for _ in range(rounds):
        record_order(record)
    t3 = time.perf_counter()
    return {
        "heartbeat_check_us": (t1 - t0) / rounds * 1e6,
        "record_check_us": (t2 - t1) / rounds * 1e6,
        "record_order_us": (t3 - t2) / rounds * 1e6,
    }


def _cpu_row(n: int, costs: dict[str, float]) -> dict[str, Any]:
    """Per-node CPU a full network of N would need at production timers (derived)."""
    return {
        "heartbeat_core_share": n / PRODUCTION.heartbeat_interval_s * costs["heartbeat_check_us"] / 1e6,
        "digest_hash_ms": n * costs["record_order_us"] / 1000,
        "join_verify_s": n * costs["record_check_us"] / 1e6,
        "how": (
            "derived from micro-benchmarks on this machine: heartbeat_core_share = N heartbeats per "
            f"{PRODUCTION.heartbeat_interval_s:.0f} s x {costs['heartbeat_check_us']:.0f} us each; digest_hash_ms "
            f"= N x {costs['record_order_us']:.0f} us (every anti-entropy step, both ends); join_verify_s = "
            f"N x {costs['record_check_us']:.0f} us"
        ),
    }
