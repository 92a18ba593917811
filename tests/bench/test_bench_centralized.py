"""The centralized baseline runs the same pipeline through one hub: every task message crosses two links."""

from __future__ import annotations

import random

import trio

from symphony.bench.accounting import traffic
from symphony.bench.centralized import open_centralized
from symphony.bench.workload import COTS, QUESTION, STEPS, stand_in
from symphony.node.runtime import AgentProfile, SimulatedAgent
from symphony.pipeline.service import TASK_PROTOCOL, AskOptions
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0


def clock() -> float:
    return EPOCH + trio.current_time()


async def test_every_task_message_is_relayed_by_the_coordinator(autojump_clock) -> None:
    agents = [SimulatedAgent(identity(n), stand_in(200.0, max_concurrent=None), AgentProfile(name=f"a{n}"))
              for n in range(1, 6)]
    net = MemoryNetwork(link=LinkModel(latency_s=0.005), rng=random.Random(1))
    async with open_centralized(net, identity(0), agents, clock=clock) as system:
        before = traffic([t.stats for t in system.transports()], [TASK_PROTOCOL])
        trace = await system.agents[0].tasks.ask(QUESTION, AskOptions(cots=COTS, max_steps=STEPS, deadline_s=600))
        after = traffic([t.stats for t in system.transports()], [TASK_PROTOCOL])
        hub = system.coordinator.transport.stats
    assert trace["answer"] == "0" and all(len(c["trace"]["steps"]) == STEPS for c in trace["chains"])
    requests = COTS * (1 + STEPS)  # one plan task and STEPS sub-tasks per chain
    assert after.messages - before.messages == 4 * requests  # request + reply, on two links each
    assert hub.messages_received[TASK_PROTOCOL] == 2 * requests  # every request in, every result back
    assert hub.messages_sent[TASK_PROTOCOL] == 2 * requests
    planners = {c["planner"] for c in trace["chains"]}
    assert planners == {system.coordinator.transport.peer_id}  # agents only ever talk to the hub
