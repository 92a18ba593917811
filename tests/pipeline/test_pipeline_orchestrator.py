"""The centralized orchestrator baseline (scripted test doubles)."""

from __future__ import annotations

from symphony.llm.scripted import ScriptedModel, arith_model
from symphony.pipeline.executor import execution_messages
from symphony.pipeline.orchestrator import orchestrate


async def test_a_failing_worker_is_retried_on_the_next() -> None:
    """A worker whose backend fails hands its step to the next worker; the chain still answers."""
    broken = ScriptedModel([], default=None, name="broken")
    good = arith_model()
    run = await orchestrate("What is 6 * 7?", coordinator=arith_model(), workers=[broken, good], kind="number")
    assert run.answer == "42"
    assert [s["worker"] for s in run.steps][:2] == ["broken", "scripted:arith"]


async def test_no_answer_when_every_worker_fails_a_step() -> None:
    """Two failed attempts at the final step end the chain with no answer."""
    silent = ScriptedModel([], default="I cannot say.", name="silent")
    run = await orchestrate("What is 6 * 7?", coordinator=arith_model(), workers=[silent], kind="number")
    assert run.answer is None
    assert [(s["ok"], s["error"]) for s in run.steps[-2:]] == [(False, "no_answer"), (False, "no_answer")]


def test_final_question_step_shows_earlier_results_as_working() -> None:
    """The anchored last step asks to solve the problem, checking the earlier steps."""
    messages = execution_messages("Q?", question="Q?", previous=[("a?", "1")], is_final=True, answer_kind="number")
    assert "Step: Solve the problem. Use the earlier steps' results, but check them" in messages[1]["content"]
    alone = execution_messages("Q?", question="Q?", previous=[], is_final=True, answer_kind="number")
    assert alone[1]["content"].endswith("Step: Solve the problem.")
