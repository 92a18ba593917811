"""LedgerService over the in-process memory engine (virtual time): push gossip,
anti-entropy after partitions, discovery beyond the bootstrap node, hostile input."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from symphony.errors import PeerUnreachable
from symphony.ledger import (
    HEARTBEAT_TOPIC,
    LEDGER_TOPIC,
    SYNC_PROTOCOL,
    GossipConfig,
    Ledger,
    LedgerConfig,
    LedgerService,
)
from symphony.protocol.envelope import seal
from symphony.protocol.messages import LedgerRecord, SyncRequest
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
CFG = LedgerConfig(heartbeat_interval_s=1.0, ttl_heartbeats=3)
GOSSIP = GossipConfig(anti_entropy_interval_s=2.0, target_degree=3)


def clock() -> float:
    return EPOCH + trio.current_time()


@dataclass
class SimNode:
    service: LedgerService
    cancel: trio.CancelScope

    @property
    def ledger(self) -> Ledger:
        return self.service.ledger

    @property
    def agent_id(self) -> str:
        return self.service.agent_id


@asynccontextmanager
async def sim(
    count: int, *, link: LinkModel = LinkModel(latency_s=0.005), ledger_config: LedgerConfig = CFG,
    gossip: GossipConfig = GOSSIP,
) -> AsyncIterator[tuple[MemoryNetwork, list[SimNode], Callable[[int, list[str]], Awaitable[SimNode]]]]:
    net = MemoryNetwork(link=link, rng=random.Random(7))
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        nodes: list[SimNode] = []

        async def start(n: int, bootstrap: list[str]) -> SimNode:
            ident = identity(n)
            transport = await stack.enter_async_context(net.open_node(ident))
            service = LedgerService(
                transport=transport, identity=ident, ledger=Ledger(ledger_config),
                profile=LedgerRecord(agent_id=ident.agent_id, lamport=0, issued_at=0, name=f"n{n}"),
                clock=clock, rng=random.Random(n), config=gossip, bootstrap=bootstrap,
            )
            scope = trio.CancelScope()

            async def run() -> None:
                with scope:
                    await service.run()

            nursery.start_soon(run)
            await trio.sleep(0)
            await service.register()
            node = SimNode(service, scope)
            nodes.append(node)
            return node

        boot = await start(0, [])
        for n in range(1, count):
            await start(n, boot.service.transport.listen_addrs())
        yield net, nodes, start
        nursery.cancel_scope.cancel()


async def until(condition, *, timeout: float = 60.0) -> float:
    """Wait (virtual time) until ``condition()``; return the virtual time it took."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.05)
    return trio.current_time() - start


def converged(nodes: list[SimNode]) -> bool:
    ids = {n.agent_id for n in nodes}
    return all(set(n.ledger.records) >= ids and all(n.ledger.is_available(a, now=clock()) for a in ids) for n in nodes)


async def test_push_gossip_converges_eight_nodes(autojump_clock) -> None:
    """Eight nodes joined through one bootstrap all hold all eight available records."""
    async with sim(8) as (_, nodes, _):
        await until(lambda: converged(nodes))


async def test_update_reaches_everyone(autojump_clock) -> None:
    async with sim(6) as (_, nodes, _):
        await until(lambda: converged(nodes))
        record = await nodes[2].service.update(tags=["math"])
        await until(lambda: all(n.ledger.records[nodes[2].agent_id].sig == record.sig for n in nodes), timeout=5)


async def test_nodes_connect_beyond_the_bootstrap(autojump_clock) -> None:
    """Peer addresses learned from records give each node direct links to others."""
    async with sim(6) as (_, nodes, _):
        await until(lambda: all(len(n.service.transport.peers()) >= GOSSIP.target_degree for n in nodes[1:]))


async def test_partition_heals_through_anti_entropy(autojump_clock) -> None:
    """Updates made on each side of a partition are on both sides after it heals."""
    async with sim(6) as (net, nodes, _):
        await until(lambda: converged(nodes))
        left, right = nodes[:3], nodes[3:]
        net.partition([n.agent_id for n in left], [n.agent_id for n in right])
        a = await left[0].service.update(tags=["left"])
        b = await right[0].service.update(tags=["right"])
        await until(lambda: all(n.ledger.records[left[0].agent_id].sig == a.sig for n in left))
        assert all(n.ledger.records[left[0].agent_id].sig != a.sig for n in right), "partition leaked"
        net.heal()
        await until(
            lambda: all(n.ledger.records[left[0].agent_id].sig == a.sig and n.ledger.records[right[0].agent_id].sig == b.sig for n in nodes)
        )


async def test_late_joiner_catches_up_by_anti_entropy(autojump_clock) -> None:
    async with sim(4) as (_, nodes, start):
        await until(lambda: converged(nodes))
        late = await start(9, nodes[1].service.transport.listen_addrs())
        await until(lambda: set(late.ledger.records) >= {n.agent_id for n in nodes})


async def test_a_joiner_and_the_network_meet_within_a_second_not_an_anti_entropy_round(autojump_clock) -> None:
    """With anti-entropy and heartbeats 10 minutes apart, a joiner still holds every record, and
    a node it never connected to holds its record, within a second (virtual): the two sides sync
    when they first meet, and the bootstrap relays the joiner's record into the mesh."""
    slow = GossipConfig(anti_entropy_interval_s=600.0, target_degree=3)
    async with sim(4, ledger_config=LedgerConfig(heartbeat_interval_s=600.0), gossip=slow) as (_, nodes, start):
        await until(lambda: all(len(n.ledger.records) == 4 for n in nodes), timeout=1800)
        late = await start(9, nodes[1].service.transport.listen_addrs())
        everyone = {n.agent_id for n in nodes} | {late.agent_id}
        took = await until(lambda: all(set(n.ledger.records) >= everyone for n in [*nodes, late]), timeout=60)
        assert took <= 1.0


async def test_crashed_node_becomes_unavailable(autojump_clock) -> None:
    async with sim(4) as (net, nodes, _):
        await until(lambda: converged(nodes))
        net.kill(nodes[3].agent_id)
        nodes[3].cancel.cancel()
        took = await until(lambda: not nodes[0].ledger.is_available(nodes[3].agent_id, now=clock()))
        assert took <= CFG.ttl_s + 2 * CFG.heartbeat_interval_s


async def test_neighbours_notice_a_crash_long_before_the_ttl(autojump_clock) -> None:
    """With rare heartbeats (60 s, TTL 180 s) a crashed node's neighbours drop it at once."""
    async with sim(3, ledger_config=LedgerConfig(heartbeat_interval_s=60.0)) as (net, nodes, _):
        await until(lambda: converged(nodes))
        net.kill(nodes[2].agent_id)
        nodes[2].cancel.cancel()
        took = await until(lambda: not nodes[0].ledger.is_available(nodes[2].agent_id, now=clock()))
        assert took < 5.0


# ---- hostile input --------------------------------------------------------------------------


async def test_forged_record_on_the_topic_is_rejected_everywhere(autojump_clock) -> None:
    """An attacker publishes a record for node 1 signed with its own key: nobody merges it."""
    async with sim(3) as (net, nodes, _):
        await until(lambda: converged(nodes))
        victim = nodes[1].agent_id
        async with net.open_node(identity(50)) as attacker:
            await attacker.connect(nodes[0].service.transport.listen_addrs()[0])
            forged = LedgerRecord(agent_id=victim, lamport=10_000, issued_at=int(clock() * 1000), name="pwned")
            forged = forged.model_copy(update={"sig": LedgerRecord(agent_id=identity(50).agent_id, lamport=1, issued_at=0).signed_by(identity(50)).sig})
            await attacker.publish(LEDGER_TOPIC, forged.to_bytes())
            await until(lambda: nodes[0].ledger.rejected["bad_signature"] >= 1, timeout=5)
        assert all(n.ledger.records[victim].name == "n1" for n in nodes)


async def test_garbage_and_oversized_gossip_is_counted_and_survived(autojump_clock) -> None:
    async with sim(2) as (net, nodes, _):
        await until(lambda: converged(nodes))
        async with net.open_node(identity(51)) as attacker:
            await attacker.connect(nodes[0].service.transport.listen_addrs()[0])
            await attacker.publish(LEDGER_TOPIC, b"\x00not json")
            await attacker.publish(LEDGER_TOPIC, b"[" * 40_000)
            await attacker.publish(HEARTBEAT_TOPIC, b'{"v": 7}')
            await until(lambda: sum(nodes[0].ledger.rejected.values()) >= 3, timeout=5)
        assert {"malformed", "too_large", "wrong_version"} <= set(nodes[0].ledger.rejected)
        record = await nodes[1].service.update(name="still-alive")
        await until(lambda: nodes[0].ledger.records[nodes[1].agent_id].sig == record.sig, timeout=5)


async def test_sync_request_replay_and_spoofed_sender_are_rejected(autojump_clock) -> None:
    async with sim(1) as (net, nodes, _):
        target = nodes[0]
        async with net.open_node(identity(52)) as attacker:
            await attacker.connect(target.service.transport.listen_addrs()[0])
            envelope = seal(identity(52), "ledger.sync", SyncRequest(digest={}).model_dump(mode="json"),
                            now_ms=int(clock() * 1000)).to_bytes()
            reply = json.loads(await attacker.request(target.agent_id, SYNC_PROTOCOL, envelope, timeout=2))
            assert target.agent_id in {r["agent_id"] for r in reply["records"]}
            spoofed = seal(identity(53), "ledger.sync", {}, now_ms=int(clock() * 1000)).to_bytes()
            for raw in (envelope, spoofed):
                with pytest.raises(PeerUnreachable):
                    await attacker.request(target.agent_id, SYNC_PROTOCOL, raw, timeout=2)
        assert target.ledger.rejected["replayed"] == 1
        assert target.ledger.rejected["bad_signature"] == 1
