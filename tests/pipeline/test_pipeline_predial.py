"""Beacon rounds inside a question (issue #19): a planner's pre-dial (the executors its chain's round
will invite are dialled while its model plans, so the round finds their connections open), and the
initiator's planner round, which waits for every reply."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import trio

from symphony.beacon.service import BEACON_PROTOCOL
from symphony.pipeline.service import AskOptions
from symphony.protocol.messages import Task
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, clock, swarm


async def test_a_planner_dials_its_likely_executors_while_its_model_plans(autojump_clock) -> None:
    """A planner that knows the executors from its ledger only (it joined through the bootstrap) has
    them connected by the time its planning call returns: the chain's round dials none. Without the
    pre-dial the round dials all three."""
    async with swarm([FakeModel(f"m{n}", delay=1.0) for n in range(5)]) as (_, nodes):
        planner = nodes[1]
        assert set(planner.transport.peers()) == {nodes[0].agent_id}
        rounds: list[dict[str, Any]] = []
        planner.tasks.on_event = lambda kind, fields: rounds.append(fields) if kind == "beacon_round" else None
        task = Task(task_id="q/c0", role="plan", question=QUESTION, answer_kind="number", max_steps=2,
                    deadline_ms=int((clock() + 60) * 1000))
        result = await planner.tasks._plan(task)
    assert result.ok and result.answer == "10"
    assert rounds[0]["contacted"] == 5 and rounds[0]["replied"] == 5
    assert rounds[0]["dials"] == 0


async def test_the_initiators_planner_round_waits_for_a_slow_planner(autojump_clock) -> None:
    """One of four remote planners answers beacons 1.5 s late: with the round quorum on (0.5; off by
    default) an executor round would leave it out, but the initiator's planner round waits for it, since
    planners past the first k are the backups of a chain whose planner dies."""
    async with swarm([FakeModel(f"m{n}") for n in range(5)]) as (_, nodes):
        for node in nodes:
            node.selector.config = replace(node.selector.config, quorum=0.5)
        slow = nodes[4]

        async def late(peer: str, payload: bytes) -> bytes:
            await trio.sleep(1.5)
            return await slow.responder.handle(peer, payload)

        slow.transport.set_handler(BEACON_PROTOCOL, late)
        rounds: list[dict[str, Any]] = []
        nodes[0].tasks.on_event = lambda kind, fields: rounds.append(fields) if kind == "beacon_round" else None
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, deadline_s=60))
    planning = [r for r in rounds if r["role"] == "planning"]
    assert trace["answer"] == "10"
    assert planning[0]["contacted"] == 5 and planning[0]["replied"] == 5 and planning[0]["unanswered"] == 0
