"""The centralized orchestrator baseline (``bench.orchestrator``; scripted test doubles)."""

from __future__ import annotations

from symphony.bench.orchestrator import orchestrate
from symphony.llm.scripted import ScriptedModel, arith_model


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
