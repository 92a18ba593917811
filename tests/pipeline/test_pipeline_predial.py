"""Beacon rounds inside a question (issue #19): a planner's pre-dial (the executors its chain's round
will invite are dialled while its model plans, so the round finds their connections open)."""

from __future__ import annotations

from typing import Any

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
        result = await planner.tasks._serve(nodes[0].agent_id, task)
    assert result.ok and result.answer == "10"
    assert rounds[0]["contacted"] == 5 and rounds[0]["replied"] == 5
    assert rounds[0]["dials"] == 0
