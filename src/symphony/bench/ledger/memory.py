"""Memory engine, shared pieces: virtual clock, link latency, traffic sums, watchers, failure detection."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from symphony.bench.ledger.config import (
    CHANNELS,
    MESH_DEGREE,
    PRODUCTION,
    PRODUCTION_GOSSIP,
    LedgerBenchConfig,
    Totals,
)
from symphony.bench.ledger.figures import _dist, _empty_totals
from symphony.bench.ledger.progress import _Budget
from symphony.bench.virtual import virtual_now
from symphony.ledger import Ledger, LedgerService
from symphony.protocol import Identity, LedgerRecord
from symphony.transport import LinkModel, MemoryNetwork, MemoryTransport, PeerEvent

_SIM_WIRE = "payload bytes of every transmission (each pubsub hop, duplicate copies included; each request and reply)"


def _now_ms() -> int:
    return int(virtual_now() * 1000)


def _vary_latency(
    net: MemoryNetwork,
    transport: MemoryTransport,
    rng: random.Random,
    bounds: tuple[float, float],
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
        for kind, counter in (
            ("bytes_sent", stats.bytes_sent),
            ("bytes_received", stats.bytes_received),
            ("messages_sent", stats.messages_sent),
            ("messages_received", stats.messages_received),
        ):
            row = totals[kind]
            for key, value in counter.items():
                name = CHANNELS.get(key, key)
                row[name] = row.get(name, 0) + value
    return totals


def _signed_records(idents: list[Identity], ids: list[str], addrs: list[list[str]], now: float) -> list[LedgerRecord]:
    issued = int(now * 1000)
    return [
        LedgerRecord(agent_id=a, lamport=1, issued_at=issued, name=f"agent-{k}", addrs=addrs[k]).signed_by(i)
        for k, (i, a) in enumerate(zip(idents, ids, strict=True))
    ]


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
    nursery: trio.Nursery,
    *,
    transport: MemoryTransport,
    identity: Identity,
    agent_id: str,
    ledger: Ledger,
    profile: LedgerRecord,
    rng: random.Random,
    on_event: Callable[[str, dict[str, Any]], None],
    bootstrap: list[str] | None = None,
) -> _SimNode:
    service = LedgerService(
        transport=transport,
        identity=identity,
        ledger=ledger,
        profile=profile,
        clock=virtual_now,
        rng=random.Random(rng.random()),
        config=PRODUCTION_GOSSIP,
        bootstrap=bootstrap or [],
        on_event=on_event,
    )
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


def _sim_settings(cfg: LedgerBenchConfig) -> dict[str, Any]:
    return {
        "heartbeat_s": PRODUCTION.heartbeat_interval_s,
        "ttl_s": PRODUCTION.ttl_s,
        "anti_entropy_s": PRODUCTION_GOSSIP.anti_entropy_interval_s,
        "target_degree": PRODUCTION_GOSSIP.target_degree,
        "mesh_degree": MESH_DEGREE,
        "latency_ms": [cfg.sim_latency_s[0] * 1000, cfg.sim_latency_s[1] * 1000],
        "loss": 0.0,
        "time": "virtual (trio MockClock); CPU time not included",
    }


_DETECTION_POLLS_PER_TTL = 600


def _unavailable(ledgers: list[Ledger], victim: str) -> int:
    now = virtual_now()
    return sum(not ledger.is_available(victim, now=now) for ledger in ledgers)


async def _watch_detection(
    ledgers: list[Ledger],
    victim: str,
    killed: float,
    budget: _Budget,
    *,
    unavailable_before: int,
    how: str,
) -> dict[str, Any] | None:
    """Poll every survivor's ``Ledger.is_available`` in virtual time (so whatever liveness
    rule it applies counts: heartbeat TTL or a dropped direct connection) until each
    reports the victim unavailable. None if the wall-clock budget ran out first."""
    step = PRODUCTION.ttl_s / _DETECTION_POLLS_PER_TTL
    deadline = killed + PRODUCTION.ttl_s + 1.2 * PRODUCTION.heartbeat_interval_s + 5.0
    pending = list(ledgers)
    detected: list[float] = []
    while pending and trio.current_time() <= deadline:
        now, elapsed = virtual_now(), trio.current_time() - killed
        still = [ledger for ledger in pending if ledger.is_available(victim, now=now)]
        detected += [elapsed] * (len(pending) - len(still))
        pending = still
        if budget.over():
            return None
        if pending:
            await trio.sleep(step)
    return {
        "ttl_s": PRODUCTION.ttl_s,
        "heartbeat_s": PRODUCTION.heartbeat_interval_s,
        "detection_s": _dist(detected),
        "within_1s": sum(d <= 1.0 for d in detected),
        "nodes": len(ledgers),
        "undetected": len(pending),
        "unavailable_before_kill": unavailable_before,
        "resolution_s": step,
        "how": how,
    }
