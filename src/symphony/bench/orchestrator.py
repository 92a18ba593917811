"""The centralized orchestrator baseline (AutoGen/CrewAI-style), for the paper's Table 2 comparison.

One coordinator decomposes the question with the same planner prompt Symphony's planners use
(``planner.decomposition_messages``, parsed by ``planner.parse_plan``, last step anchored to the
question) and hands the sub-tasks to the pool's workers round-robin, in order, each with the same
executor prompt (``executor.execution_messages``) and the earlier results as background. No
beacon, no ledger, no network, one chain and no vote: the coordinator is a single point that sees
everything, which is what the paper contrasts Symphony with. A failed step is retried once on the
next worker; the last step's answer is the answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from symphony.llm import ChatModel, ModelError
from symphony.pipeline.executor import STEP_MAX_TOKENS, execution_messages, parse_step_answer
from symphony.pipeline import AnswerKind
from symphony.pipeline.planner import (
    PlanError,
    anchor_final_step,
    decomposition_messages,
    decomposition_schema,
    parse_plan,
    single_step_plan,
)


@dataclass
class OrchestratorRun:
    """An orchestrated answer with its accounting (``steps`` is the trace of every call)."""

    answer: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    plan_note: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls += 1


async def orchestrate(question: str, *, coordinator: ChatModel, workers: Sequence[ChatModel], kind: AnswerKind,
                      max_steps: int = 3) -> OrchestratorRun:
    """Answer ``question``: the coordinator plans, workers take the sub-tasks round-robin."""
    if not workers:
        raise ValueError("the orchestrator needs at least one worker")
    run = OrchestratorRun(answer=None)
    try:
        completion = await coordinator.chat(decomposition_messages(question, max_steps=max_steps, answer_kind=kind),
                                            max_tokens=400, json_schema=decomposition_schema(max_steps))
        run.add(completion.prompt_tokens, completion.completion_tokens)
        plan = anchor_final_step(parse_plan(completion.text, max_steps=max_steps), question)
        run.plan_note = "repaired: " + ", ".join(plan.fixes) if plan.repaired else "ok"
    except (ModelError, PlanError) as exc:
        plan, run.plan_note = single_step_plan(question), f"fallback: {str(exc)[:200]}"
    previous: list[tuple[str, str]] = []
    turn = 0
    for index, step in enumerate(plan.steps):
        final = index == len(plan.steps) - 1
        answer = None
        for _ in range(2):  # the step, then one retry on the next worker
            worker = workers[turn % len(workers)]
            turn += 1
            started = time.perf_counter()
            try:
                out = await worker.chat(execution_messages(step, question=question, previous=previous,
                                                           is_final=final, answer_kind=kind),
                                        max_tokens=STEP_MAX_TOKENS)
            except ModelError as exc:
                run.steps.append({"question": step, "worker": worker.name, "ok": False, "error": str(exc)[:200]})
                continue
            run.add(out.prompt_tokens, out.completion_tokens)
            parsed = parse_step_answer(out.text, kind=kind, is_final=final, truncated=out.truncated)
            run.steps.append({"question": step, "worker": worker.name, "ok": parsed.valid, "answer": parsed.answer,
                              "error": "" if parsed.valid else parsed.reason,
                              "latency_ms": round((time.perf_counter() - started) * 1000, 1)})
            if parsed.valid:
                answer = parsed.answer
                break
        if answer is None:
            return run
        previous.append((step, answer))
    run.answer = previous[-1][1]
    return run


__all__ = ["OrchestratorRun", "orchestrate"]
