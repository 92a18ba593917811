"""Connections opened ahead of questions (``beacon.warm``, issue #19: the first-contact storm)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from symphony.ledger import GossipConfig, LedgerConfig
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.service import AskOptions
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, clock


@asynccontextmanager
async def swarm(count: int, *, warm_peers: int) -> AsyncIterator[list[AgentRuntime]]:
    """``count`` agents joining through the first, each keeping 4 connections (gossip upkeep)."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.002), rng=random.Random(3))
    specs = [SimulatedAgent(identity(n), FakeModel(f"m{n}"), AgentProfile(name=f"n{n}", tags=("math",)))
             for n in range(count)]
    async with open_simulated_agents(
        net, specs, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
        gossip_config=GossipConfig(anti_entropy_interval_s=1.0, target_degree=4), warm_peers=warm_peers,
    ) as runtimes:
        yield runtimes


async def wait_connected(node: AgentRuntime, others: set[str]) -> None:
    with trio.fail_after(10):
        while not others <= set(node.transport.peers()):
            await trio.sleep(0.05)


async def test_a_node_is_connected_to_every_planner_before_its_first_question(autojump_clock) -> None:
    """The last of 10 agents to join (gossip upkeep alone keeps 4 connections) opens connections to
    all 9 others as their records arrive, so its first question's planner round dials none. Without
    the warm-up the round dials the planners it has no connection to."""
    async with swarm(10, warm_peers=16) as nodes:
        asker = nodes[-1]
        await wait_connected(asker, {n.agent_id for n in nodes[:-1]})
        rounds: list[dict[str, Any]] = []
        asker.tasks.on_event = lambda kind, fields: rounds.append(fields) if kind == "beacon_round" else None
        trace = await asker.tasks.ask(QUESTION, AskOptions(cots=3, deadline_s=60))
    planning = [r for r in rounds if r["role"] == "planning"]
    assert trace["answer"] == "10"
    assert planning[0]["contacted"] == 8 and planning[0]["dials"] == 0
    assert asker.warm.dials >= 5 and asker.warm.idle


async def test_a_warm_up_pass_dials_at_most_its_limit_planners_first(autojump_clock) -> None:
    """One pass with a limit of 2 opens connections to at most 2 agents, and those are planners
    (every agent here is one) taken in the node's own order; it dials only the ones not yet connected."""
    async with swarm(10, warm_peers=0) as nodes:
        asker = nodes[-1]
        before = set(asker.transport.peers())
        dials = await asker.selector.warm(limit=2, roles=(frozenset({"planner"}), frozenset({"executor"})))
        after = set(asker.transport.peers())
    assert len(after - before) == dials <= 2
    assert asker.warm.dials == 0  # warm_peers=0: the runtime itself dialled nothing
