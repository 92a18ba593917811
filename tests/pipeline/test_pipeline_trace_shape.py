"""The trace a question returns, pinned: key order and value types of every entry, from real runs
on the memory network. The golden file was written from the code before the typed traces and
the chain driver existed, so these tests prove the refactor kept the wire shape (the API's trace,
the benches' input, the events) byte-compatible.

Regenerate only on a deliberate wire change: ``SYMPHONY_WRITE_GOLDEN=1 pytest tests/pipeline/test_pipeline_trace_shape.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from symphony.llm.base import Completion
from symphony.pipeline.service import AskOptions, TaskFailed
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, swarm

GOLDEN = Path(__file__).with_name("trace_shape.json")


def shape(value: Any) -> Any:
    """``value`` with every scalar replaced by its type name; dicts as ordered [key, shape] pairs."""
    if isinstance(value, dict):
        return [[key, shape(v)] for key, v in value.items()]
    if isinstance(value, list | tuple):
        return [shape(v) for v in value]
    return "null" if value is None else type(value).__name__


def _check(name: str, observed: Any) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("SYMPHONY_WRITE_GOLDEN"):
        golden[name] = observed
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    assert json.dumps(observed) == json.dumps(golden[name])


def _events(nodes: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    for node in nodes:
        node.tasks.on_event = lambda kind, fields: seen.append((kind, fields))
    return seen


def _event_shapes(seen: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Each kind of event once, with the shapes its fields take (sorted: events interleave)."""
    return sorted({json.dumps([kind, shape(fields)]) for kind, fields in seen})


class Garbled(FakeModel):
    """Writes no plan and no boxed answer: the planner falls back to one step, every executor fails."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        return Completion(text="I am not sure.", prompt_tokens=5, completion_tokens=5, latency_s=0.1, model=self.name)


async def test_trace_of_agreeing_chains_keeps_its_shape(autojump_clock) -> None:
    """The trace and events of a plain question: two chains agree, so (adaptive chains) no third starts."""
    async with swarm([FakeModel(f"m{n}") for n in range(5)]) as (_, nodes):
        seen = _events(nodes)
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, max_steps=3, deadline_s=60))
    assert trace["answer"] == "10"
    _check("agreeing", {"trace": shape(trace), "events": _event_shapes(seen)})


async def test_trace_of_cross_checked_steps_keeps_its_shape(autojump_clock) -> None:
    """With redundancy 2 every step names the executors that checked it."""
    async with swarm([FakeModel(f"m{n}") for n in range(4)]) as (_, nodes):
        for node in nodes:
            node.tasks.redundancy = 2
        seen = _events(nodes)
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=60))
    assert trace["answer"] == "10"
    assert all(s["checked_by"] for s in trace["chains"][0]["trace"]["steps"])
    _check("cross_checked", {"trace": shape(trace), "events": _event_shapes(seen)})


async def test_trace_of_a_failed_question_keeps_its_shape(autojump_clock) -> None:
    """No usable answer anywhere: TaskFailed carries the trace, with the fallback plan and failed attempts."""
    async with swarm([Garbled(f"g{n}") for n in range(3)]) as (_, nodes):
        seen = _events(nodes)
        with pytest.raises(TaskFailed) as failed:
            await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, top_l=2, deadline_s=60))
    assert failed.value.reason == "no_answer"
    chain = failed.value.trace["chains"][0]
    assert chain["trace"]["plan"].startswith("fallback: ")
    _check("failed", {"trace": shape(failed.value.trace), "events": _event_shapes(seen)})
