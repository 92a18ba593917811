"""Memory engine, full set-up: the real ``LedgerService`` on every simulated node."""

from __future__ import annotations

import random
import time
from contextlib import AsyncExitStack
from typing import Any

import trio
import trio.lowlevel

from symphony.bench.ledger.config import CHANNELS, MESH_DEGREE, PRODUCTION, PRODUCTION_GOSSIP, LedgerBenchConfig, Totals
from symphony.bench.ledger.figures import _dist, _minus, _rounds, _row, _upkeep
from symphony.bench.ledger.memory import (
    _SIM_WIRE,
    _advance,
    _CatchUp,
    _Deliveries,
    _MergeLog,
    _push_rounds,
    _signed_records,
    _sim_settings,
    _SimNode,
    _start_service,
    _traffic_sum,
    _unavailable,
    _vary_latency,
    _wait,
    _watch_detection,
)
from symphony.bench.ledger.progress import _Budget, _Progress
from symphony.bench.virtual import virtual_now
from symphony.ledger import SYNC_PROTOCOL, Ledger
from symphony.protocol import Identity, LedgerRecord
from symphony.transport import LinkModel, MemoryNetwork


async def _sim_full(
    n: int, cfg: LedgerBenchConfig, seed: int, say: _Progress, *, upkeep_only: bool = False
) -> dict[str, Any]:
    budget = _Budget(cfg.sim_budget_s)
    rng = random.Random(seed)
    row = _row("memory", n, "full")
    row["settings"] = _sim_settings(cfg)
    net = MemoryNetwork(
        link=LinkModel(latency_s=cfg.sim_latency_s[0]), rng=random.Random(rng.random()), mesh_degree=MESH_DEGREE
    )
    deliveries = _Deliveries()
    net.on_deliver = deliveries
    merges = _MergeLog()
    assigned: set[tuple[str, str]] = set()
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        try:
            idents = [Identity(rng.randbytes(32)) for _ in range(n)]
            ids = [i.agent_id for i in idents]
            transports = [await stack.enter_async_context(net.open_node(i)) for i in idents]
            for t in transports:
                _vary_latency(net, t, rng, cfg.sim_latency_s, assigned)
            now = virtual_now()
            records = _signed_records(idents, ids, [t.listen_addrs() for t in transports], now)
            nodes = []
            for k in range(n):
                ledger = Ledger(PRODUCTION)
                for record in records:
                    ledger.merge(record, now=now)
                nodes.append(
                    _start_service(
                        nursery,
                        transport=transports[k],
                        identity=idents[k],
                        agent_id=ids[k],
                        ledger=ledger,
                        profile=records[k],
                        rng=rng,
                        on_event=merges.sink(ids[k]),
                    )
                )
            warmup = cfg.sim_warmup_heartbeats * PRODUCTION.heartbeat_interval_s
            window = cfg.sim_window_heartbeats * PRODUCTION.heartbeat_interval_s
            say(
                f"  full N={n}: {n} LedgerServices running on pre-seeded ledgers; warm-up {warmup:.0f} s "
                f"+ upkeep window {window:.0f} s (virtual)"
            )
            if not await _advance(warmup, budget):
                row["skipped"].append("everything: budget spent during warm-up")
                return row
            virtual0, wall0 = trio.current_time(), time.monotonic()
            before = _traffic_sum(transports)
            complete = await _advance(window, budget)
            window = trio.current_time() - virtual0
            row["wall_per_virtual_s"] = (time.monotonic() - wall0) / max(window, 1e-9)
            row["upkeep"] = _sim_upkeep_measured(_minus(_traffic_sum(transports), before), n, window)
            if not complete:
                row["notes"].append(f"upkeep window cut to {window:.1f} virtual s by the wall-clock budget")
            say(
                f"  full N={n}: upkeep {row['upkeep']['wire_mb']:.2f} MB/agent/h; "
                f"{row['wall_per_virtual_s']:.2f} s wall per virtual s"
            )
            if upkeep_only:
                return row
            row["propagation"], hops = await _sim_full_updates(nodes, cfg, rng, merges, deliveries, budget)
            row["rounds"] = _rounds(hops, n)
            say(f"  full N={n}: updates p50 {row['propagation']['time_s']['p50']} s, rounds max {row['rounds']['max']}")
            joiner = await _sim_full_join(nursery, stack, net, nodes, cfg, rng, budget, assigned, row)
            await _sim_full_failure(net, nodes, joiner, rng, budget, row)
            return row
        finally:
            nursery.cancel_scope.cancel()


def _sim_upkeep_measured(delta: Totals, n: int, window: float) -> dict[str, Any]:
    per_hour = {
        c: {
            "sent": delta["bytes_sent"][c] * 3600 / window / n,
            "received": delta["bytes_received"][c] * 3600 / window / n,
        }
        for c in CHANNELS.values()
    }
    measured = _upkeep(
        kind="measured",
        heartbeat_s=PRODUCTION.heartbeat_interval_s,
        anti_entropy_s=PRODUCTION_GOSSIP.anti_entropy_interval_s,
        per_agent_hour=per_hour,
        wire={c: d["sent"] for c, d in per_hour.items()},
        wire_definition=_SIM_WIRE,
        how=f"sum of all {n} nodes' transport stats over {window:.0f} virtual s, / N, x 3600 / window",
    )
    return {**measured, "window_s": window, "window_totals": delta, "production": measured}


async def _sim_full_updates(
    nodes: list[_SimNode],
    cfg: LedgerBenchConfig,
    rng: random.Random,
    merges: _MergeLog,
    deliveries: _Deliveries,
    budget: _Budget,
) -> tuple[dict[str, Any], list[int]]:
    times: list[float] = []
    per_node: list[float] = []
    hops: list[int] = []
    push_share: list[float] = []
    missed = 0
    for k in range(cfg.updates):
        if budget.over():
            break
        origin = rng.choice(nodes)
        deliveries.watch(origin.agent_id)
        start = trio.current_time()
        record = await origin.service.update(tags=[f"bench-{k}"])
        key = (origin.agent_id, record.lamport)
        if await _wait(merges.expect(key, len(nodes) - 1), timeout=60, budget=budget):
            got = merges.merged[key]
            times.append(max(got.values()) - start)
            per_node.extend(t - start for t in got.values())
            max_hops, pushed = _push_rounds(deliveries.by_msg, got)
            if max_hops is not None and pushed == len(got):
                hops.append(max_hops)
            push_share.append(pushed / len(got))
        else:
            missed += 1
        deliveries.watch(None)
        await _advance(1.0, budget)
    result = {
        "time_s": _dist(times),
        "per_node_s": _dist(per_node),
        "updates": cfg.updates,
        "missed": missed,
        "push_share": sum(push_share) / len(push_share) if push_share else None,
        "how": "LedgerService.update on a random node; last record_merged (virtual time) minus issue",
    }
    return result, hops


async def _sim_full_join(
    nursery: trio.Nursery,
    stack: AsyncExitStack,
    net: MemoryNetwork,
    nodes: list[_SimNode],
    cfg: LedgerBenchConfig,
    rng: random.Random,
    budget: _Budget,
    assigned: set[tuple[str, str]],
    row: dict[str, Any],
) -> _SimNode | None:
    if budget.over():
        row["skipped"].append("join: budget spent")
        return None
    identity = Identity(rng.randbytes(32))
    agent_id = identity.agent_id
    transport = await stack.enter_async_context(net.open_node(identity))
    _vary_latency(net, transport, rng, cfg.sim_latency_s, assigned)
    expected = {}
    for node in nodes:
        own = node.service.own_record
        assert own is not None
        expected[node.agent_id] = own.lamport
    catch = _CatchUp(expected)
    via = rng.choice(nodes)
    start = trio.current_time()
    joiner = _start_service(
        nursery,
        transport=transport,
        identity=identity,
        agent_id=agent_id,
        ledger=Ledger(PRODUCTION),
        profile=LedgerRecord(agent_id=agent_id, lamport=0, issued_at=0, name="joiner"),
        rng=rng,
        on_event=catch.on_event,
        bootstrap=[via.transport.listen_addrs()[0]],
    )
    await trio.lowlevel.checkpoint()
    await joiner.service.register()
    ok = await _wait(catch.done, timeout=cfg.sim_join_timeout_s, budget=budget)
    stats = transport.stats
    row["join"] = {
        "catch_up_s": None if catch.done_at is None else catch.done_at - start,
        "complete": ok,
        "records": len(expected),
        "missing": len(catch.missing),
        "sync_bytes_received": stats.bytes_received[SYNC_PROTOCOL],
        "sync_requests": stats.messages_sent[SYNC_PROTOCOL],
        "how": "a fresh LedgerService bootstraps via a random node; virtual time until it merged every current record",
    }
    return joiner


async def _sim_full_failure(
    net: MemoryNetwork,
    nodes: list[_SimNode],
    joiner: _SimNode | None,
    rng: random.Random,
    budget: _Budget,
    row: dict[str, Any],
) -> None:
    victim = rng.choice(nodes)
    survivors = [n for n in nodes if n is not victim] + ([joiner] if joiner is not None else [])
    # Let the join settle (a freshly merged recent record also counts as a sign of life),
    # then crash at a random phase of the victim's heartbeat.
    await _advance(PRODUCTION.heartbeat_interval_s * rng.uniform(1.0, 2.0), budget)
    ledgers = [s.service.ledger for s in survivors]
    unavailable_before = _unavailable(ledgers, victim.agent_id)
    killed = trio.current_time()
    net.kill(victim.agent_id)
    victim.scope.cancel()
    row["failure"] = await _watch_detection(
        ledgers,
        victim.agent_id,
        killed,
        budget,
        unavailable_before=unavailable_before,
        how="kill(): no goodbye; first instant each survivor's own LedgerService/Ledger reports it unavailable",
    )
    if row["failure"] is None:
        row["skipped"].append("failure: budget spent")
