"""The systems benchmark's task shape: 3 CoTs x 5 sub-tasks on the ``timed:`` stand-in (issue #6).

``TimedModel`` answers every call with filler and ``\\boxed{0}``, so a planner would fall back to
a one-step plan. ``PlanningStandIn`` keeps its exact timing but, for decomposition calls (the
ones that pass a JSON schema), returns a fixed plan of ``steps`` sub-tasks, so every chain has the
paper's shape and the accounting knows every model call's duration exactly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from symphony.llm import Completion, TimedModel

QUESTION = ("A bakery sells muffins for 3 dollars and cookies for 2 dollars. On Monday it sold 14 muffins and "
            "23 cookies; on Tuesday twice as many muffins and 5 fewer cookies. Rent and wages cost 61 dollars a "
            "day. How many dollars of profit did the bakery make over the two days?")
STEPS = 5
COTS = 3


class PlanningStandIn:
    """A ``TimedModel`` whose decomposition replies are a valid plan of ``steps`` sub-tasks."""

    supports_json_schema = True

    def __init__(self, timed: TimedModel, *, steps: int = STEPS) -> None:
        self.timed = timed
        self.steps = steps
        self.name = timed.name
        self._plan = json.dumps({"steps": [
            {"question": f"Sub-task {i + 1}: compute the quantity of part {i + 1} of the problem."}
            for i in range(steps)]})

    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 512, temperature: float = 0.0,
                   seed: int | None = None, json_schema: dict[str, Any] | None = None) -> Completion:
        completion = await self.timed.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
        if json_schema is None:
            return completion
        return dataclasses.replace(completion, text=self._plan)

    async def aclose(self) -> None:
        await self.timed.aclose()


def stand_in(tokens_per_s: float, *, reply_tokens: int = 32, max_concurrent: int | None = 1) -> PlanningStandIn:
    """The benchmark's model: ``timed:tokens_per_s`` planning ``STEPS`` sub-tasks."""
    return PlanningStandIn(TimedModel(tokens_per_s, reply_tokens=reply_tokens, max_concurrent=max_concurrent))


__all__ = ["COTS", "QUESTION", "STEPS", "PlanningStandIn", "stand_in"]
