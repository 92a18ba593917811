"""Real ``symphony node`` processes on 127.0.0.1: updates, join, failure detection, upkeep counters."""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx

from symphony.bench.ledger.config import (
    CHANNELS,
    KINDS,
    MESH_DEGREE,
    PRODUCTION,
    PRODUCTION_GOSSIP,
    LedgerBenchConfig,
    Totals,
)
from symphony.bench.ledger.figures import _add_snapshot, _dist, _empty_totals, _minus, _row, _upkeep
from symphony.bench.ledger.progress import _Budget, _Progress
from symphony.errors import SymphonyError
from symphony.node import NodeConfig
from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for

T = TypeVar("T")


_REAL_WIRE = (
    "lower bound of payload put on the wire: pubsub payload delivered (records, heartbeats) "
    "+ sync requests and replies sent; libp2p counts a publish once and no relays, and "
    "gossipsub duplicates, control messages, framing, Noise and TCP are not counted"
)


def _cli_value(node: NodeProcess, option: str) -> float:
    """The value the swarm passed for ``option`` on the node's command line (last one wins)."""
    assert node.proc is not None
    args = [str(a) for a in cast("list[str]", node.proc.args)]
    at = len(args) - 1 - args[::-1].index(option)
    return float(args[at + 1])


def _holds_all(node: NodeProcess, agents: set[str]) -> bool:
    return agents <= set(node.ledger())


def _sees_all(node: NodeProcess, agents: set[str]) -> bool:
    ledger = node.ledger()
    return agents <= set(ledger) and all(ledger[a]["available"] for a in agents)


def _traffic(node: NodeProcess) -> tuple[float, Totals]:
    t0 = time.time()
    snapshot = node.get("/v1/node")["traffic"]
    t1 = time.time()
    totals = _empty_totals()
    _add_snapshot(totals, snapshot)
    return (t0 + t1) / 2, totals


def _real_upkeep(
    nodes: list[NodeProcess], *, window: float, heartbeat_s: float, anti_entropy_s: float
) -> dict[str, Any]:
    before = [_traffic(node) for node in nodes]
    time.sleep(window)
    after = [_traffic(node) for node in nodes]
    rate: dict[str, defaultdict[str, float]] = {kind: defaultdict(float) for kind in KINDS}
    window_totals = _empty_totals()
    for (t0, b), (t1, a) in zip(before, after, strict=True):
        delta = _minus(a, b)
        for kind in KINDS:
            for channel, value in delta[kind].items():
                rate[kind][channel] += value / (t1 - t0)
                window_totals[kind][channel] = window_totals[kind].get(channel, 0) + value
    n = len(nodes)
    per_hour = {
        c: {"sent": rate["bytes_sent"][c] * 3600 / n, "received": rate["bytes_received"][c] * 3600 / n}
        for c in CHANNELS.values()
    }
    wire = {
        "records": per_hour["records"]["received"],
        "heartbeats": per_hour["heartbeats"]["received"],
        "sync": per_hour["sync"]["sent"],
    }
    measured = _upkeep(
        kind="measured",
        heartbeat_s=heartbeat_s,
        anti_entropy_s=anti_entropy_s,
        per_agent_hour=per_hour,
        wire=wire,
        wire_definition=_REAL_WIRE,
        how=f"transport counters of all {n} processes over a {window:.0f} s quiet window",
    )
    scale = {
        "records": 1.0,
        "heartbeats": heartbeat_s / PRODUCTION.heartbeat_interval_s,
        "sync": anti_entropy_s / PRODUCTION_GOSSIP.anti_entropy_interval_s,
    }
    production = _upkeep(
        kind="derived",
        heartbeat_s=PRODUCTION.heartbeat_interval_s,
        anti_entropy_s=PRODUCTION_GOSSIP.anti_entropy_interval_s,
        per_agent_hour={c: {k: v * scale[c] for k, v in d.items()} for c, d in per_hour.items()},
        wire={c: v * scale[c] for c, v in wire.items()},
        wire_definition=_REAL_WIRE,
        how=(
            f"measured values scaled by interval ratios: heartbeats x {scale['heartbeats']:.2f}, "
            f"sync x {scale['sync']:.2f} (steady-state syncs are timer-driven), records x 1"
        ),
    )
    return {**measured, "window_s": window, "window_totals": window_totals, "production": production}


def _real_updates(nodes: list[NodeProcess], *, count: int, rng: random.Random) -> dict[str, Any]:
    tails = {node.name: node.tail(skip_existing=True) for node in nodes}
    merged: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    issued: dict[tuple[str, int], float] = {}

    def pump() -> None:
        for name, tail in tails.items():
            for event in tail.read():
                if event["event"] == "record_merged" and "lamport" in event:
                    merged[(event["agent"], int(event["lamport"]))].setdefault(name, event["ts"])
                elif event["event"] == "record_issued":
                    issued[(name, int(event["lamport"]))] = event["ts"]

    times: list[float] = []
    per_node: list[float] = []
    missed = 0
    reached: list[int] = []
    for k in range(count):
        origin = rng.choice(nodes)
        response = origin.post("/v1/node/record", {"tags": [f"bench-{k}"]})
        response.raise_for_status()
        lamport = int(response.json()["lamport"])
        key, others = (origin.agent_id, lamport), {node.name for node in nodes} - {origin.name}
        deadline = time.monotonic() + 20
        while True:
            pump()
            if others <= merged[key].keys() and (origin.name, lamport) in issued:
                start = issued[(origin.name, lamport)]
                delays = [merged[key][name] - start for name in others]
                times.append(max(delays))
                per_node.extend(delays)
                break
            if time.monotonic() > deadline:
                missed += 1
                break
            time.sleep(0.02)
        reached.append(len(merged[key].keys() & others))
        time.sleep(0.5)
    return {
        "time_s": _dist(times),
        "per_node_s": _dist(per_node),
        "updates": count,
        "missed": missed,
        "reached": reached,
        "of": len(nodes) - 1,
        "timeout_s": 20,
        "how": "max over nodes of record_merged ts minus the origin's record_issued ts (events.jsonl)",
    }


def _real_join(swarm: Swarm, nodes: list[NodeProcess], *, rng: random.Random) -> tuple[dict[str, Any], NodeProcess]:
    expected = {n.agent_id: int(n.get("/v1/node")["lamport"]) for n in nodes}
    via = rng.choice(nodes)
    spawned = time.time()
    joiner = swarm.spawn("joiner", bootstrap=via).wait_ready()

    def holds_all() -> bool:
        ledger = joiner.ledger()
        return all(a in ledger and ledger[a]["lamport"] >= lamport for a, lamport in expected.items())

    wait_for(holds_all, timeout=90, what="the joiner to hold every record")
    seen = time.time()
    events = joiner.events()
    starting = next(e["ts"] for e in events if e["event"] == "starting")
    done: dict[str, float] = {}
    for e in events:
        if e["event"] == "record_merged" and e["agent"] in expected and e.get("lamport", -1) >= expected[e["agent"]]:
            done.setdefault(e["agent"], e["ts"])
    finished = max(done.values()) if len(done) == len(expected) else seen
    during = [e for e in events if starting <= e["ts"] <= finished]
    return {
        "catch_up_s": finished - starting,
        "from_spawn_s": finished - spawned,
        "process_start_s": starting - spawned,
        "records": len(expected),
        "sync_failed": [e.get("error") for e in during if e["event"] == "sync_failed"],
        "rejected_during": sum(e["event"] == "rejected" for e in during),
        "stale_heartbeats_after": sum(e["event"] == "rejected" and e.get("reason") == "stale" for e in events),
        "how": "its last needed record_merged ts minus its 'starting' event (from_spawn_s: from Popen)",
    }, joiner


def _real_failure(
    nodes: list[NodeProcess], victim: NodeProcess, *, ttl: float, heartbeat_s: float, poll: float
) -> dict[str, Any]:
    survivors = {n.name: n for n in nodes if n is not victim}
    killed = time.time()
    victim.kill()
    polled: dict[str, float] = {}
    deadline = time.monotonic() + ttl + 2 * heartbeat_s + 30
    while len(polled) < len(survivors) and time.monotonic() < deadline:
        sweep = time.monotonic()
        for name, node in survivors.items():
            if name in polled:
                continue
            t0 = time.time()
            try:
                peers = node.get("/v1/peers")["peers"]
            except httpx.HTTPError:
                continue
            t1 = time.time()
            row = next((p for p in peers if p["agent_id"] == victim.agent_id), None)
            if row is None or not row["available"]:
                polled[name] = (t0 + t1) / 2 - killed
        time.sleep(max(0.0, poll - (time.monotonic() - sweep)))
    return {
        "ttl_s": ttl,
        "heartbeat_s": heartbeat_s,
        "detection_s": _dist(polled.values()),
        "within_1s": sum(d <= 1.0 for d in polled.values()),
        "nodes": len(survivors),
        "undetected": len(survivors) - len(polled),
        "resolution_s": poll,
        "how": (
            f"SIGKILL, then /v1/peers of every survivor polled in sweeps of ~{poll} s; per node the time of the "
            "first reply showing it unavailable (a sweep over all nodes can take longer than the interval)"
        ),
    }


def _phase(row: dict[str, Any], name: str, budget: _Budget, say: _Progress, fn: Callable[[], T]) -> T | None:
    """Run one phase of a size; a failure or a spent budget is recorded, not raised."""
    if budget.over():
        row["skipped"].append(f"{name}: the {budget.seconds:.0f} s wall-clock budget was spent")
        say(f"  [yellow]{name} skipped[/yellow] (budget)")
        return None
    try:
        return fn()
    except (AssertionError, SymphonyError, httpx.HTTPError, OSError, KeyError, ValueError, StopIteration) as exc:
        row["errors"].append(f"{name}: {exc!r}"[:600])
        say(f"  [red]{name} failed[/red]: {exc!r}"[:300])
        return None


def _run_real(n: int, cfg: LedgerBenchConfig, root: Path, rng: random.Random, say: _Progress) -> dict[str, Any]:
    budget = _Budget(cfg.real_budget_s)
    row = _row("processes", n, "processes")
    row["load_average_start"] = os.getloadavg()[0]  # other work on the machine slows the processes
    hb = cfg.real_heartbeat(n)
    ttl = hb * NodeConfig(data_dir=root).ttl_heartbeats
    say(f"[bold]processes N={n}[/bold]: starting {n} `symphony node` processes (heartbeat {hb} s)")
    with open_swarm(root / f"processes-{n}", heartbeat=hb) as swarm:
        nodes = _phase(row, "start", budget, say, lambda: swarm.start(n))
        if nodes is None:
            return row
        ae = _cli_value(nodes[0], "--anti-entropy")
        row["settings"] = {
            "heartbeat_s": hb,
            "ttl_s": ttl,
            "anti_entropy_s": ae,
            "target_degree": 6,
            "gossip_degree": MESH_DEGREE,
            "host": "127.0.0.1",
        }
        agents = {node.agent_id for node in nodes}
        for node in nodes:
            if (
                _phase(
                    row,
                    "converge",
                    budget,
                    say,
                    partial(
                        wait_for,
                        partial(_holds_all, node, agents),
                        timeout=120,
                        what=f"{node.name} to hold all {n} records",
                    ),
                )
                is None
            ):
                return row
        try:
            wait_for(
                lambda: all(_sees_all(node, agents) for node in nodes),
                timeout=10 * hb + 10,
                what="every node to see every agent available at once",
            )
        except AssertionError:
            row["notes"].append(
                "records converged, but not every node saw every agent available at the same time "
                "(heartbeats late past the TTL: the machine was saturated)"
            )
        row["startup_s"] = budget.elapsed()
        say(f"  {n} processes up and converged in {budget.elapsed():.1f} s; upkeep window {cfg.real_window_s:.0f} s")
        time.sleep(2 * hb)
        row["upkeep"] = _phase(
            row,
            "upkeep",
            budget,
            say,
            lambda: _real_upkeep(nodes, window=cfg.real_window_s, heartbeat_s=hb, anti_entropy_s=ae),
        )
        say(f"  measuring {cfg.updates} updates")
        row["propagation"] = _phase(
            row, "updates", budget, say, lambda: _real_updates(nodes, count=cfg.updates, rng=rng)
        )
        say("  join catch-up")
        joined = _phase(row, "join", budget, say, lambda: _real_join(swarm, nodes, rng=rng))
        everyone = list(nodes)
        if joined is not None:
            row["join"], joiner = joined
            everyone.append(joiner)
        victim = rng.choice(nodes)
        say(f"  failure detection (SIGKILL {victim.name})")
        time.sleep(hb * rng.uniform(2.0, 3.0))  # let the join settle; crash at a random heartbeat phase
        try:
            wait_for(
                lambda: all(n.ledger()[victim.agent_id]["available"] for n in everyone if n is not victim),
                timeout=10 * hb,
                what=f"every survivor to see {victim.name} available before the crash",
            )
        except AssertionError:
            row["notes"].append(f"not every survivor saw {victim.name} available just before the crash")
        row["failure"] = _phase(
            row,
            "failure",
            budget,
            say,
            lambda: _real_failure(everyone, victim, ttl=ttl, heartbeat_s=hb, poll=cfg.real_poll_s),
        )
    row["wall_s"] = budget.elapsed()
    row["load_average_end"] = os.getloadavg()[0]
    return row
