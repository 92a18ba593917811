"""The conversation before a question (``AskOptions.context``) reaches the planner's and every
executor's prompt, and the client's temperature the executors' model calls."""

from __future__ import annotations

from symphony.pipeline.service import AskOptions
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, swarm


class Recording(FakeModel):
    """Plans and answers like ``FakeModel``; keeps every system prompt and temperature it was given."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[tuple[bool, str, float]] = []  # (a planning call, system prompt, temperature)

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        self.seen.append((json_schema is not None, messages[0]["content"], temperature))
        return await super().chat(messages, max_tokens=max_tokens, json_schema=json_schema)


async def test_context_and_temperature_reach_planner_and_executors(autojump_clock) -> None:
    models = [Recording(f"m{n}") for n in range(3)]
    context = "System: Answer briefly.\nUser: Remember that each box holds 4 apples."
    async with swarm(models) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=60, context=context,
                                                              temperature=0.7))
    assert trace["answer"] == "10"
    calls = [call for model in models for call in model.seen]
    plans = [c for c in calls if c[0]]
    steps = [c for c in calls if not c[0]]
    assert len(plans) == 1 and len(steps) == 2
    assert all("Remember that each box holds 4 apples." in system for _, system, _ in calls)
    assert [t for _, _, t in steps] == [0.7, 0.7], "the executors sample at the client's temperature"
