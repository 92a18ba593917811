"""The centralized baseline runs the same pipeline through one hub: every task message crosses two links."""

from __future__ import annotations

import random

import trio

from symphony.bench.accounting import traffic
from symphony.bench.centralized import GROUPCHAT_PROTOCOL, open_centralized
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
        trace = await system.agents[0].tasks.ask(QUESTION, AskOptions(cots=COTS, adaptive=False, max_steps=STEPS,
                                                                      deadline_s=600))
        after = traffic([t.stats for t in system.transports()], [TASK_PROTOCOL])
        hub = system.coordinator.transport.stats
    assert trace["answer"] == "0" and all(len(c["trace"]["steps"]) == STEPS for c in trace["chains"])
    requests = COTS * (1 + STEPS)  # one plan task and STEPS sub-tasks per chain
    assert after.messages - before.messages == 4 * requests  # request + reply, on two links each
    assert hub.messages_received[TASK_PROTOCOL] == 2 * requests  # every request in, every result back
    assert hub.messages_sent[TASK_PROTOCOL] == 2 * requests
    planners = {c["planner"] for c in trace["chains"]}
    assert planners == {system.coordinator.transport.peer_id}  # agents only ever talk to the hub


async def test_groupchat_sends_every_conversation_message_to_every_other_member(autojump_clock) -> None:
    """AutoGen GroupChat: the question, each sub-task and each answer go once to each member but the speaker."""
    agents = [SimulatedAgent(identity(n), stand_in(200.0, max_concurrent=None), AgentProfile(name=f"a{n}"))
              for n in range(1, 6)]
    net = MemoryNetwork(link=LinkModel(latency_s=0.005), rng=random.Random(1))
    async with open_centralized(net, identity(0), agents, clock=clock, groupchat=True) as system:
        trace = await system.agents[0].tasks.ask(QUESTION, AskOptions(cots=COTS, adaptive=False, max_steps=STEPS,
                                                                      deadline_s=600))
        await trio.sleep(1)  # the last answers' broadcasts
        hub = system.coordinator
        members = [a.transport.stats.messages_received[GROUPCHAT_PROTOCOL] for a in system.agents]
    assert trace["answer"] == "0"
    said = COTS * (1 + 2 * STEPS + 1)  # per chain: question, each sub-task and its answer, the chain's answer
    assert sum(len(chat) for chat in hub.conversation.values()) == said
    assert hub.transport.stats.messages_sent[GROUPCHAT_PROTOCOL] == said * (len(agents) - 1)
    assert sum(members) == said * (len(agents) - 1)
    assert hub.transport.stats.bytes_received[GROUPCHAT_PROTOCOL] == 0, "acknowledgements are empty"
