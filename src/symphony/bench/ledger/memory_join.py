"""Memory engine, reduced join: a joiner catching up from 6 full peers amid N agents' heartbeats."""

from __future__ import annotations

import random
import time
from contextlib import AsyncExitStack
from typing import Any

import trio
import trio.lowlevel

from symphony.bench.ledger.config import MB, MESH_DEGREE, PRODUCTION, PRODUCTION_GOSSIP, LedgerBenchConfig
from symphony.bench.ledger.memory import (
    _advance,
    _CatchUp,
    _now_ms,
    _signed_records,
    _start_service,
    _vary_latency,
    _wait,
)
from symphony.bench.ledger.progress import _Budget, _Progress
from symphony.bench.ledger.report import _fmt
from symphony.bench.virtual import virtual_now
from symphony.ledger import HEARTBEAT_TOPIC, SYNC_PROTOCOL, Ledger
from symphony.protocol import Heartbeat, Identity, LedgerRecord
from symphony.transport import LinkModel, MemoryNetwork


async def _sim_join_reduced(
    n: int, cfg: LedgerBenchConfig, seed: int, budget: _Budget, say: _Progress
) -> dict[str, Any] | None:
    """Join catch-up with 6 full peers holding all N records and the other agents' heartbeats
    injected at their real aggregate rate (see the package docstring)."""
    if budget.over():
        return None
    rng = random.Random(seed)
    k = min(PRODUCTION_GOSSIP.target_degree, n)
    net = MemoryNetwork(
        link=LinkModel(latency_s=cfg.sim_latency_s[0]), rng=random.Random(rng.random()), mesh_degree=MESH_DEGREE
    )
    assigned: set[tuple[str, str]] = set()
    idents = [Identity(rng.randbytes(32)) for _ in range(n)]
    ids = [i.agent_id for i in idents]
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        try:
            peer_transports = [await stack.enter_async_context(net.open_node(idents[i])) for i in range(k)]
            for t in peer_transports:
                _vary_latency(net, t, rng, cfg.sim_latency_s, assigned)
            now = virtual_now()
            addrs = [t.listen_addrs() for t in peer_transports]
            addrs += [[f"/memory/{1_000_000 + i}/p2p/{ids[i]}"] for i in range(k, n)]  # agents not simulated here
            records = _signed_records(idents, ids, addrs, now)
            peers = []
            for i in range(k):
                ledger = Ledger(PRODUCTION)
                for record in records:
                    ledger.merge(record, now=now)
                peers.append(
                    _start_service(
                        nursery,
                        transport=peer_transports[i],
                        identity=idents[i],
                        agent_id=ids[i],
                        ledger=ledger,
                        profile=records[i],
                        rng=rng,
                        on_event=lambda kind, fields: None,
                        bootstrap=[t.listen_addrs()[0] for t in peer_transports[:i]],
                    )
                )
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
                nursery,
                transport=transport,
                identity=identity,
                agent_id=identity.agent_id,
                ledger=Ledger(PRODUCTION),
                profile=LedgerRecord(agent_id=identity.agent_id, lamport=0, issued_at=0, name="joiner"),
                rng=rng,
                on_event=catch.on_event,
                bootstrap=[peer_transports[0].listen_addrs()[0]],
            )
            await trio.lowlevel.checkpoint()
            await joiner.service.register()
            ok = await _wait(catch.done, timeout=cfg.sim_join_timeout_s, budget=budget)
            stats = transport.stats
            catch_up = None if catch.done_at is None else catch.done_at - start
            result = {
                "catch_up_s": catch_up,
                "complete": ok,
                "records": n,
                "missing": len(catch.missing),
                "full_peers": k,
                "sync_bytes_received": stats.bytes_received[SYNC_PROTOCOL],
                "sync_requests": stats.messages_sent[SYNC_PROTOCOL],
                "max_records_per_reply": PRODUCTION_GOSSIP.max_records_per_reply,
                "peer_digest_hash_ms": digest_ms,
                "simulator_wall_s": time.monotonic() - wall,
                "how": (
                    f"reduced: joiner + {k} full LedgerService peers holding all {n} records; the other {n - k} "
                    "agents exist only as records and as heartbeats injected at their real aggregate rate"
                ),
            }
            say(
                f"  overlay N={n}: join catch-up {_fmt(catch_up, 3)} virtual s "
                f"({stats.messages_sent[SYNC_PROTOCOL]} sync requests, "
                f"{stats.bytes_received[SYNC_PROTOCOL] / MB:.2f} MB)"
            )
            return result
        finally:
            nursery.cancel_scope.cancel()
