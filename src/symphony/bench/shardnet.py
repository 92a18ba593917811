"""A simulated network for the sharded ledger and the gateway beacon (issue #6 item 3; architecture §9).

N agents on the memory engine in virtual time (``MockClock``), each with its own signed record, its
own ``BeaconResponder``, ``RelayResponder`` and ``Gateway`` handlers and its own replay guard, run
the real protocol code twice on the same population and the same requirements:

- **flooded**: the initiator holds every record (today's ledger) and runs ``BeaconSelector``;
- **sharded**: L = ceil(sqrt N) shards; the initiator holds its own shard's records and one signed
  summary per other shard (accepted through ``SummaryBook.offer``), beacons its own shard directly
  and the others through ``GatewayFanout`` (``sharded_select``, what ``BeaconSelector`` does once
  it takes the hook).

Shortcut: the members of a shard share one ``Ledger`` object for their shard (after convergence
every member's replica is the same; building N replicas of N/L records would be O(N^1.5) setup).
Per-node state is measured from real objects: two sample nodes merge all N records into a
``Ledger(keeps=...)`` and hold a ``SummaryBook``; their stored records and summaries are counted in
wire bytes. Population: agents declare a specialty (a task type) and a model family; their skill
EMAs favour the specialty; requirements are sub-task texts of a random task type.

Assembly: each agent's beacon side is built with the constructors ``AgentRuntime`` uses for a
sharded node (``BeaconResponder``, ``RelayResponder`` and ``Gateway`` sharing one replay guard,
``GatewayFanout`` for the initiator), but not through ``AgentRuntime`` itself, for two reasons:
the population's skill EMAs are drawn per agent, while the runtime starts every agent at the
prior; and a runtime per agent would also build a ledger service, a task service and a shard
summary service per agent (10,000 of each) that this bench never runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import trio

from symphony.beacon import (
    BEACON_PROTOCOL,
    GATEWAY_PROTOCOL,
    RELAY_PROTOCOL,
    BeaconResponder,
    BeaconSelector,
    FanoutConfig,
    Gateway,
    GatewayFanout,
    RelayResponder,
)
from symphony.beacon.gateway import beacon_body
from symphony.bench.virtual import EPOCH, run_virtual, virtual_now
from symphony.capability import (
    TASK_TYPES,
    HashingTagEncoder,
    SkillScores,
    capability_vector,
    encode_hardware,
    requirement_vector,
)
from symphony.errors import PeerError, TransportError
from symphony.ledger import Ledger, LedgerConfig, QueryFilter, SummaryBook, keeps_shard, shard_of
from symphony.ledger.shard import DEFAULT_CONES, gateways, issue_summary
from symphony.ledger.store import unit_cosine, unit_vector
from symphony.protocol import (
    BeaconResponse,
    Hardware,
    Identity,
    LedgerRecord,
    ReplayGuard,
    encode_vector,
    open_body,
    seal,
)
from symphony.transport import LinkModel, MemoryNetwork, MemoryTransport

FAMILIES = ("qwen", "llama", "mistral", "phi", "gemma", "deepseek")
HARDWARE = (
    Hardware(memory_gb=8, accelerator="cpu", tokens_per_s=15),
    Hardware(memory_gb=16, accelerator="cuda", tokens_per_s=60),
    Hardware(memory_gb=24, accelerator="metal", tokens_per_s=40),
    Hardware(memory_gb=80, accelerator="cuda", tokens_per_s=200),
)
LONG_TTL = LedgerConfig(heartbeat_interval_s=3600.0)  # no heartbeats in this bench: records stay available
CHANNELS = (BEACON_PROTOCOL, GATEWAY_PROTOCOL, RELAY_PROTOCOL)


@dataclass(frozen=True)
class ShardNetConfig:
    sizes: tuple[int, ...] = (100, 1000, 10_000)
    beacons: int = 20
    top_l: int = 8
    k: int = 5
    cones: int = DEFAULT_CONES
    caps: tuple[int, ...] = (8, 16, 0)  # gateways asked at most per beacon; 0: no cap (the bound alone stops)
    per_gateway_top_l: int = 4
    wave: int = 4  # gateways asked per wave after the first; 0: all the cap allows at once (fewest round trips)
    latency_ms: float = 10.0
    deadline_s: float = 2.0
    seed: int = 0


@dataclass
class _Node:
    identity: Identity
    transport: MemoryTransport
    vector: list[float]
    guard: ReplayGuard = field(default_factory=ReplayGuard)


def _agent_vector(rng: random.Random, encoder: HashingTagEncoder) -> tuple[list[float], list[str], Hardware]:
    specialty = rng.choice(TASK_TYPES)
    tags = [specialty, rng.choice(TASK_TYPES), f"{rng.choice(FAMILIES)}-{rng.choice((1, 3, 7, 14, 32))}b"]
    skills = [min(1.0, max(0.0, 0.5 + rng.uniform(-0.1, 0.1))) for _ in TASK_TYPES]
    skills[TASK_TYPES.index(specialty)] = rng.uniform(0.6, 0.95)
    hw = rng.choice(HARDWARE)
    vec = capability_vector(
        tags=encoder.encode(" ".join(tags)),
        skills=SkillScores(tuple(skills)),
        hardware=encode_hardware(memory_gb=hw.memory_gb, accelerator=hw.accelerator, tokens_per_s=hw.tokens_per_s),
    )
    return list(vec), tags, hw


def requirements(count: int, seed: int) -> list[list[float]]:
    """``count`` sub-task requirement vectors of random task types (the beacons of the bench)."""
    rng, encoder = random.Random(f"req/{seed}"), HashingTagEncoder()
    out = []
    for _ in range(count):
        kind = rng.choice(TASK_TYPES)
        text = f"{kind} sub-task: solve the {kind} part using {rng.choice(TASK_TYPES)} with {rng.choice(FAMILIES)}"
        out.append(list(requirement_vector(text, kind, encoder)))
    return out


def _messages(nodes: Sequence[_Node]) -> int:
    return sum(n.transport.stats.messages_sent[ch] for n in nodes for ch in CHANNELS)


def _bytes(nodes: Sequence[_Node]) -> int:
    return sum(n.transport.stats.bytes_sent[ch] for n in nodes for ch in CHANNELS)


async def sharded_select(
    node: _Node,
    ledger: Ledger,
    fanout: GatewayFanout,
    requirement: list[float],
    *,
    top_l: int,
    deadline_s: float,
) -> dict[str, float]:
    """One sharded BEACONSELECT round: own shard direct, other shards via gateways, one envelope.

    Returns agent -> score (claims capped at the published score, as ``BeaconSelector`` does)."""
    now_ms = int(virtual_now() * 1000)
    beacon = beacon_body([requirement], deadline_ms=now_ms + int(deadline_s * 1000))
    envelope = seal(node.identity, "beacon", beacon.model_dump(mode="json"), now_ms=now_ms)
    rows = ledger.query(QueryFilter(), requirement=requirement, limit=top_l, now=virtual_now())
    scores: dict[str, float] = {}
    guard = ReplayGuard()

    async def direct(record: LedgerRecord, published: float) -> None:
        try:
            raw = await node.transport.request(
                record.agent_id, BEACON_PROTOCOL, envelope.to_bytes(), timeout=deadline_s
            )
            _, reply = open_body(
                raw,
                BeaconResponse,
                sender=record.agent_id,
                kind="beacon.reply",
                guard=guard,
                now_ms=int(virtual_now() * 1000),
            )
        except (PeerError, TransportError):
            return
        if reply.nonce == envelope.nonce:
            scores[record.agent_id] = min(reply.scores[0], published + 0.05)

    async def remote() -> None:
        for v in await fanout.collect([requirement], envelope, top_l=top_l, deadline_s=deadline_s):
            scores[v.agent_id] = min(v.scores[0], v.published([requirement])[0] + 0.05)

    async with anyio.create_task_group() as tg:
        for record, published in rows:
            if record.agent_id == node.identity.agent_id:
                scores[record.agent_id] = published
            else:
                tg.start_soon(direct, record, published)
        tg.start_soon(remote)
    return scores


def _recall(found: dict[str, float], truth: list[tuple[float, str]], k: int) -> tuple[bool, float]:
    """(the best found is the true best or tied with it; fraction of the true top-k among the k best found)."""
    true_score = {a: score for score, a in truth}
    top_found = sorted(found, key=lambda a: (-found[a], a))[:k]
    best_ok = bool(top_found) and true_score[top_found[0]] >= truth[0][0] - 1e-9
    true_top = {a for _, a in truth[:k]}
    return best_ok, len(true_top.intersection(top_found)) / k


def _state_sample(
    records: list[LedgerRecord], raw_summaries: dict[int, bytes], node: _Node, shards: int
) -> dict[str, Any]:
    """Build one node's sharded replica from every record and every summary, and weigh it."""
    shard = shard_of(node.identity.agent_id, shards)
    ledger = Ledger(LONG_TTL, keeps=keeps_shard(shard, shards))
    for record in records:
        ledger.merge(record, now=virtual_now())
    book = SummaryBook(shards=shards, max_age_s=1e9)
    for s, raw in raw_summaries.items():
        if s != shard:
            book.offer(raw, now=virtual_now())
    kb = (sum(len(r.to_bytes()) for r in ledger.records.values()) + book.nbytes()) / 1000
    return {
        "records": len(ledger.records),
        "foreign_dropped": ledger.foreign,
        "summaries": len(book.summaries),
        "state_kb": round(kb, 1),
    }


async def _run_size(n: int, cfg: ShardNetConfig) -> dict[str, Any]:
    started = time.perf_counter()
    rng, encoder = random.Random(cfg.seed * 7919 + n), HashingTagEncoder()
    shards = max(2, math.isqrt(n - 1) + 1)
    net = MemoryNetwork(link=LinkModel(latency_s=cfg.latency_ms / 1000), rng=random.Random(cfg.seed))
    async with contextlib.AsyncExitStack() as stack:
        nodes: list[_Node] = []
        for i in range(n):
            identity = Identity(hashlib.sha256(f"shardnet/{cfg.seed}/{n}/{i}".encode()).digest())
            transport = await stack.enter_async_context(net.open_node(identity))
            nodes.append(_Node(identity, transport, _agent_vector(rng, encoder)[0]))
        records = [
            LedgerRecord(
                agent_id=nd.identity.agent_id,
                lamport=1,
                capability=encode_vector(nd.vector),
                addrs=nd.transport.listen_addrs(),
                issued_at=int(EPOCH * 1000),
            ).signed_by(nd.identity)
            for nd in nodes
        ]
        shard_ledgers = [Ledger(LONG_TTL, keeps=keeps_shard(s, shards)) for s in range(shards)]
        full = Ledger(LONG_TTL)
        for record in records:
            full.merge(record, now=virtual_now())
            shard_ledgers[shard_of(record.agent_id, shards)].merge(record, now=virtual_now())
        by_id = {nd.identity.agent_id: nd for nd in nodes}
        table = gateways(shards, by_id)
        raw_summaries = {
            s: issue_summary(
                by_id[g].identity,
                shard_ledgers[s].records.values(),
                shard=s,
                shards=shards,
                now_ms=int(virtual_now() * 1000),
                cones=cfg.cones,
            ).to_bytes()
            for s, g in table.items()
        }
        for nd in nodes:
            _serve(nd, shard_ledgers[shard_of(nd.identity.agent_id, shards)], shards)
        async with anyio.create_task_group() as tg:  # members keep a connection to their gateway
            for nd in nodes:
                g = table[shard_of(nd.identity.agent_id, shards)]
                if g != nd.identity.agent_id:
                    tg.start_soon(nd.transport.connect, by_id[g].transport.listen_addrs()[0])
        setup_s = time.perf_counter() - started
        result = await _beacons(nodes, raw_summaries, shard_ledgers, full, shards, cfg, rng)
    flooded_kb = sum(len(r.to_bytes()) for r in records) / 1000
    samples = [_state_sample(records, raw_summaries, nodes[i], shards) for i in (0, n // 2)]
    summary_b = [len(b) for b in raw_summaries.values()]
    return {
        "n": n,
        "shards": shards,
        "cones": cfg.cones,
        "flooded_records": n,
        "flooded_state_kb": round(flooded_kb, 1),
        "sharded_samples": samples,
        "summary_bytes_mean": round(sum(summary_b) / len(summary_b)),
        **result,
        "setup_s": round(setup_s, 1),
        "cpu_s": round(time.perf_counter() - started, 1),
    }


def _serve(node: _Node, shard_ledger: Ledger, shards: int) -> None:
    vector = node.vector
    responder = BeaconResponder(
        identity=node.identity, private_vector=lambda: vector, qos=lambda: (0, 0.0), clock=virtual_now, guard=node.guard
    )
    relay = RelayResponder(responder=responder, identity=node.identity, clock=virtual_now, guard=node.guard)
    gateway = Gateway(
        transport=node.transport, identity=node.identity, ledger=shard_ledger, shards=shards, relay=relay, clock=virtual_now
    )
    node.transport.set_handler(BEACON_PROTOCOL, responder.handle)
    node.transport.set_handler(RELAY_PROTOCOL, relay.handle)
    node.transport.set_handler(GATEWAY_PROTOCOL, gateway.handle)


async def _beacons(
    nodes: list[_Node],
    raw_summaries: dict[int, bytes],
    shard_ledgers: list[Ledger],
    full: Ledger,
    shards: int,
    cfg: ShardNetConfig,
    rng: random.Random,
) -> dict[str, Any]:
    """Run ``cfg.beacons`` rounds from random initiators, flooded and sharded under each cap in
    ``cfg.caps``, on the same requirement; count messages and bytes, check recall."""
    units = [(nd.identity.agent_id, unit_vector(nd.vector)) for nd in nodes]  # private vectors: what replies say
    modes = ["flooded", *(f"cap{c}" for c in cfg.caps)]
    rows: dict[str, dict[str, list[Any]]] = {
        m: {"msgs": [], "kb": [], "best": [], "topk": [], "gateways": [], "s": []} for m in modes
    }
    rejected: Counter[str] = Counter()
    for requirement in requirements(cfg.beacons, cfg.seed):
        node = rng.choice(nodes)
        unit_r = unit_vector(requirement)
        truth = sorted(((unit_cosine(u, unit_r), a) for a, u in units), key=lambda p: (-p[0], p[1]))
        shard = shard_of(node.identity.agent_id, shards)
        book = SummaryBook(shards=shards, max_age_s=1e9)
        for s, raw in raw_summaries.items():
            if s != shard:
                book.offer(raw, now=virtual_now())
        for mode in modes:
            before, bytes_before, t0 = _messages(nodes), _bytes(nodes), trio.current_time()
            if mode == "flooded":
                found, asked = await _flooded(node, full, requirement, cfg), 0
            else:
                cap = int(mode[3:]) or shards
                fanout = GatewayFanout(
                    transport=node.transport,
                    identity=node.identity,
                    book=book,
                    clock=virtual_now,
                    config=FanoutConfig(
                        max_gateways=cap, want=cfg.k, wave=cfg.wave or cap, per_gateway_top_l=cfg.per_gateway_top_l
                    ),
                )
                found = await sharded_select(
                    node, shard_ledgers[shard], fanout, requirement, top_l=cfg.top_l, deadline_s=cfg.deadline_s
                )
                asked = fanout.stats.gateways_asked
                rejected.update(fanout.stats.rejected)
            row = rows[mode]
            row["s"].append(trio.current_time() - t0)
            row["msgs"].append(_messages(nodes) - before)
            row["kb"].append((_bytes(nodes) - bytes_before) / 1000)
            row["gateways"].append(asked)
            best, topk = _recall(found, truth, cfg.k)
            row["best"].append(best)
            row["topk"].append(topk)
    return {
        "beacons": cfg.beacons,
        "fanout_rejected": dict(rejected),
        "modes": {
            m: {
                "msgs_per_beacon": _median(r["msgs"]),
                "msgs_max": max(r["msgs"]),
                "kb_per_beacon": round(_median(r["kb"]), 1),
                "gateways_asked_median": _median(r["gateways"]),
                "gateways_asked_max": max(r["gateways"]),
                "best_found": sum(r["best"]),
                "topk_recall": round(sum(r["topk"]) / cfg.beacons, 3),
                "round_ms": round(1000 * _median(r["s"]), 1),
            }
            for m, r in rows.items()
        },
    }


async def _flooded(node: _Node, full: Ledger, requirement: list[float], cfg: ShardNetConfig) -> dict[str, float]:
    """Today's BEACONSELECT on a full replica: ``BeaconSelector`` itself."""
    responder = BeaconResponder(
        identity=node.identity, private_vector=lambda: node.vector, qos=lambda: (0, 0.0), clock=virtual_now, guard=node.guard
    )
    selector = BeaconSelector(
        transport=node.transport, identity=node.identity, ledger=full, responder=responder, clock=virtual_now
    )
    outcome = await selector.select(requirement, top_l=cfg.top_l, deadline_s=cfg.deadline_s)
    return {c.agent_id: c.score for c in outcome.selection.ordered}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_shardnet(cfg: ShardNetConfig) -> list[dict[str, Any]]:
    """Every size in ``cfg.sizes``, each in its own virtual-time trio run."""
    return [run_virtual(_run_size, n, cfg) for n in cfg.sizes]


def markdown(rows: list[dict[str, Any]]) -> str:
    """Two tables: per-node ledger state, and per-beacon messages and recall, flooded vs sharded."""
    lines = [
        (
            "| N | L | records held: flooded / sharded (+ summaries) | ledger state kB per node: flooded / sharded "
            "| summary bytes |"
        ),
        "|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["sharded_samples"][0]
        lines.append(
            f"| {r['n']:,} | {r['shards']} | {r['flooded_records']:,} / {s['records']} (+ {s['summaries']}) "
            f"| {r['flooded_state_kb']:,} / {s['state_kb']:,} | {r['summary_bytes_mean']:,} |"
        )
    lines += [
        "",
        (
            "| N | L | beacon | msgs per beacon (median / max) | kB per beacon | gateways asked (median / max) "
            "| best found | top-k recall | round ms (virtual) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for mode, m in r["modes"].items():
            name = (
                "flooded" if mode == "flooded" else f"sharded, cap {mode[3:]}" if mode != "cap0" else "sharded, no cap"
            )
            lines.append(
                f"| {r['n']:,} | {r['shards']} | {name} | {m['msgs_per_beacon']:g} / {m['msgs_max']} "
                f"| {m['kb_per_beacon']} | {m['gateways_asked_median']:g} / {m['gateways_asked_max']} "
                f"| {m['best_found']} / {r['beacons']} | {m['topk_recall']:.2f} | {m['round_ms']:g} |"
            )
    return "\n".join(lines) + "\n"


__all__ = ["ShardNetConfig", "markdown", "requirements", "run_shardnet", "sharded_select"]
