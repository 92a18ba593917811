"""Sharded liveness on the memory engine (virtual time): heartbeats go to the shard's gateway only,
gateways publish availability changes, a failed gateway's role moves, hostile withdrawals are refused."""

from __future__ import annotations

import random

import pytest
import trio

from symphony.bench.accounting import traffic
from symphony.errors import PeerUnreachable
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.ledger.gossip import HEARTBEAT_TOPIC, LIVENESS_PROTOCOL, SHARD_KIND, SHARD_TOPIC
from symphony.ledger.shard import ShardLiveness, gateway, shard_of
from symphony.node.runtime import AgentProfile, SimulatedAgent, open_simulated_agents
from symphony.protocol.envelope import seal
from symphony.protocol.messages import Heartbeat
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
SHARDS = 3
LEDGER = LedgerConfig(heartbeat_interval_s=1.0, ttl_heartbeats=3)
GOSSIP = GossipConfig(anti_entropy_interval_s=30.0, target_degree=3, shards=SHARDS)


def clock() -> float:
    return EPOCH + trio.current_time()


def agents(n: int) -> list[SimulatedAgent]:
    return [SimulatedAgent(identity(i), None, AgentProfile(name=f"a{i}")) for i in range(n)]


def network() -> MemoryNetwork:
    return MemoryNetwork(link=LinkModel(latency_s=0.005), rng=random.Random(5))


async def until(condition, timeout: float = 60.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.1)


async def test_steady_state_liveness_is_one_request_per_agent_per_interval(autojump_clock) -> None:
    async with open_simulated_agents(network(), agents(12), clock=clock, ledger_config=LEDGER,
                                     gossip_config=GOSSIP, converge_timeout_s=120) as nodes:
        await trio.sleep(10)  # let the join-time deltas settle
        stats = [n.transport.stats for n in nodes]
        before = {ch: traffic(stats, [ch]) for ch in (HEARTBEAT_TOPIC, SHARD_TOPIC, LIVENESS_PROTOCOL)}
        await trio.sleep(30)
        after = {ch: traffic(stats, [ch]) for ch in before}
        gateways = {n.gossip.gateway() for n in nodes}
        assert all(len(n.ledger.query(now=clock())) == 12 for n in nodes)
    assert after[HEARTBEAT_TOPIC].messages == 0  # nothing is flooded
    assert after[SHARD_TOPIC].messages == before[SHARD_TOPIC].messages  # no change, no delta
    assert len(gateways) == len({shard_of(n.agent_id, SHARDS) for n in nodes})
    sent = after[LIVENESS_PROTOCOL].messages - before[LIVENESS_PROTOCOL].messages
    members = 12 - SHARDS
    assert 2 * members * 27 <= sent <= 2 * members * 34  # request + reply, ~1 per second each (10% jitter)


async def test_a_failed_gateway_is_withdrawn_and_its_role_moves(autojump_clock) -> None:
    net = network()
    async with open_simulated_agents(net, agents(12), clock=clock, ledger_config=LEDGER,
                                     gossip_config=GOSSIP, converge_timeout_s=120) as nodes:
        await trio.sleep(10)
        victim = nodes[5].gossip.gateway()
        shard = shard_of(victim, SHARDS)
        net.kill(victim)
        survivors = [n for n in nodes if n.agent_id != victim]
        await until(lambda: not any(n.ledger.is_available(victim, now=clock()) for n in survivors))
        heir = gateway(shard, SHARDS, [n.agent_id for n in survivors])
        same_shard = [n for n in survivors if shard_of(n.agent_id, SHARDS) == shard]
        await until(lambda: all(n.gossip.gateway() == heir for n in same_shard))
        assert all(len(n.ledger.query(now=clock())) == 11 for n in survivors)


async def test_only_the_gateway_may_withdraw_an_agent(autojump_clock) -> None:
    async with open_simulated_agents(network(), agents(12), clock=clock, ledger_config=LEDGER,
                                     gossip_config=GOSSIP, converge_timeout_s=120) as nodes:
        await trio.sleep(10)
        liar = next(n for n in nodes if n.gossip.gateway() != n.agent_id)
        shard = shard_of(liar.agent_id, SHARDS)
        victim = next(n.agent_id for n in nodes if n is not liar and shard_of(n.agent_id, SHARDS) == shard
                      and n.gossip.gateway() != n.agent_id)  # withdrawing a non-gateway leaves the gateway as is
        body = ShardLiveness(shard=shard, shards=SHARDS, down=[victim]).model_dump(mode="json")
        await liar.transport.publish(SHARD_TOPIC, seal(liar.identity, SHARD_KIND, body,
                                                       now_ms=int(clock() * 1000)).to_bytes())
        others = [n for n in nodes if n is not liar and n.agent_id != victim]
        await until(lambda: all(n.ledger.rejected["not_gateway"] == 1 for n in others))
        assert all(n.ledger.is_available(victim, now=clock()) for n in others)


async def test_a_heartbeat_must_come_from_its_author_in_the_same_shard(autojump_clock) -> None:
    """A gateway refuses a heartbeat relayed for someone else, or from another shard, and counts it."""
    async with open_simulated_agents(network(), agents(12), clock=clock, ledger_config=LEDGER,
                                     gossip_config=GOSSIP, converge_timeout_s=120) as nodes:
        await trio.sleep(10)
        gw = next(n for n in nodes if n.gossip.gateway() == n.agent_id)
        shard = shard_of(gw.agent_id, SHARDS)
        member = next(n for n in nodes if n is not gw and shard_of(n.agent_id, SHARDS) == shard)
        # two different outsiders: the first offence already gets its sender refused unread (node.defences)
        relay, outsider = [n for n in nodes if shard_of(n.agent_id, SHARDS) != shard][:2]
        forged = Heartbeat(agent_id=member.agent_id, lamport=1, ts=int(clock() * 1000)).signed_by(member.identity)
        own = Heartbeat(agent_id=outsider.agent_id, lamport=1, ts=int(clock() * 1000)).signed_by(outsider.identity)
        for sender, heartbeat in ((relay, forged), (outsider, own)):
            await sender.transport.connect(gw.transport.listen_addrs()[0])
            with pytest.raises(PeerUnreachable):
                await sender.transport.request(gw.agent_id, LIVENESS_PROTOCOL, heartbeat.to_bytes(), timeout=5)
        assert gw.ledger.rejected["malformed"] == 2
