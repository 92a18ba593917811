"""``symphony bench sharding``: ledger upkeep with flooded vs gateway-sharded liveness (issue #6).

*Upkeep* (payload bytes every agent sends per hour at steady state, on every ledger channel:
records, heartbeats, shard deltas, gateway heartbeats, anti-entropy) is measured by running the
real ``AgentRuntime`` stack of N agents on the memory engine in virtual time (``MockClock``) at
production timers, first converging, then counting ``window_s`` of quiet operation. The same N
runs twice: flooded heartbeats (L = 1, today's small-network mode) and sharded (L given or
ceil(sqrt N)). A full replica per simulated node is O(N^2) work in one process, so measured
sizes stop at a few hundred; ``shard_table`` gives the sharding arithmetic (shard sizes, gateway
fan-in) at 1,000 and 10,000 from real hashed IDs.

With ``--beacon-sizes`` it also runs ``bench.shardnet`` (architecture §9): per-node ledger state
(records + shard summaries) and per-beacon messages and recall, flooded vs gateway-sharded, at
100, 1,000 and 10,000 simulated agents.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from symphony.bench import shardnet
from symphony.bench.accounting import traffic
from symphony.bench.virtual import run_virtual, virtual_now
from symphony.ledger import (
    HEARTBEAT_TOPIC,
    LEDGER_TOPIC,
    LIVENESS_PROTOCOL,
    SHARD_TOPIC,
    SYNC_PROTOCOL,
    GossipConfig,
    LedgerConfig,
    shard_of,
    shards_for,
)
from symphony.ledger.shard import gateways
from symphony.node import AgentProfile, SimulatedAgent, open_simulated_agents
from symphony.protocol import Identity
from symphony.transport import LinkModel, MemoryNetwork

CHANNELS = (LEDGER_TOPIC, HEARTBEAT_TOPIC, SHARD_TOPIC, LIVENESS_PROTOCOL, SYNC_PROTOCOL)


@dataclass(frozen=True)
class ShardingConfig:
    sizes: tuple[int, ...] = (100, 300)
    window_s: float = 1800.0
    heartbeat_s: float = 60.0
    anti_entropy_s: float = 30.0
    latency_ms: float = 10.0
    seed: int = 0
    upkeep: bool = True
    beacon_sizes: tuple[int, ...] = (100, 1000, 10_000)
    shardnet: shardnet.ShardNetConfig = field(default_factory=shardnet.ShardNetConfig)


def _identities(n: int, seed: int) -> list[Identity]:
    return [Identity(hashlib.sha256(f"sharding/{seed}/{i}".encode()).digest()) for i in range(n)]


async def _upkeep(n: int, shards: int, cfg: ShardingConfig) -> dict[str, Any]:
    """Steady-state MB/agent/h of N real ledger services with ``shards`` (1 = flooded heartbeats)."""
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.latency_ms / 1000), rng=random.Random(cfg.seed))
    agents = [SimulatedAgent(i, None, AgentProfile(name=f"a{k}")) for k, i in enumerate(_identities(n, cfg.seed))]
    ledger = LedgerConfig(heartbeat_interval_s=cfg.heartbeat_s)
    gossip = GossipConfig(anti_entropy_interval_s=cfg.anti_entropy_s, shards=shards)

    started = time.perf_counter()
    async with open_simulated_agents(net, agents, clock=virtual_now, ledger_config=ledger, gossip_config=gossip,
                                     converge_timeout_s=3600) as nodes:
        converged = trio.current_time()
        await trio.sleep(3 * cfg.heartbeat_s)  # join-time deltas and pulls settle
        stats = [node.transport.stats for node in nodes]
        before = {ch: traffic(stats, [ch]) for ch in CHANNELS}
        received_before = [sum(s.bytes_received.values()) for s in stats]
        await trio.sleep(cfg.window_s)
        per_hour = 3600 / cfg.window_s / n / 1e6
        channels = {ch: round((traffic(stats, [ch]).bytes - before[ch].bytes) * per_hour, 5) for ch in CHANNELS}
        busiest = max(sum(s.bytes_received.values()) - b for s, b in zip(stats, received_before, strict=True))
        available = min(len(node.ledger.query(now=virtual_now())) for node in nodes)
    return {
        "n": n, "shards": shards, "mb_per_agent_h": round(sum(channels.values()), 4), "channels": channels,
        "busiest_node_received_mb_h": round(busiest * 3600 / cfg.window_s / 1e6, 4),
        "min_available_seen": available, "converge_virtual_s": round(converged, 1),
        "cpu_s": round(time.perf_counter() - started, 1),
    }


def shard_table(sizes: tuple[int, ...] = (100, 1000, 10_000), seed: int = 0) -> list[dict[str, Any]]:
    """L, shard sizes and gateway fan-in for N real hashed IDs (what a gateway and a node carry)."""
    rows = []
    for n in sizes:
        ids = [i.agent_id for i in _identities(n, seed)]
        shards = shards_for(n)
        sizes_by_shard = [0] * shards
        for agent_id in ids:
            sizes_by_shard[shard_of(agent_id, shards)] += 1
        table = gateways(shards, ids)
        moved = sum(1 for s, g in gateways(shards, [a for a in ids if a != table[0]]).items() if table.get(s) != g)
        rows.append({"n": n, "shards": shards, "shard_size_mean": round(n / shards, 1),
                     "shard_size_max": max(sizes_by_shard),
                     "liveness_requests_per_gateway_interval": max(sizes_by_shard) - 1,
                     "liveness_messages_per_agent_interval": 2 if shards > 1 else None,
                     "gateway_roles_moved_when_one_fails": moved})
    return rows


def run_sharding_bench(cfg: ShardingConfig, out: Path, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    rows = []
    for n in cfg.sizes if cfg.upkeep else ():
        for shards in (1, max(2, math.isqrt(n - 1) + 1)):
            row = run_virtual(_upkeep, n, shards, cfg)
            console.print(f"[dim]N={n} L={shards}: {row['mb_per_agent_h']} MB/agent/h ({row['cpu_s']} s)[/dim]")
            rows.append(row)
    beacons = shardnet.run_shardnet(replace(cfg.shardnet, sizes=cfg.beacon_sizes)) if cfg.beacon_sizes else []
    results = {"config": asdict(cfg), "upkeep": rows, "shards": shard_table(), "shardnet": beacons}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sharding.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results) + ("\n" + shardnet.markdown(beacons) if beacons else "")
    (out / "sharding.md").write_text(text)
    console.print(text)
    return results


def markdown(results: dict[str, Any]) -> str:
    header = ("| N | L | MB/agent/h | records / heartbeats / shard deltas / gateway heartbeats / sync (MB/agent/h) "
              "| busiest node receives MB/h | fewest available seen |")
    lines = [header, "|---|---|---|---|---|---|"] if results["upkeep"] else []
    for r in results["upkeep"]:
        ch = r["channels"]
        lines.append(f"| {r['n']} | {r['shards']} | {r['mb_per_agent_h']:.4f} | "
                     + " / ".join(f"{ch[c]:.4f}" for c in CHANNELS)
                     + f" | {r['busiest_node_received_mb_h']:.3f} | {r['min_available_seen']} / {r['n']} |")
    lines += [""] if lines else []
    lines += [("| N | L | mean / max shard size | heartbeats a gateway takes per interval "
               "| gateway roles moved when one gateway fails |"), "|---|---|---|---|---|"]
    for r in results["shards"]:
        lines.append(f"| {r['n']:,} | {r['shards']} | {r['shard_size_mean']} / {r['shard_size_max']} | "
                     f"{r['liveness_requests_per_gateway_interval']} | {r['gateway_roles_moved_when_one_fails']} |")
    return "\n".join(lines) + "\n"


__all__ = ["ShardingConfig", "markdown", "run_sharding_bench", "shard_table"]
