"""Memory engine, overlay set-up: N transports on the mesh model, no ``LedgerService`` per node."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack
from typing import Any

import trio

from symphony.bench.ledger.config import MB, MESH_DEGREE, PRODUCTION, PRODUCTION_GOSSIP, LedgerBenchConfig
from symphony.bench.ledger.cpu import _cpu_row
from symphony.bench.ledger.figures import _dist, _minus, _rounds, _row, _upkeep
from symphony.bench.ledger.memory import (
    _SIM_WIRE,
    _advance,
    _Deliveries,
    _now_ms,
    _signed_records,
    _sim_settings,
    _traffic_sum,
    _unavailable,
    _vary_latency,
    _watch_detection,
)
from symphony.bench.ledger.memory_join import _sim_join_reduced
from symphony.bench.ledger.progress import _Budget, _Progress
from symphony.bench.virtual import virtual_now
from symphony.errors import StaleMessage
from symphony.ledger import HEARTBEAT_TOPIC, LEDGER_TOPIC, Ledger
from symphony.protocol import Heartbeat, Identity, LedgerRecord
from symphony.transport import LinkModel, MemoryNetwork, MemoryTransport, MessageHandler, PeerEvent, PeerEventHandler


async def _ignore(source: str, data: bytes) -> None:
    pass


def _liveness_handler(ledger: Ledger, watched: str, verdicts: dict[bytes, Heartbeat]) -> MessageHandler:
    async def on_heartbeat(source: str, data: bytes) -> None:
        heartbeat = verdicts.get(data)
        if heartbeat is None:
            if len(verdicts) > 256:
                verdicts.clear()
            heartbeat = verdicts[data] = Heartbeat.parse(data)
        if heartbeat.agent_id == watched:
            try:
                ledger.observe_heartbeat(heartbeat, now=virtual_now())
            except StaleMessage:
                pass

    return on_heartbeat


def _contact_handler(ledger: Ledger) -> PeerEventHandler:
    """What LedgerService._on_peer_event does: a dropped direct connection makes the peer
    unavailable here at once, an opened one counts as a sign of life."""

    def on_peer(event: PeerEvent) -> None:
        if event.kind == "leave":
            ledger.suspect(event.peer_id, now=virtual_now())
        else:
            ledger.observe_contact(event.peer_id, now=virtual_now())

    return on_peer


async def _dial_all(transport: MemoryTransport, addrs: list[str]) -> None:
    for addr in addrs:
        await transport.connect(addr)


async def _sim_overlay(
    n: int,
    cfg: LedgerBenchConfig,
    seed: int,
    say: _Progress,
    sync_reference: dict[str, Any],
    costs: dict[str, float],
) -> dict[str, Any]:
    budget = _Budget(cfg.sim_budget_s)
    rng = random.Random(seed)
    row = _row("memory", n, "overlay")
    row["settings"] = _sim_settings(cfg)
    row["cpu"] = _cpu_row(n, costs)
    net = MemoryNetwork(
        link=LinkModel(latency_s=cfg.sim_latency_s[0]), rng=random.Random(rng.random()), mesh_degree=MESH_DEGREE
    )
    deliveries = _Deliveries()
    net.on_deliver = deliveries
    assigned: set[tuple[str, str]] = set()
    idents = [Identity(rng.randbytes(32)) for _ in range(n)]
    ids = [i.agent_id for i in idents]
    victim = rng.randrange(n)
    ledgers = [Ledger(PRODUCTION) for _ in range(n)]
    verdicts: dict[bytes, Heartbeat] = {}
    async with AsyncExitStack() as stack:
        transports = [await stack.enter_async_context(net.open_node(i)) for i in idents]
        for k, t in enumerate(transports):
            _vary_latency(net, t, rng, cfg.sim_latency_s, assigned)
            t.on_peer_event(_contact_handler(ledgers[k]))
            await t.subscribe(LEDGER_TOPIC, _ignore)
            await t.subscribe(HEARTBEAT_TOPIC, _liveness_handler(ledgers[k], ids[victim], verdicts))
        victim_addrs = transports[victim].listen_addrs()
        victim_record = _signed_records([idents[victim]], [ids[victim]], [victim_addrs], virtual_now())[0]
        for ledger in ledgers:
            ledger.merge(victim_record, now=virtual_now())
        # LedgerService._maintain_connections at start: every node dials target_degree random agents.
        degree = min(PRODUCTION_GOSSIP.target_degree, n - 1)
        async with trio.open_nursery() as dials:
            for k, t in enumerate(transports):
                targets = [j + (j >= k) for j in rng.sample(range(n - 1), degree)]
                dials.start_soon(_dial_all, t, [transports[j].listen_addrs()[0] for j in targets])
        await net.wait_idle()
        connections = [len(t.peers()) for t in transports]
        row["topology"] = {
            "connections_mean": sum(connections) / n,
            "connections_min": min(connections),
            "connections_max": max(connections),
        }
        say(
            f"  overlay N={n}: {n} transports, {sum(connections) // 2} connections "
            f"(mean degree {sum(connections) / n:.1f}) in {budget.elapsed():.1f} s"
        )
        row["propagation"], hops, record_bytes = await _overlay_updates(
            transports, idents, ids, cfg, rng, deliveries, net, budget
        )
        row["rounds"] = _rounds(hops, n)
        say(f"  overlay N={n}: updates p50 {row['propagation']['time_s']['p50']} s, rounds max {row['rounds']['max']}")
        floods = await _overlay_heartbeat_floods(transports, idents, ids, cfg, rng, deliveries, net, budget)
        row["upkeep"] = _overlay_upkeep(n, floods, record_bytes, sync_reference)
        say(f"  overlay N={n}: upkeep {row['upkeep']['wire_mb']:.2f} MB/agent/h (derived)")
        row["failure"] = await _overlay_failure(transports, ledgers, idents, ids, victim, rng, budget, net)
        if row["failure"] is None:
            row["skipped"].append("failure: budget spent")
    row["join"] = await _sim_join_reduced(n, cfg, seed + 1, budget, say)
    row["wall_s"] = budget.elapsed()
    return row


async def _overlay_updates(
    transports: list[MemoryTransport],
    idents: list[Identity],
    ids: list[str],
    cfg: LedgerBenchConfig,
    rng: random.Random,
    deliveries: _Deliveries,
    net: MemoryNetwork,
    budget: _Budget,
) -> tuple[dict[str, Any], list[int], list[int]]:
    n = len(transports)
    times: list[float] = []
    per_node: list[float] = []
    hops: list[int] = []
    flood_bytes: list[int] = []
    missed = 0
    for k in range(cfg.updates):
        if budget.over():
            break
        o = rng.randrange(n)
        record = LedgerRecord(
            agent_id=ids[o],
            lamport=2 + k,
            issued_at=_now_ms(),
            name=f"agent-{o}",
            tags=[f"bench-{k}"],
            addrs=transports[o].listen_addrs(),
        ).signed_by(idents[o])
        deliveries.watch(ids[o])
        before = _traffic_sum(transports)["bytes_sent"]["records"]
        start = trio.current_time()
        await transports[o].publish(LEDGER_TOPIC, record.to_bytes())
        await net.wait_idle()
        got = next(iter(deliveries.by_msg.values()), {})
        if len(got) == n - 1:
            times.append(max(t for _, t in got.values()) - start)
            per_node.extend(t - start for _, t in got.values())
            hops.append(max(h for h, _ in got.values()))
        else:
            missed += 1
        flood_bytes.append(_traffic_sum(transports)["bytes_sent"]["records"] - before)
        deliveries.watch(None)
        await trio.sleep(1.0)
    result = {
        "time_s": _dist(times),
        "per_node_s": _dist(per_node),
        "updates": cfg.updates,
        "missed": missed,
        "flood_bytes_mean": sum(flood_bytes) / len(flood_bytes) if flood_bytes else None,
        "how": "real signed record bytes published by a random node; last on_deliver minus publish",
    }
    return result, hops, flood_bytes


async def _overlay_heartbeat_floods(
    transports: list[MemoryTransport],
    idents: list[Identity],
    ids: list[str],
    cfg: LedgerBenchConfig,
    rng: random.Random,
    deliveries: _Deliveries,
    net: MemoryNetwork,
    budget: _Budget,
) -> list[dict[str, int]]:
    samples = []
    n = len(transports)
    count = min(n, cfg.sim_heartbeat_floods, max(5, 100_000 // n))  # floods of a big mesh hardly differ
    for o in rng.sample(range(n), count):
        if budget.over():
            break
        data = Heartbeat(agent_id=ids[o], lamport=1, ts=_now_ms()).signed_by(idents[o]).to_bytes()
        deliveries.watch(ids[o])
        before = _traffic_sum(transports)
        await transports[o].publish(HEARTBEAT_TOPIC, data)
        await net.wait_idle()
        delta = _minus(_traffic_sum(transports), before)
        reached = len(next(iter(deliveries.by_msg.values()), {}))
        samples.append(
            {
                "heartbeat_bytes": len(data),
                "bytes_sent": delta["bytes_sent"]["heartbeats"],
                "messages_sent": delta["messages_sent"]["heartbeats"],
                "bytes_received": delta["bytes_received"]["heartbeats"],
                "reached": reached,
            }
        )
        deliveries.watch(None)
        await trio.sleep(0.5)
    return samples


def _overlay_upkeep(
    n: int, floods: list[dict[str, int]], record_floods: list[int], sync_reference: dict[str, Any]
) -> dict[str, Any]:
    per_interval = 3600 / PRODUCTION.heartbeat_interval_s
    sent = sum(f["bytes_sent"] for f in floods) / max(len(floods), 1)
    received = sum(f["bytes_received"] for f in floods) / max(len(floods), 1)
    sync = sync_reference["per_agent_hour_mb"]["sync"]
    per_hour = {
        "records": {"sent": 0.0, "received": 0.0},
        "heartbeats": {"sent": sent * per_interval, "received": received * per_interval},
        "sync": {"sent": sync["sent"] * MB, "received": sync["received"] * MB},
    }
    upkeep = _upkeep(
        kind="derived",
        heartbeat_s=PRODUCTION.heartbeat_interval_s,
        anti_entropy_s=PRODUCTION_GOSSIP.anti_entropy_interval_s,
        per_agent_hour=per_hour,
        wire={c: d["sent"] for c, d in per_hour.items()},
        wire_definition=_SIM_WIRE,
        how=(
            f"heartbeats: mean bytes of {len(floods)} measured single-heartbeat floods on the {n}-node overlay x "
            f"{per_interval:.0f} heartbeats per agent per hour (every agent floods one per interval); sync: "
            f"{sync_reference['source']}; records: 0 in steady state (an UPDATE floods "
            f"{(sum(record_floods) / max(len(record_floods), 1)) / MB:.3f} MB network-wide)"
        ),
    )
    return {**upkeep, "heartbeat_floods": floods, "production": upkeep}


async def _overlay_failure(
    transports: list[MemoryTransport],
    ledgers: list[Ledger],
    idents: list[Identity],
    ids: list[str],
    victim: int,
    rng: random.Random,
    budget: _Budget,
    net: MemoryNetwork,
) -> dict[str, Any] | None:
    interval = PRODUCTION.heartbeat_interval_s

    async def beat() -> None:  # LedgerService._every(heartbeat_interval, _send_heartbeat)
        while True:
            heartbeat = Heartbeat(agent_id=ids[victim], lamport=1, ts=_now_ms()).signed_by(idents[victim])
            await transports[victim].publish(HEARTBEAT_TOPIC, heartbeat.to_bytes())
            await trio.sleep(interval * rng.uniform(0.9, 1.1))

    survivors = [ledger for k, ledger in enumerate(ledgers) if k != victim]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        if not await _advance(2 * interval + rng.uniform(0, interval), budget):
            nursery.cancel_scope.cancel()
            return None
        unavailable_before = _unavailable(survivors, ids[victim])
        killed = trio.current_time()
        net.kill(ids[victim])
        nursery.cancel_scope.cancel()
    return await _watch_detection(
        survivors,
        ids[victim],
        killed,
        budget,
        unavailable_before=unavailable_before,
        how=(
            "the victim heartbeats on the overlay, then kill() at a random phase; each node feeds its own Ledger "
            "the heartbeats that reach it and its direct connection events, as LedgerService does; first "
            "instant each reports the victim unavailable"
        ),
    )
