"""Orchestration accounting: exact byte counts and an exact overhead breakdown in virtual time."""

from __future__ import annotations

import random

import pytest
import trio

from symphony.bench.accounting import KindMeter, Overhead, mean_overhead, task_overhead, traffic
from symphony.bench.centralized import GROUPCHAT_KIND, GROUPCHAT_PROTOCOL, GroupChatCoordinator, open_centralized
from symphony.bench.workload import COTS, QUESTION, STEPS, stand_in
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.service import TASK_PROTOCOL, AskOptions
from symphony.protocol.envelope import seal
from symphony.protocol.messages import Task
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
LATENCY = 0.005


def clock() -> float:
    return EPOCH + trio.current_time()


async def test_a_sealed_task_is_counted_byte_for_byte(autojump_clock) -> None:
    """The bytes of a real signed Task envelope and its reply are counted exactly, once each."""
    net = MemoryNetwork(link=LinkModel(latency_s=LATENCY))
    payload = seal(identity(0), "task", Task(task_id="t", role="execute", question="2+2?",
                                             deadline_ms=10**13).model_dump(mode="json"), now_ms=1).to_bytes()
    reply = b"r" * 321

    async def serve(peer: str, data: bytes) -> bytes:
        assert data == payload
        return reply

    async with net.open_node(identity(0)) as a, net.open_node(identity(1)) as b:
        b.set_handler(TASK_PROTOCOL, serve)
        await a.connect(b.listen_addrs()[0])
        assert await a.request(b.peer_id, TASK_PROTOCOL, payload, timeout=1) == reply
        counted = traffic([a.stats, b.stats], [TASK_PROTOCOL])
        assert counted.bytes == len(payload) + 321 and counted.messages == 2
        assert traffic([a.stats, b.stats], ["other"]).bytes == 0


async def _full_mesh(nodes: list[AgentRuntime]) -> None:
    """Wait (virtual time) until every node is connected to every other, as a settled network of 5 with
    gossip degree 4 is. The ledger converges first (a joiner syncs with the node it meets at once), while
    the joins still form a star; a beacon to a peer not yet connected would add a dial's round trip."""
    with trio.fail_after(60):
        while any(len(n.transport.peers()) < len(nodes) - 1 for n in nodes):
            await trio.sleep(0.05)


async def test_overhead_breakdown_is_exact_in_virtual_time(autojump_clock) -> None:
    """With a 5 ms link and the timed stand-in, the non-model time is exactly the network's:
    one round trip per beacon round waited for and per remote request on the slowest chain, nothing else."""
    agents = [SimulatedAgent(identity(n), stand_in(200.0, max_concurrent=None), AgentProfile(name=f"a{n}"))
              for n in range(5)]
    net = MemoryNetwork(link=LinkModel(latency_s=LATENCY), rng=random.Random(1))
    async with open_simulated_agents(net, agents, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=60),
                                     gossip_config=GossipConfig(target_degree=4)) as nodes:
        await _full_mesh(nodes)
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=COTS, max_steps=STEPS, deadline_s=600))
    assert all(len(c["trace"]["steps"]) == STEPS for c in trace["chains"])
    ov = task_overhead(trace)
    rtt = 2 * LATENCY * 1000
    assert ov.queue == ov.query == ov.vote == 0
    assert ov.other == pytest.approx(0, abs=1e-6)
    # the initiator's round and the first step's are on the critical path; each later step's beacon
    # ran while the previous step's model did (prefetch), so waiting for it cost nothing
    assert ov.beacon == pytest.approx(2 * rtt)
    remote_hops = ov.transfer / rtt
    assert remote_hops == pytest.approx(round(remote_hops)) and 1 <= round(remote_hops) <= 1 + STEPS
    assert ov.wall == pytest.approx(ov.model + ov.beacon + ov.transfer)
    model = stand_in(200.0).timed
    assert ov.model >= (1 + STEPS) * model.latency_s(0, 32) * 1000  # plan + 5 steps, at least the replies
    assert 0 < ov.fraction < 1 and ov.fraction == pytest.approx(1 - ov.model / ov.wall)


def test_mean_overhead_is_part_wise() -> None:
    a, b = Overhead(wall=100, model=90, transfer=10), Overhead(wall=200, model=150, beacon=50)
    mean = mean_overhead([a, b])
    assert (mean.wall, mean.model, mean.transfer, mean.beacon) == (150, 120, 5, 25)
    assert mean.fraction == pytest.approx(0.2) and mean_overhead([]).fraction == 0


async def test_kind_meter_counts_a_sealed_task_and_its_result_by_kind(autojump_clock) -> None:
    """A real Task envelope and its TaskResult reply land under their kinds, byte for byte, and match the stats."""
    net = MemoryNetwork(link=LinkModel(latency_s=LATENCY))
    task = seal(identity(0), "task", Task(task_id="t", role="execute", question="2+2?",
                                          deadline_ms=10**13).model_dump(mode="json"), now_ms=1).to_bytes()
    result = seal(identity(1), "task.result", {"task_id": "t", "ok": True, "answer": "4"}, now_ms=2).to_bytes()

    async def serve(peer: str, data: bytes) -> bytes:
        return result

    async with net.open_node(identity(0)) as a, net.open_node(identity(1)) as b:
        meter = KindMeter(frozenset({TASK_PROTOCOL}))
        meter.tap(a)
        b.set_handler(TASK_PROTOCOL, serve)
        await a.connect(b.listen_addrs()[0])
        await a.request(b.peer_id, TASK_PROTOCOL, task, timeout=1)
        assert dict(meter.sizes) == {"task": len(task), "task.result": len(result)}
        assert dict(meter.counts) == {"task": 1, "task.result": 1}
        assert sum(meter.sizes.values()) == traffic([a.stats, b.stats], [TASK_PROTOCOL]).bytes
        assert meter.per_task(1)["task"] == {"bytes": len(task), "messages": 1, "bytes_per_message": len(task)}


async def test_groupchat_drained_waits_until_every_broadcast_is_counted(autojump_clock) -> None:
    """One GroupChat message goes to every member but its speaker; ``drained`` returns only once all of them
    were sent, so the bench counts the broadcast's bytes exactly (none are still in flight)."""
    net = MemoryNetwork(link=LinkModel(latency_s=LATENCY))
    agents = [SimulatedAgent(identity(n), stand_in(35.0, max_concurrent=None), AgentProfile(name=f"a{n}"))
              for n in range(1, 5)]
    async with open_centralized(net, identity(0), agents, clock=clock, groupchat=True) as system:
        hub = system.coordinator
        assert isinstance(hub, GroupChatCoordinator)
        speaker = system.agents[0].agent_id
        body = {"task": "chat", "from": speaker, "content": "x" * 100}
        size = len(seal(identity(0), GROUPCHAT_KIND, body, now_ms=int(clock() * 1000)).to_bytes())
        stats = [t.stats for t in system.transports()]
        hub.said("chat/1", speaker, "x" * 100)
        await hub.drained()
        counted = traffic(stats, [GROUPCHAT_PROTOCOL])
    assert counted.bytes == 3 * size  # 3 members besides the speaker; their acknowledgements are empty
