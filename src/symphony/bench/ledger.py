"""Ledger benchmark (``symphony bench ledger``): dissemination, join, failure detection, upkeep.

Entry point: ``run_ledger_bench``. It prints rich tables, writes ``ledger.json`` and
``ledger.md`` and returns the results dict.

Theory of operation
-------------------
The issue asks, per network size N, for: time and gossip rounds until an update reaches
every node (p50/p95), join catch-up time, failure-detection time and steady-state bytes
per agent per hour; targets: every node within 1 s at N=20 (real), <= 2 log2 N rounds
(simulation), <= 0.1 MB per agent per hour (the paper reports 0.8).

**Real processes** (``symphony.node.swarm``): N ``symphony node`` processes on 127.0.0.1
with fast timers (``--heartbeat`` max(1 s, N/4 s), TTL 3 heartbeats, and the swarm's
anti-entropy of 2 heartbeats), all on one machine, so every event log shares one clock
(ms resolution). 20 py-libp2p processes beating every 1-2 s saturate 2 cores (records
flicker unavailable, push gossip reaches only part of the mesh), hence a heartbeat that
grows with N: each process receives at most 4 heartbeats a second.

- update: POST /v1/node/record on a random node; time = the last ``record_merged`` ts of
  that (agent, lamport) over all other nodes minus the origin's ``record_issued`` ts.
  py-libp2p exposes no hop counts, so there are no rounds for processes.
- join: one more process bootstraps through a random node; catch-up = ts of the
  ``record_merged`` that completes its ledger minus its ``starting`` event (and from spawn).
- failure: SIGKILL a random node (once every survivor sees it available); every
  survivor's /v1/peers is polled in ~0.1 s sweeps until it reports the victim unavailable.
- upkeep: /v1/node ``traffic`` counters over a quiet window. They are application
  payload bytes, and the libp2p transport counts a publish once (not per mesh peer; relays
  not at all) and a delivery once. "Wire" bytes are therefore a lower bound: pubsub
  deliveries + sync bytes sent. Not counted: gossipsub duplicates and control traffic
  (GRAFT/PRUNE/IHAVE/IWANT), protobuf/yamux framing, Noise, TCP/IP. The run's fast timers
  are scaled to production timers (``LedgerConfig``/``GossipConfig`` defaults): derived.

**Memory engine** (``MemoryNetwork``) in virtual time (``trio.testing.MockClock``), one-way
link latency drawn per connection from 5-20 ms, production timers (``LedgerConfig`` and
``GossipConfig`` defaults). Virtual time leaves out CPU time: it is what a network of
infinitely fast nodes would see, so CPU costs are reported beside it (``cpu``).

- ``full`` set-up (N <= ``sim_full_max``): every node runs the real ``LedgerService``.
  Ledgers start pre-seeded with the same N signed records (shared objects, one copy in
  memory), as if registration had converged; each node then dials 6 random agents from its
  ledger (the service's own discovery). Rounds = max hops (``MemoryNetwork.on_deliver``) of
  the pubsub message that carried the update; time = the last ``record_merged``; upkeep =
  all nodes' ``transport.stats`` over a quiet window (every hop, duplicates included);
  failure = first instant each survivor's ``Ledger.is_available`` turns false (polled in
  virtual time, TTL/600 apart), whatever rule decides it.
- ``overlay`` set-up (every size; the only one above ``sim_full_max``): a full set-up costs
  O(N^2) CPU per heartbeat interval (every node verifies every heartbeat, ~0.15 ms each)
  plus O(N) digest hashing per anti-entropy step, hours of CPU per simulated minute at
  N=10,000. So: N transports on the same mesh model with the same discovery pattern and
  no LedgerService.
  - update: real signed record bytes published by a random node; rounds and time from
    ``on_deliver`` (relaying needs no handler work).
  - upkeep (derived): mean bytes of single-heartbeat floods of real signed heartbeats,
    times one flood per agent per heartbeat interval; sync bytes per agent from a full
    set-up (in steady state a sync is one digest-hash exchange, independent of N);
    records 0 (no updates in steady state).
  - failure: the victim heartbeats on the N-node overlay and is killed at a random phase;
    every node feeds its own ``Ledger`` the heartbeats that reach it and its direct
    connection events, as ``LedgerService`` does (signatures are checked once per
    distinct message: every node would reach the same verdict).
  - join: the joiner and 6 full peers run ``LedgerService``; the peers hold all N records;
    the other N-6 agents' heartbeats enter the mesh at their real aggregate rate (N per
    heartbeat interval, signed by their own keys, relayed by a peer), so heartbeats from
    unknown agents trigger pulls as they would in the full network.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import trio
import trio.testing
from rich.console import Console
from rich.table import Table

from symphony import __version__
from symphony.errors import StaleMessage, SymphonyError
from symphony.ledger import (
    HEARTBEAT_TOPIC,
    LEDGER_TOPIC,
    SYNC_PROTOCOL,
    GossipConfig,
    Ledger,
    LedgerConfig,
    LedgerService,
    record_order,
)
from symphony.node.config import NodeConfig
from symphony.node.swarm import NodeProcess, Swarm, open_swarm, wait_for
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Heartbeat, LedgerRecord
from symphony.transport.base import MessageHandler, PeerEvent, PeerEventHandler
from symphony.transport.memory import LinkModel, MemoryNetwork, MemoryTransport

__all__ = [
    "DEFAULT_REAL_SIZES",
    "DEFAULT_SIM_SIZES",
    "QUICK_REAL_SIZES",
    "QUICK_SIM_SIZES",
    "LedgerBenchConfig",
    "run_ledger_bench",
]

T = TypeVar("T")

DEFAULT_REAL_SIZES = [5, 10, 20]
DEFAULT_SIM_SIZES = [100, 1_000, 10_000]
QUICK_REAL_SIZES = [3, 5]
QUICK_SIM_SIZES = [20, 200]

TARGET_PROPAGATION_S = 1.0
TARGET_PROPAGATION_N = 20
TARGET_ROUNDS_PER_LOG2N = 2.0
TARGET_UPKEEP_MB = 0.1
PAPER_UPKEEP_MB = 0.8

PRODUCTION = LedgerConfig()
PRODUCTION_GOSSIP = GossipConfig()
MESH_DEGREE = 6  # gossipsub D of both engines (Libp2pConfig.gossip_degree, MemoryNetwork)
EPOCH = 1_700_000_000.0  # virtual time 0 as a wall-clock instant, for signed timestamps
MB = 1_000_000
CHANNELS = {LEDGER_TOPIC: "records", HEARTBEAT_TOPIC: "heartbeats", SYNC_PROTOCOL: "sync"}
KINDS = ("bytes_sent", "bytes_received", "messages_sent", "messages_received")
Totals = dict[str, dict[str, int]]


@dataclass(frozen=True)
class LedgerBenchConfig:
    """Knobs of the benchmark; ``quick()`` is a smaller run of a few minutes.

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

    @classmethod
    def quick(cls) -> LedgerBenchConfig:
        return cls(updates=5, real_window_s=10.0, real_budget_s=120.0, sim_window_heartbeats=3.0,
                   sim_heartbeat_floods=8, sim_budget_s=120.0)


# ---- small helpers ------------------------------------------------------------------------


class _Budget:
    """A wall-clock allowance for one size; phases check it and are skipped past it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def over(self) -> bool:
        return self.elapsed() > self.seconds


class _Progress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.start:7.1f}s[/dim] {message}", highlight=False)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _dist(values: Iterable[float]) -> dict[str, Any]:
    """p50/p95/max (linear interpolation) of ``values``, or Nones for no values."""
    vals = [float(v) for v in values]
    if not vals:
        return {"p50": None, "p95": None, "min": None, "max": None, "samples": 0}
    return {"p50": _quantile(vals, 0.5), "p95": _quantile(vals, 0.95), "min": min(vals), "max": max(vals),
            "samples": len(vals)}


def _empty_totals() -> Totals:
    return {kind: {name: 0 for name in CHANNELS.values()} for kind in KINDS}


def _add_snapshot(totals: Totals, snapshot: dict[str, dict[str, int]]) -> None:
    for kind in KINDS:
        for key, value in snapshot.get(kind, {}).items():
            name = CHANNELS.get(key, key)
            totals[kind][name] = totals[kind].get(name, 0) + value


def _minus(after: Totals, before: Totals) -> Totals:
    return {kind: {c: after[kind].get(c, 0) - before[kind].get(c, 0) for c in after[kind]} for kind in KINDS}


def _row(engine: str, n: int, setup: str) -> dict[str, Any]:
    return {"engine": engine, "n": n, "setup": setup, "settings": {}, "propagation": None, "rounds": None,
            "join": None, "failure": None, "upkeep": None, "cpu": None, "wall_s": None, "errors": [],
            "skipped": [], "notes": []}


def _upkeep(
    *, kind: str, heartbeat_s: float, anti_entropy_s: float, per_agent_hour: dict[str, dict[str, float]],
    wire: dict[str, float], wire_definition: str, how: str,
) -> dict[str, Any]:
    """One upkeep figure: bytes per agent per hour by channel, in MB, and the wire total."""
    return {
        "kind": kind,
        "settings": {"heartbeat_s": heartbeat_s, "anti_entropy_s": anti_entropy_s},
        "per_agent_hour_mb": {c: {k: v / MB for k, v in d.items()} for c, d in per_agent_hour.items()},
        "wire_by_channel_mb": {c: v / MB for c, v in wire.items()},
        "wire_mb": sum(wire.values()) / MB,
        "wire_definition": wire_definition,
        "how": how,
    }


# ---- real processes ------------------------------------------------------------------------

_REAL_WIRE = ("lower bound of payload put on the wire: pubsub payload delivered (records, heartbeats) "
              "+ sync requests and replies sent; libp2p counts a publish once and no relays, and "
              "gossipsub duplicates, control messages, framing, Noise and TCP are not counted")


class _EventTail:
    """Reads the complete lines appended to a node's events.jsonl since construction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = path.read_bytes() if path.exists() else b""
        self.offset = data.rfind(b"\n") + 1
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


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
    per_hour = {c: {"sent": rate["bytes_sent"][c] * 3600 / n, "received": rate["bytes_received"][c] * 3600 / n}
                for c in CHANNELS.values()}
    wire = {"records": per_hour["records"]["received"], "heartbeats": per_hour["heartbeats"]["received"],
            "sync": per_hour["sync"]["sent"]}
    measured = _upkeep(kind="measured", heartbeat_s=heartbeat_s, anti_entropy_s=anti_entropy_s,
                       per_agent_hour=per_hour, wire=wire, wire_definition=_REAL_WIRE,
                       how=f"transport counters of all {n} processes over a {window:.0f} s quiet window")
    scale = {"records": 1.0, "heartbeats": heartbeat_s / PRODUCTION.heartbeat_interval_s,
             "sync": anti_entropy_s / PRODUCTION_GOSSIP.anti_entropy_interval_s}
    production = _upkeep(
        kind="derived", heartbeat_s=PRODUCTION.heartbeat_interval_s,
        anti_entropy_s=PRODUCTION_GOSSIP.anti_entropy_interval_s,
        per_agent_hour={c: {k: v * scale[c] for k, v in d.items()} for c, d in per_hour.items()},
        wire={c: v * scale[c] for c, v in wire.items()}, wire_definition=_REAL_WIRE,
        how=(f"measured values scaled by interval ratios: heartbeats x {scale['heartbeats']:.2f}, "
             f"sync x {scale['sync']:.2f} (steady-state syncs are timer-driven), records x 1"),
    )
    return {**measured, "window_s": window, "window_totals": window_totals, "production": production}


def _real_updates(nodes: list[NodeProcess], *, count: int, rng: random.Random) -> dict[str, Any]:
    tails = {node.name: _EventTail(node.data_dir / "events.jsonl") for node in nodes}
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
    return {"time_s": _dist(times), "per_node_s": _dist(per_node), "updates": count, "missed": missed,
            "reached": reached, "of": len(nodes) - 1, "timeout_s": 20,
            "how": "max over nodes of record_merged ts minus the origin's record_issued ts (events.jsonl)"}


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
        "ttl_s": ttl, "heartbeat_s": heartbeat_s, "detection_s": _dist(polled.values()),
        "within_1s": sum(d <= 1.0 for d in polled.values()), "nodes": len(survivors),
        "undetected": len(survivors) - len(polled), "resolution_s": poll,
        "how": (f"SIGKILL, then /v1/peers of every survivor polled in sweeps of ~{poll} s; per node the time of the "
                "first reply showing it unavailable (a sweep over all nodes can take longer than the interval)"),
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
        row["settings"] = {"heartbeat_s": hb, "ttl_s": ttl, "anti_entropy_s": ae, "target_degree": 6,
                           "gossip_degree": MESH_DEGREE, "host": "127.0.0.1"}
        agents = {node.agent_id for node in nodes}
        for node in nodes:
            if _phase(row, "converge", budget, say, partial(wait_for, partial(_holds_all, node, agents), timeout=120,
                                                             what=f"{node.name} to hold all {n} records")) is None:
                return row
        try:
            wait_for(lambda: all(_sees_all(node, agents) for node in nodes), timeout=10 * hb + 10,
                     what="every node to see every agent available at once")
        except AssertionError:
            row["notes"].append("records converged, but not every node saw every agent available at the same time "
                                "(heartbeats late past the TTL: the machine was saturated)")
        row["startup_s"] = budget.elapsed()
        say(f"  {n} processes up and converged in {budget.elapsed():.1f} s; upkeep window {cfg.real_window_s:.0f} s")
        time.sleep(2 * hb)
        row["upkeep"] = _phase(row, "upkeep", budget, say, lambda: _real_upkeep(
            nodes, window=cfg.real_window_s, heartbeat_s=hb, anti_entropy_s=ae))
        say(f"  measuring {cfg.updates} updates")
        row["propagation"] = _phase(row, "updates", budget, say,
                                    lambda: _real_updates(nodes, count=cfg.updates, rng=rng))
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
            wait_for(lambda: all(n.ledger()[victim.agent_id]["available"] for n in everyone if n is not victim),
                     timeout=10 * hb, what=f"every survivor to see {victim.name} available before the crash")
        except AssertionError:
            row["notes"].append(f"not every survivor saw {victim.name} available just before the crash")
        row["failure"] = _phase(row, "failure", budget, say, lambda: _real_failure(
            everyone, victim, ttl=ttl, heartbeat_s=hb, poll=cfg.real_poll_s))
    row["wall_s"] = budget.elapsed()
    row["load_average_end"] = os.getloadavg()[0]
    return row


# ---- memory engine: shared pieces ----------------------------------------------------------

_SIM_WIRE = "payload bytes of every transmission (each pubsub hop, duplicate copies included; each request and reply)"


def _clock() -> float:
    return EPOCH + trio.current_time()


def _now_ms() -> int:
    return int(_clock() * 1000)


def _vary_latency(
    net: MemoryNetwork, transport: MemoryTransport, rng: random.Random, bounds: tuple[float, float],
    assigned: set[tuple[str, str]],
) -> None:
    """Give each new connection of ``transport`` its own latency, drawn from ``bounds``."""

    def on_peer(event: PeerEvent) -> None:
        low, high = sorted((transport.peer_id, event.peer_id))
        if event.kind == "join" and (low, high) not in assigned:
            assigned.add((low, high))
            net.set_link(transport.peer_id, event.peer_id, LinkModel(latency_s=rng.uniform(*bounds)))

    transport.on_peer_event(on_peer)


def _traffic_sum(transports: Iterable[MemoryTransport]) -> Totals:
    totals = _empty_totals()
    for t in transports:
        stats = t.stats
        for kind, counter in (("bytes_sent", stats.bytes_sent), ("bytes_received", stats.bytes_received),
                              ("messages_sent", stats.messages_sent), ("messages_received", stats.messages_received)):
            row = totals[kind]
            for key, value in counter.items():
                name = CHANNELS.get(key, key)
                row[name] = row.get(name, 0) + value
    return totals


def _signed_records(idents: list[Identity], ids: list[str], addrs: list[list[str]], now: float) -> list[LedgerRecord]:
    issued = int(now * 1000)
    return [LedgerRecord(agent_id=a, lamport=1, issued_at=issued, name=f"agent-{k}", addrs=addrs[k]).signed_by(i)
            for k, (i, a) in enumerate(zip(idents, ids, strict=True))]


async def _advance(seconds: float, budget: _Budget) -> bool:
    """Let ``seconds`` of virtual time pass; False if the wall-clock budget ran out first."""
    end = trio.current_time() + seconds
    while (left := end - trio.current_time()) > 0:
        if budget.over():
            return False
        await trio.sleep(min(1.0, left))
    return True


async def _wait(event: trio.Event, *, timeout: float, budget: _Budget) -> bool:
    """Wait for ``event`` up to ``timeout`` virtual seconds or until the budget is spent."""
    end = trio.current_time() + timeout
    while not event.is_set():
        left = end - trio.current_time()
        if left <= 0 or budget.over():
            return False
        with trio.move_on_after(min(1.0, left)):
            await event.wait()
    return True


@dataclass
class _SimNode:
    agent_id: str
    transport: MemoryTransport
    service: LedgerService
    scope: trio.CancelScope


def _start_service(
    nursery: trio.Nursery, *, transport: MemoryTransport, identity: Identity, agent_id: str, ledger: Ledger,
    profile: LedgerRecord, rng: random.Random, on_event: Callable[[str, dict[str, Any]], None],
    bootstrap: list[str] | None = None,
) -> _SimNode:
    service = LedgerService(transport=transport, identity=identity, ledger=ledger, profile=profile, clock=_clock,
                            rng=random.Random(rng.random()), config=PRODUCTION_GOSSIP, bootstrap=bootstrap or [],
                            on_event=on_event)
    scope = trio.CancelScope()

    async def serve() -> None:
        with scope:
            await service.run()

    nursery.start_soon(serve)
    return _SimNode(agent_id, transport, service, scope)


class _MergeLog:
    """``record_merged`` events: (agent, lamport) -> {receiver: virtual time of first merge}."""

    def __init__(self) -> None:
        self.merged: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
        self._waiters: dict[tuple[str, int], tuple[int, trio.Event]] = {}

    def sink(self, receiver: str) -> Callable[[str, dict[str, Any]], None]:
        def on_event(kind: str, fields: dict[str, Any]) -> None:
            if kind == "record_merged":
                key = (fields["agent"], int(fields["lamport"]))
                self.merged[key].setdefault(receiver, trio.current_time())
                self._check(key)

        return on_event

    def expect(self, key: tuple[str, int], count: int) -> trio.Event:
        event = trio.Event()
        self._waiters[key] = (count, event)
        self._check(key)
        return event

    def _check(self, key: tuple[str, int]) -> None:
        waiter = self._waiters.get(key)
        if waiter is not None and len(self.merged[key]) >= waiter[0]:
            waiter[1].set()
            del self._waiters[key]


class _CatchUp:
    """Sets ``done`` once a joiner merged every expected (agent, >= lamport)."""

    def __init__(self, expected: dict[str, int]) -> None:
        self.missing = dict(expected)
        self.done = trio.Event()
        self.done_at: float | None = None

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        if kind != "record_merged":
            return
        want = self.missing.get(fields["agent"])
        if want is not None and int(fields["lamport"]) >= want:
            del self.missing[fields["agent"]]
            if not self.missing:
                self.done_at = trio.current_time()
                self.done.set()


class _Deliveries:
    """``MemoryNetwork.on_deliver`` hook keeping the deliveries of one watched publisher."""

    def __init__(self) -> None:
        self.prefix: str | None = None
        self.by_msg: dict[str, dict[str, tuple[int, float]]] = {}

    def watch(self, publisher: str | None) -> None:
        self.prefix = None if publisher is None else publisher + "/"
        self.by_msg = {}

    def __call__(self, msg_id: str, receiver: str, hops: int, now: float) -> None:
        if self.prefix is not None and msg_id.startswith(self.prefix):
            self.by_msg.setdefault(msg_id, {})[receiver] = (hops, now)


def _push_rounds(by_msg: dict[str, dict[str, tuple[int, float]]], merged: dict[str, float]) -> tuple[int | None, int]:
    """(max hops, receivers reached) of the pubsub message that carried an update: the one
    delivered to receivers at the very instants they merged it (pull merges match none)."""
    best_hops, best = None, 0
    for by_receiver in by_msg.values():
        hops = [h for r, (h, t) in by_receiver.items() if merged.get(r) == t]
        if len(hops) > best:
            best, best_hops = len(hops), max(hops)
    return best_hops, best


def _rounds(hops: list[int], n: int) -> dict[str, Any]:
    limit = TARGET_ROUNDS_PER_LOG2N * math.log2(n)
    return {**_dist(hops), "limit": limit, "log2_n": math.log2(n)}


def _cpu_costs() -> dict[str, float]:
    """Microseconds of this machine's CPU per heartbeat check, record check and order key."""
    ident = Identity(bytes(range(32)))
    heartbeat = Heartbeat(agent_id=ident.agent_id, lamport=1, ts=int(time.time() * 1000)).signed_by(ident).to_bytes()
    record = LedgerRecord(agent_id=ident.agent_id, lamport=1, issued_at=int(time.time() * 1000), name="agent-0",
                          addrs=[f"/memory/0/p2p/{ident.agent_id}"]).signed_by(ident)
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
    return {"heartbeat_check_us": (t1 - t0) / rounds * 1e6, "record_check_us": (t2 - t1) / rounds * 1e6,
            "record_order_us": (t3 - t2) / rounds * 1e6}


def _cpu_row(n: int, costs: dict[str, float]) -> dict[str, Any]:
    """Per-node CPU a full network of N would need at production timers (derived)."""
    return {
        "heartbeat_core_share": n / PRODUCTION.heartbeat_interval_s * costs["heartbeat_check_us"] / 1e6,
        "digest_hash_ms": n * costs["record_order_us"] / 1000,
        "join_verify_s": n * costs["record_check_us"] / 1e6,
        "how": ("derived from micro-benchmarks on this machine: heartbeat_core_share = N heartbeats per "
                f"{PRODUCTION.heartbeat_interval_s:.0f} s x {costs['heartbeat_check_us']:.0f} us each; digest_hash_ms "
                f"= N x {costs['record_order_us']:.0f} us (every anti-entropy step, both ends); join_verify_s = "
                f"N x {costs['record_check_us']:.0f} us"),
    }


# ---- memory engine: full set-up ------------------------------------------------------------


async def _sim_full(
    n: int, cfg: LedgerBenchConfig, seed: int, say: _Progress, *, upkeep_only: bool = False
) -> dict[str, Any]:
    budget = _Budget(cfg.sim_budget_s)
    rng = random.Random(seed)
    row = _row("memory", n, "full")
    row["settings"] = _sim_settings(cfg)
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.sim_latency_s[0]), rng=random.Random(rng.random()),
                        mesh_degree=MESH_DEGREE)
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
            now = _clock()
            records = _signed_records(idents, ids, [t.listen_addrs() for t in transports], now)
            nodes = []
            for k in range(n):
                ledger = Ledger(PRODUCTION)
                for record in records:
                    ledger.merge(record, now=now)
                nodes.append(_start_service(nursery, transport=transports[k], identity=idents[k], agent_id=ids[k],
                                            ledger=ledger, profile=records[k], rng=rng, on_event=merges.sink(ids[k])))
            warmup = cfg.sim_warmup_heartbeats * PRODUCTION.heartbeat_interval_s
            window = cfg.sim_window_heartbeats * PRODUCTION.heartbeat_interval_s
            say(f"  full N={n}: {n} LedgerServices running on pre-seeded ledgers; warm-up {warmup:.0f} s "
                f"+ upkeep window {window:.0f} s (virtual)")
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
            say(f"  full N={n}: upkeep {row['upkeep']['wire_mb']:.2f} MB/agent/h; "
                f"{row['wall_per_virtual_s']:.2f} s wall per virtual s")
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


def _sim_settings(cfg: LedgerBenchConfig) -> dict[str, Any]:
    return {"heartbeat_s": PRODUCTION.heartbeat_interval_s, "ttl_s": PRODUCTION.ttl_s,
            "anti_entropy_s": PRODUCTION_GOSSIP.anti_entropy_interval_s,
            "target_degree": PRODUCTION_GOSSIP.target_degree,
            "mesh_degree": MESH_DEGREE, "latency_ms": [cfg.sim_latency_s[0] * 1000, cfg.sim_latency_s[1] * 1000],
            "loss": 0.0, "time": "virtual (trio MockClock); CPU time not included"}


def _sim_upkeep_measured(delta: Totals, n: int, window: float) -> dict[str, Any]:
    per_hour = {c: {"sent": delta["bytes_sent"][c] * 3600 / window / n,
                    "received": delta["bytes_received"][c] * 3600 / window / n} for c in CHANNELS.values()}
    measured = _upkeep(kind="measured", heartbeat_s=PRODUCTION.heartbeat_interval_s,
                       anti_entropy_s=PRODUCTION_GOSSIP.anti_entropy_interval_s, per_agent_hour=per_hour,
                       wire={c: d["sent"] for c, d in per_hour.items()}, wire_definition=_SIM_WIRE,
                       how=f"sum of all {n} nodes' transport stats over {window:.0f} virtual s, / N, x 3600 / window")
    return {**measured, "window_s": window, "window_totals": delta, "production": measured}


async def _sim_full_updates(
    nodes: list[_SimNode], cfg: LedgerBenchConfig, rng: random.Random, merges: _MergeLog, deliveries: _Deliveries,
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
    result = {"time_s": _dist(times), "per_node_s": _dist(per_node), "updates": cfg.updates, "missed": missed,
              "push_share": sum(push_share) / len(push_share) if push_share else None,
              "how": "LedgerService.update on a random node; last record_merged (virtual time) minus issue"}
    return result, hops


async def _sim_full_join(
    nursery: trio.Nursery, stack: AsyncExitStack, net: MemoryNetwork, nodes: list[_SimNode], cfg: LedgerBenchConfig,
    rng: random.Random, budget: _Budget, assigned: set[tuple[str, str]], row: dict[str, Any],
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
    joiner = _start_service(nursery, transport=transport, identity=identity, agent_id=agent_id,
                            ledger=Ledger(PRODUCTION),
                            profile=LedgerRecord(agent_id=agent_id, lamport=0, issued_at=0, name="joiner"), rng=rng,
                            on_event=catch.on_event, bootstrap=[via.transport.listen_addrs()[0]])
    await trio.sleep(0)
    await joiner.service.register()
    ok = await _wait(catch.done, timeout=cfg.sim_join_timeout_s, budget=budget)
    stats = transport.stats
    row["join"] = {
        "catch_up_s": None if catch.done_at is None else catch.done_at - start, "complete": ok,
        "records": len(expected), "missing": len(catch.missing),
        "sync_bytes_received": stats.bytes_received[SYNC_PROTOCOL], "sync_requests": stats.messages_sent[SYNC_PROTOCOL],
        "how": "a fresh LedgerService bootstraps via a random node; virtual time until it merged every current record",
    }
    return joiner


async def _sim_full_failure(net: MemoryNetwork, nodes: list[_SimNode], joiner: _SimNode | None, rng: random.Random,
                            budget: _Budget, row: dict[str, Any]) -> None:
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
        ledgers, victim.agent_id, killed, budget, unavailable_before=unavailable_before,
        how="kill(): no goodbye; first instant each survivor's own LedgerService/Ledger reports it unavailable")
    if row["failure"] is None:
        row["skipped"].append("failure: budget spent")


_DETECTION_POLLS_PER_TTL = 600


def _unavailable(ledgers: list[Ledger], victim: str) -> int:
    now = _clock()
    return sum(not ledger.is_available(victim, now=now) for ledger in ledgers)


async def _watch_detection(
    ledgers: list[Ledger], victim: str, killed: float, budget: _Budget, *, unavailable_before: int, how: str,
) -> dict[str, Any] | None:
    """Poll every survivor's ``Ledger.is_available`` in virtual time (so whatever liveness
    rule it applies counts: heartbeat TTL or a dropped direct connection) until each
    reports the victim unavailable. None if the wall-clock budget ran out first."""
    step = PRODUCTION.ttl_s / _DETECTION_POLLS_PER_TTL
    deadline = killed + PRODUCTION.ttl_s + 1.2 * PRODUCTION.heartbeat_interval_s + 5.0
    pending = list(ledgers)
    detected: list[float] = []
    while pending and trio.current_time() <= deadline:
        now, elapsed = _clock(), trio.current_time() - killed
        still = [ledger for ledger in pending if ledger.is_available(victim, now=now)]
        detected += [elapsed] * (len(pending) - len(still))
        pending = still
        if budget.over():
            return None
        if pending:
            await trio.sleep(step)
    return {"ttl_s": PRODUCTION.ttl_s, "heartbeat_s": PRODUCTION.heartbeat_interval_s, "detection_s": _dist(detected),
            "within_1s": sum(d <= 1.0 for d in detected), "nodes": len(ledgers), "undetected": len(pending),
            "unavailable_before_kill": unavailable_before,
            "resolution_s": step, "how": how}


# ---- memory engine: overlay set-up -----------------------------------------------------------


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
                ledger.observe_heartbeat(heartbeat, now=_clock())
            except StaleMessage:
                pass

    return on_heartbeat


def _contact_handler(ledger: Ledger) -> PeerEventHandler:
    """What LedgerService._on_peer_event does: a dropped direct connection makes the peer
    unavailable here at once, an opened one counts as a sign of life."""

    def on_peer(event: PeerEvent) -> None:
        if event.kind == "leave":
            ledger.suspect(event.peer_id, now=_clock())
        else:
            ledger.observe_contact(event.peer_id, now=_clock())

    return on_peer


async def _dial_all(transport: MemoryTransport, addrs: list[str]) -> None:
    for addr in addrs:
        await transport.connect(addr)


async def _sim_overlay(
    n: int, cfg: LedgerBenchConfig, seed: int, say: _Progress, sync_reference: dict[str, Any], costs: dict[str, float],
) -> dict[str, Any]:
    budget = _Budget(cfg.sim_budget_s)
    rng = random.Random(seed)
    row = _row("memory", n, "overlay")
    row["settings"] = _sim_settings(cfg)
    row["cpu"] = _cpu_row(n, costs)
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.sim_latency_s[0]), rng=random.Random(rng.random()),
                        mesh_degree=MESH_DEGREE)
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
        victim_record = _signed_records([idents[victim]], [ids[victim]], [victim_addrs], _clock())[0]
        for ledger in ledgers:
            ledger.merge(victim_record, now=_clock())
        # LedgerService._maintain_connections at start: every node dials target_degree random agents.
        degree = min(PRODUCTION_GOSSIP.target_degree, n - 1)
        async with trio.open_nursery() as dials:
            for k, t in enumerate(transports):
                targets = [j + (j >= k) for j in rng.sample(range(n - 1), degree)]
                dials.start_soon(_dial_all, t, [transports[j].listen_addrs()[0] for j in targets])
        await net.wait_idle()
        connections = [len(t.peers()) for t in transports]
        row["topology"] = {"connections_mean": sum(connections) / n, "connections_min": min(connections),
                           "connections_max": max(connections)}
        say(f"  overlay N={n}: {n} transports, {sum(connections) // 2} connections "
            f"(mean degree {sum(connections) / n:.1f}) in {budget.elapsed():.1f} s")
        row["propagation"], hops, record_bytes = await _overlay_updates(transports, idents, ids, cfg, rng, deliveries,
                                                                        net, budget)
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
    transports: list[MemoryTransport], idents: list[Identity], ids: list[str], cfg: LedgerBenchConfig,
    rng: random.Random, deliveries: _Deliveries, net: MemoryNetwork, budget: _Budget,
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
        record = LedgerRecord(agent_id=ids[o], lamport=2 + k, issued_at=_now_ms(), name=f"agent-{o}",
                              tags=[f"bench-{k}"], addrs=transports[o].listen_addrs()).signed_by(idents[o])
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
    result = {"time_s": _dist(times), "per_node_s": _dist(per_node), "updates": cfg.updates, "missed": missed,
              "flood_bytes_mean": sum(flood_bytes) / len(flood_bytes) if flood_bytes else None,
              "how": "real signed record bytes published by a random node; last on_deliver minus publish"}
    return result, hops, flood_bytes


async def _overlay_heartbeat_floods(
    transports: list[MemoryTransport], idents: list[Identity], ids: list[str], cfg: LedgerBenchConfig,
    rng: random.Random, deliveries: _Deliveries, net: MemoryNetwork, budget: _Budget,
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
        samples.append({"heartbeat_bytes": len(data), "bytes_sent": delta["bytes_sent"]["heartbeats"],
                        "messages_sent": delta["messages_sent"]["heartbeats"],
                        "bytes_received": delta["bytes_received"]["heartbeats"], "reached": reached})
        deliveries.watch(None)
        await trio.sleep(0.5)
    return samples


def _overlay_upkeep(n: int, floods: list[dict[str, int]], record_floods: list[int],
                    sync_reference: dict[str, Any]) -> dict[str, Any]:
    per_interval = 3600 / PRODUCTION.heartbeat_interval_s
    sent = sum(f["bytes_sent"] for f in floods) / max(len(floods), 1)
    received = sum(f["bytes_received"] for f in floods) / max(len(floods), 1)
    sync = sync_reference["per_agent_hour_mb"]["sync"]
    per_hour = {"records": {"sent": 0.0, "received": 0.0},
                "heartbeats": {"sent": sent * per_interval, "received": received * per_interval},
                "sync": {"sent": sync["sent"] * MB, "received": sync["received"] * MB}}
    upkeep = _upkeep(
        kind="derived", heartbeat_s=PRODUCTION.heartbeat_interval_s,
        anti_entropy_s=PRODUCTION_GOSSIP.anti_entropy_interval_s, per_agent_hour=per_hour,
        wire={c: d["sent"] for c, d in per_hour.items()}, wire_definition=_SIM_WIRE,
        how=(f"heartbeats: mean bytes of {len(floods)} measured single-heartbeat floods on the {n}-node overlay x "
             f"{per_interval:.0f} heartbeats per agent per hour (every agent floods one per interval); sync: "
             f"{sync_reference['source']}; records: 0 in steady state (an UPDATE floods "
             f"{(sum(record_floods) / max(len(record_floods), 1)) / MB:.3f} MB network-wide)"),
    )
    return {**upkeep, "heartbeat_floods": floods, "production": upkeep}


async def _overlay_failure(
    transports: list[MemoryTransport], ledgers: list[Ledger], idents: list[Identity], ids: list[str], victim: int,
    rng: random.Random, budget: _Budget, net: MemoryNetwork,
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
        survivors, ids[victim], killed, budget, unavailable_before=unavailable_before,
        how=("the victim heartbeats on the overlay, then kill() at a random phase; each node feeds its own Ledger "
             "the heartbeats that reach it and its direct connection events, as LedgerService does; first "
             "instant each reports the victim unavailable"))


async def _sim_join_reduced(
    n: int, cfg: LedgerBenchConfig, seed: int, budget: _Budget, say: _Progress
) -> dict[str, Any] | None:
    """Join catch-up with 6 full peers holding all N records and the other agents' heartbeats
    injected at their real aggregate rate (see the module docstring)."""
    if budget.over():
        return None
    rng = random.Random(seed)
    k = min(PRODUCTION_GOSSIP.target_degree, n)
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.sim_latency_s[0]), rng=random.Random(rng.random()),
                        mesh_degree=MESH_DEGREE)
    assigned: set[tuple[str, str]] = set()
    idents = [Identity(rng.randbytes(32)) for _ in range(n)]
    ids = [i.agent_id for i in idents]
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        try:
            peer_transports = [await stack.enter_async_context(net.open_node(idents[i])) for i in range(k)]
            for t in peer_transports:
                _vary_latency(net, t, rng, cfg.sim_latency_s, assigned)
            now = _clock()
            addrs = [t.listen_addrs() for t in peer_transports]
            addrs += [[f"/memory/{1_000_000 + i}/p2p/{ids[i]}"] for i in range(k, n)]  # agents not simulated here
            records = _signed_records(idents, ids, addrs, now)
            peers = []
            for i in range(k):
                ledger = Ledger(PRODUCTION)
                for record in records:
                    ledger.merge(record, now=now)
                peers.append(_start_service(
                    nursery, transport=peer_transports[i], identity=idents[i], agent_id=ids[i], ledger=ledger,
                    profile=records[i], rng=rng, on_event=lambda kind, fields: None,
                    bootstrap=[t.listen_addrs()[0] for t in peer_transports[:i]]))
            t0 = time.perf_counter()
            peers[0].service.ledger.digest_hash()
            digest_ms = (time.perf_counter() - t0) * 1000

            async def inject() -> None:
                others = list(range(k, n))
                rng.shuffle(others)
                gap = PRODUCTION.heartbeat_interval_s / len(others)
                while True:
                    for i in others:
                        heartbeat = Heartbeat(agent_id=ids[i], lamport=1, ts=_now_ms()).signed_by(idents[i])
                        await peers[0].transport.publish(HEARTBEAT_TOPIC, heartbeat.to_bytes())
                        await trio.sleep(gap)

            if n > k:
                nursery.start_soon(inject)
            await _advance(2.0, budget)
            identity = Identity(rng.randbytes(32))
            transport = await stack.enter_async_context(net.open_node(identity))
            _vary_latency(net, transport, rng, cfg.sim_latency_s, assigned)
            catch = _CatchUp(dict.fromkeys(ids, 1))
            start, wall = trio.current_time(), time.monotonic()
            joiner = _start_service(
                nursery, transport=transport, identity=identity, agent_id=identity.agent_id, ledger=Ledger(PRODUCTION),
                profile=LedgerRecord(agent_id=identity.agent_id, lamport=0, issued_at=0, name="joiner"), rng=rng,
                on_event=catch.on_event, bootstrap=[peer_transports[0].listen_addrs()[0]])
            await trio.sleep(0)
            await joiner.service.register()
            ok = await _wait(catch.done, timeout=cfg.sim_join_timeout_s, budget=budget)
            stats = transport.stats
            catch_up = None if catch.done_at is None else catch.done_at - start
            result = {
                "catch_up_s": catch_up, "complete": ok,
                "records": n, "missing": len(catch.missing), "full_peers": k,
                "sync_bytes_received": stats.bytes_received[SYNC_PROTOCOL],
                "sync_requests": stats.messages_sent[SYNC_PROTOCOL],
                "max_records_per_reply": PRODUCTION_GOSSIP.max_records_per_reply,
                "peer_digest_hash_ms": digest_ms, "simulator_wall_s": time.monotonic() - wall,
                "how": (f"reduced: joiner + {k} full LedgerService peers holding all {n} records; the other {n - k} "
                        "agents exist only as records and as heartbeats injected at their real aggregate rate"),
            }
            say(f"  overlay N={n}: join catch-up {_fmt(catch_up, 3)} virtual s "
                f"({stats.messages_sent[SYNC_PROTOCOL]} sync requests, "
                f"{stats.bytes_received[SYNC_PROTOCOL] / MB:.2f} MB)")
            return result
        finally:
            nursery.cancel_scope.cancel()


# ---- orchestration and reports -------------------------------------------------------------


def _sim(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return trio.run(partial(fn, *args, **kwargs), clock=trio.testing.MockClock(autojump_threshold=0))


def _code_version() -> str | None:
    """``git describe`` of the checkout this module runs from, if it is one."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _peak_rss_mb() -> float:
    scale = 1024 if sys.platform != "darwin" else 1
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB


def _run_sims(sizes: list[int], cfg: LedgerBenchConfig, seed: int, say: _Progress, rows: list[dict[str, Any]]) -> None:
    costs = _cpu_costs()
    sync_reference: dict[str, Any] | None = None
    full_rate: tuple[int, float] | None = None
    for n in sorted(sizes):
        if n <= cfg.sim_full_max:
            say(f"[bold]memory engine N={n}, full set-up[/bold] (budget {cfg.sim_budget_s:.0f} s)")
            row = _guarded(n, "full", say, lambda: _sim(_sim_full, n, cfg, seed, say))
            row["cpu"] = _cpu_row(n, costs)
            rows.append(row)
            if row.get("upkeep"):
                sync_reference = {"per_agent_hour_mb": row["upkeep"]["per_agent_hour_mb"],
                                  "source": f"measured in the full set-up at N={n} (N-independent in steady state)"}
            if row.get("wall_per_virtual_s"):
                full_rate = (n, row["wall_per_virtual_s"])
        if sync_reference is None:
            ref_n = min(10, cfg.sim_full_max, n)
            say(f"  sync reference: full set-up upkeep at N={ref_n}")
            ref = _sim(_sim_full, max(ref_n, 2), cfg, seed, say, upkeep_only=True)
            sync_reference = {"per_agent_hour_mb": ref["upkeep"]["per_agent_hour_mb"],
                              "source": f"measured in a full set-up at N={ref_n} (N-independent in steady state)"}
        say(f"[bold]memory engine N={n}, overlay set-up[/bold] (budget {cfg.sim_budget_s:.0f} s)")
        ref_now = sync_reference
        row = _guarded(n, "overlay", say, lambda: _sim(_sim_overlay, n, cfg, seed, say, ref_now, costs))
        if n > cfg.sim_full_max:
            reason = f"full set-up not run (N > sim_full_max={cfg.sim_full_max})"
            if full_rate is not None:
                virtual = ((cfg.sim_warmup_heartbeats + cfg.sim_window_heartbeats) * PRODUCTION.heartbeat_interval_s
                           + 2 * PRODUCTION.ttl_s + cfg.updates * 2)
                hours = full_rate[1] * (n / full_rate[0]) ** 2 * virtual / 3600
                reason += (f": at N={full_rate[0]} it took {full_rate[1]:.2f} s wall per virtual s; heartbeat checks "
                           f"and digest hashing grow as N^2, so about {hours:.1f} h here")
            row["notes"].append(reason)
        rows.append(row)
        say(f"  peak RSS so far {_peak_rss_mb():.0f} MB")


def _guarded(n: int, setup: str, say: _Progress, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one size; an unexpected error becomes the row's error instead of ending the benchmark."""
    start = time.monotonic()
    try:
        row = fn()
    except Exception as exc:  # the rest of the benchmark is still worth having; the row says what broke
        say(f"  [red]memory N={n} {setup} crashed[/red]: {exc!r}"[:400])
        row = _row("memory", n, setup)
        row["errors"].append(f"crashed: {exc!r}"[:600])
    row["wall_s"] = time.monotonic() - start
    return row


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _num(value: float | None) -> str:
    """A setting such as 1.25 s or 60 s, without trailing zeros."""
    return "-" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _label(row: dict[str, Any]) -> str:
    return "processes" if row["engine"] == "processes" else f"memory/{row['setup']}"


def _summary_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        prop = (row.get("propagation") or {}).get("time_s") or {}
        rounds = row.get("rounds") or {}
        join = row.get("join") or {}
        fail = row.get("failure") or {}
        det = fail.get("detection_s") or {}
        upkeep = row.get("upkeep") or {}
        prod = upkeep.get("production") or {}
        s = row.get("settings") or {}
        out.append([
            _label(row), str(row["n"]),
            f"{_fmt(prop.get('p50'), 3)} / {_fmt(prop.get('p95'), 3)}",
            "n/a" if row["engine"] == "processes" else
            f"{_fmt(rounds.get('p50'), 0)} / {_fmt(rounds.get('p95'), 1)} (<= {_fmt(rounds.get('limit'), 1)})",
            _fmt(join.get("catch_up_s"))
            + (f" (from spawn {_fmt(join['from_spawn_s'])})" if "from_spawn_s" in join else ""),
            f"{_fmt(det.get('p50'))} / {_fmt(det.get('max'))}"
            + (f" ({fail['within_1s']}/{fail['nodes']} in 1 s)" if "within_1s" in fail else "")
            + f" (TTL {_num(fail.get('ttl_s'))} s)",
            f"{_fmt(upkeep.get('wire_mb'), 3)} "
            f"(hb {_num(s.get('heartbeat_s'))} s, ae {_num(s.get('anti_entropy_s'))} s)",
            f"{_fmt(prod.get('wire_mb'), 3)} {prod.get('kind', '')}",
        ])
    return out


SUMMARY_HEADERS = ["engine/set-up", "N", "update→all p50 / p95 (s)", "rounds p50 / p95 (target)", "join catch-up (s)",
                   "failure detect p50 / max (s)", "upkeep MB/agent/h, as run", "upkeep MB/agent/h, production"]
CHANNEL_HEADERS = ["engine/set-up", "N", "records sent / wire", "heartbeats sent / wire", "sync sent / wire",
                   "wire total", "how"]


def _channel_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        prod = (row.get("upkeep") or {}).get("production")
        if not prod:
            continue
        cells = [f"{_fmt(prod['per_agent_hour_mb'][c]['sent'], 4)} / {_fmt(prod['wire_by_channel_mb'][c], 4)}"
                 for c in ("records", "heartbeats", "sync")]
        out.append([_label(row), str(row["n"]), *cells, _fmt(prod["wire_mb"], 4), prod["kind"]])
    return out


def _checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for row in rows:
        where = f"{_label(row)} N={row['n']}"
        prop = (row.get("propagation") or {}).get("time_s") or {}
        if row["engine"] == "processes" and prop.get("p95") is not None:
            target = f"every node within {TARGET_PROPAGATION_S:.0f} s (p95; stated for N={TARGET_PROPAGATION_N})"
            checks.append({"target": target,
                           "row": where, "value": prop["p95"], "limit": TARGET_PROPAGATION_S,
                           "met": prop["p95"] <= TARGET_PROPAGATION_S, "stated": row["n"] == TARGET_PROPAGATION_N})
        rounds = row.get("rounds") or {}
        if rounds.get("max") is not None:
            checks.append({"target": "<= 2 log2 N gossip rounds (max over updates)", "row": where,
                           "value": rounds["max"], "limit": rounds["limit"], "met": rounds["max"] <= rounds["limit"],
                           "stated": True})
        prod = (row.get("upkeep") or {}).get("production") or {}
        if prod.get("wire_mb") is not None:
            checks.append({"target": f"<= {TARGET_UPKEEP_MB} MB per agent per hour (production timers, {prod['kind']})",
                           "row": where, "value": prod["wire_mb"], "limit": TARGET_UPKEEP_MB,
                           "met": prod["wire_mb"] <= TARGET_UPKEEP_MB, "stated": True})
    return checks


def _notes(results: dict[str, Any]) -> list[str]:
    cfg = results["config"]
    setups = {_label(row) for row in results["rows"]}
    notes = [
        f"Production timers: heartbeat {PRODUCTION.heartbeat_interval_s:.0f} s, TTL {PRODUCTION.ttl_s:.0f} s, "
        f"anti-entropy {PRODUCTION_GOSSIP.anti_entropy_interval_s:.0f} s, target degree "
        f"{PRODUCTION_GOSSIP.target_degree}, gossipsub D={MESH_DEGREE}.",
    ]
    if "processes" in setups:
        notes += [
            f"Processes ran with heartbeat max({cfg['real_heartbeat_s']} s, N / {cfg['real_heartbeats_per_s']} s) "
            "(TTL 3 heartbeats) and the swarm's anti-entropy (2 heartbeats), see the as-run column: the as-run "
            "upkeep is MEASURED; the production upkeep is DERIVED by scaling heartbeat and sync bytes by the "
            "interval ratios. Join time counts from the joiner's 'starting' event (from spawn: includes Python "
            "start-up); failure detection = first ~0.1 s /v1/peers poll sweep showing the victim unavailable.",
            "Process upkeep counts application payload only (libp2p transport counters): 'wire' = pubsub deliveries "
            "+ sync bytes sent, a lower bound; gossipsub duplicates and control traffic, framing, Noise and TCP are "
            "not counted. py-libp2p reports no hop counts, so processes have no rounds.",
        ]
    if any(label.startswith("memory") for label in setups):
        notes.append(
            "Memory engine: virtual time (no CPU time), link latency per connection "
            f"{cfg['sim_latency_s'][0] * 1000:.0f}-{cfg['sim_latency_s'][1] * 1000:.0f} ms, no loss, "
            "production timers. "
            "Upkeep counts every transmission's payload (each pubsub hop, duplicates included; the engine's meshes "
            "are not pruned back to D, so a node may forward to up to 2D peers).")
    if "memory/full" in setups:
        notes.append(
            f"memory/full (N <= {cfg['sim_full_max']}): the real LedgerService on every node, ledgers pre-seeded with "
            "the same N signed record objects (registration not re-run); upkeep MEASURED over a quiet window.")
    if "memory/overlay" in setups:
        notes.append(
            "memory/overlay: REDUCED set-up - the pubsub overlay only, no LedgerService per node. Update rounds/time "
            "are measured with real record bytes; heartbeat upkeep is DERIVED from measured single-heartbeat floods x "
            "one per agent per interval; sync upkeep is taken from a full set-up (a steady-state sync is one "
            "digest-hash exchange, independent of N); failure detection: each node's own Ledger is fed the victim's "
            "real heartbeats and its direct-connection events, as LedgerService does; join uses 6 full peers holding all N records plus the other "
            "agents' heartbeats injected at their real rate (relaying among those agents is not simulated).")
    for row in results["rows"]:
        for note in row.get("notes", []):
            notes.append(f"{_label(row)} N={row['n']}: {note}")
        for err in row.get("errors", []):
            notes.append(f"{_label(row)} N={row['n']} ERROR {err}")
        for skip in row.get("skipped", []):
            notes.append(f"{_label(row)} N={row['n']} skipped {skip}")
    return notes


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(results: dict[str, Any]) -> str:
    checks = [[c["target"], c["row"], _fmt(c["value"], 3), _fmt(c["limit"], 3), "yes" if c["met"] else "NO"]
              for c in results["checks"]]
    return "\n\n".join([
        f"# Ledger benchmark\n\nsymphony {results['version']} ({results['code']}), {results['started_at']}, "
        f"seed {results['seed']}, "
        f"{results['machine']['cpus']} CPUs, runtime {results['runtime_s']:.0f} s, peak RSS "
        f"{results['peak_rss_mb']:.0f} MB.",
        "## Summary\n\n" + _md_table(SUMMARY_HEADERS, _summary_rows(results["rows"])),
        "## Upkeep per agent per hour at production timers, MB (sent as counted / wire)\n\n"
        + _md_table(CHANNEL_HEADERS, _channel_rows(results["rows"])),
        "## Targets\n\n" + _md_table(["target", "row", "value", "limit", "met"], checks),
        "## Notes\n\n" + "\n".join(f"- {note}" for note in results["notes"]),
    ]) + "\n"


def _print(console: Console, results: dict[str, Any]) -> None:
    for title, headers, rows in (
        ("Ledger benchmark", SUMMARY_HEADERS, _summary_rows(results["rows"])),
        ("Upkeep per agent per hour at production timers, MB (sent / wire)", CHANNEL_HEADERS,
         _channel_rows(results["rows"])),
        ("Targets", ["target", "row", "value", "limit", "met"],
         [[c["target"], c["row"], _fmt(c["value"], 3), _fmt(c["limit"], 3), "yes" if c["met"] else "[red]NO[/red]"]
          for c in results["checks"]]),
    ):
        table = Table(*headers, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for note in results["notes"]:
        console.print(f"- {note}", highlight=False)


def run_ledger_bench(
    *, real_sizes: list[int], sim_sizes: list[int], out_dir: Path, seed: int = 0, console: Console,
    config: LedgerBenchConfig | None = None,
) -> dict[str, Any]:
    """Run the ledger benchmark; print tables; write ``out_dir/ledger.json`` and ``ledger.md``.

    Args:
        real_sizes: node-process counts (``DEFAULT_REAL_SIZES``; ``[]`` skips processes).
        sim_sizes: memory-engine sizes (``DEFAULT_SIM_SIZES``; ``[]`` skips the simulator).
        out_dir: created if missing.
        seed: seeds every random choice of the benchmark (trio's scheduling stays free).
        config: knobs; ``LedgerBenchConfig.quick()`` for a short run.

    Returns:
        The results written to ``ledger.json``: ``rows`` (one per engine, set-up and N),
        ``checks`` (targets), ``notes``, ``config`` and run metadata.
    """
    cfg = config or LedgerBenchConfig()
    say = _Progress(console)
    started = time.monotonic()
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "benchmark": "ledger", "version": __version__,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": seed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_start": os.getloadavg()[0]},
        "code": _code_version(),
        "config": asdict(cfg),
        "targets": {"propagation_s": TARGET_PROPAGATION_S, "propagation_n": TARGET_PROPAGATION_N,
                    "rounds_per_log2n": TARGET_ROUNDS_PER_LOG2N, "upkeep_mb_per_agent_hour": TARGET_UPKEEP_MB,
                    "paper_upkeep_mb_per_agent_hour": PAPER_UPKEEP_MB},
        "rows": rows,
    }
    if real_sizes:
        with tempfile.TemporaryDirectory(prefix="symphony-bench-ledger-") as root:
            for n in sorted(real_sizes):
                rows.append(_run_real(n, cfg, Path(root), rng, say))
    if sim_sizes:
        _run_sims(list(sim_sizes), cfg, seed, say, rows)
    results["runtime_s"] = time.monotonic() - started
    results["peak_rss_mb"] = _peak_rss_mb()
    results["machine"]["load_average_end"] = os.getloadavg()[0]
    results["checks"] = _checks(rows)
    results["notes"] = _notes(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ledger.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / "ledger.md").write_text(_markdown(results))
    _print(console, results)
    console.print(f"wrote {out_dir / 'ledger.json'} and {out_dir / 'ledger.md'} in {results['runtime_s']:.0f} s")
    return results
