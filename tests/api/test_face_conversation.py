"""The Ollama and Anthropic faces carry the system prompt and the earlier turns into the question's
context, as the OpenAI endpoint does: driven by their official clients, a question runs through a
real pipeline (simulated agents on the memory network, virtual time) whose models record the
prompts they are given; the planner's system prompt holds the conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anthropic
import httpx
import httpx2
import ollama
import trio

from symphony.api.app import create_app
from symphony.api.asking import CONTEXT_BUDGET_CHARS
from symphony.node.runtime import AgentRuntime
from symphony.node.tasks import TaskRecord
from symphony.pipeline.service import AskOptions
from tests.api.test_fake_node import BASE, FakeNode
from tests.api.test_openai_fields import AnsweringNode
from tests.pipeline.test_pipeline_context import Recording
from tests.pipeline.test_pipeline_network import QUESTION, swarm

SYSTEM = "Count in dozens where you can."
EARLIER = [{"role": "user", "content": "Remember that each box holds 4 apples."},
           {"role": "assistant", "content": "Noted."}]
CONTEXT = f"System: {SYSTEM}\nUser: Remember that each box holds 4 apples.\nAssistant: Noted."
PLANNED_STEPS = 3


class PipelineNode(FakeNode):
    """A node reduced to ``NodeApi`` whose questions run through ``runtime``'s real pipeline, planned in
    up to ``PLANNED_STEPS`` steps so that a planner is asked (the faces' default, one step, asks none;
    the official ollama client cannot send the ``symphony`` options)."""

    def __init__(self, runtime: AgentRuntime, nursery: trio.Nursery) -> None:
        super().__init__()
        self.runtime, self.nursery = runtime, nursery

    def submit(self, question: str, options: AskOptions, *, task_id: str | None = None) -> TaskRecord:
        record = super().submit(question, options, task_id=task_id)
        self.nursery.start_soon(self._answer, record, options)
        return record

    async def _answer(self, record: TaskRecord, options: AskOptions) -> None:
        trace = await self.runtime.tasks.ask(record.question, replace(options, max_steps=PLANNED_STEPS),
                                             task_id=record.task_id)
        self.book.finish(record.answered(trace))


@asynccontextmanager
async def pipeline() -> AsyncIterator[tuple[PipelineNode, list[Recording]]]:
    """Three recording agents; the API is served over the first."""
    models = [Recording(f"m{n}") for n in range(3)]
    async with swarm(models) as (_, nodes), trio.open_nursery() as nursery:
        yield PipelineNode(nodes[0], nursery), models


def planner_prompts(models: list[Recording]) -> list[str]:
    return [system for model in models for planning, system, _ in model.seen if planning]


async def test_ollama_chat_carries_system_and_earlier_turns_to_the_planner(autojump_clock) -> None:
    async with pipeline() as (node, models):
        client = ollama.AsyncClient(host=BASE, transport=httpx.ASGITransport(app=create_app(node, token=None)))
        messages = [{"role": "system", "content": SYSTEM}, *EARLIER, {"role": "user", "content": QUESTION}]
        reply = await client.chat(model="symphony", messages=messages, stream=False)
    assert reply.message.content == "10" and node.tasks()[0].question == QUESTION
    prompts = planner_prompts(models)
    assert prompts and all(CONTEXT in prompt for prompt in prompts)


async def test_ollama_generate_carries_system_to_the_planner(autojump_clock) -> None:
    async with pipeline() as (node, models):
        client = ollama.AsyncClient(host=BASE, transport=httpx.ASGITransport(app=create_app(node, token=None)))
        reply = await client.generate(model="symphony", prompt=QUESTION, system=SYSTEM, stream=False)
    assert reply.response == "10"
    prompts = planner_prompts(models)
    assert prompts and all(f"System: {SYSTEM}" in prompt for prompt in prompts)


async def test_anthropic_carries_system_and_earlier_turns_to_the_planner(autojump_clock) -> None:
    async with pipeline() as (node, models):
        # this SDK is built on httpx2 (httpx's successor), so its in-process transport comes from there
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(node, token=None)), base_url=BASE)
        client = anthropic.AsyncAnthropic(base_url=BASE, api_key="unused", http_client=http, max_retries=0)
        reply = await client.messages.create(model="symphony", max_tokens=64, system=[{"type": "text", "text": SYSTEM}],
                                             messages=[*EARLIER, {"role": "user", "content": QUESTION}])
    assert reply.content[0].text == "10" and node.tasks()[0].question == QUESTION  # type: ignore[union-attr]
    prompts = planner_prompts(models)
    assert prompts and all(CONTEXT in prompt for prompt in prompts)
    assert reply.model_extra["symphony"]["context"] == {  # type: ignore[index]
        "messages": 3, "dropped_turns": 0, "chars": len(CONTEXT), "budget_chars": CONTEXT_BUDGET_CHARS,
        "truncated": False}


async def test_turns_past_the_budget_are_dropped_and_counted_in_the_ollama_reply() -> None:
    """Past the budget the oldest turns go (the newest stay), and the done line's ``symphony.context`` counts them."""
    node = AnsweringNode()
    turns = [{"role": "user", "content": f"turn {i} " + "x" * 1000} for i in range(10)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node, token=None)),
                                 base_url=BASE) as http:
        reply = (await http.post("/api/chat", json={"model": "symphony", "stream": False, "messages": [
            *turns, {"role": "user", "content": "What is 4*3+2?"}]})).json()
    report = reply["symphony"]["context"]
    assert report["truncated"] and report["dropped_turns"] == 5
    assert "turn 9 " in node.options[0].context and "turn 4 " not in node.options[0].context
