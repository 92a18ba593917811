"""The OpenAI endpoint's field policy, driven by the official ``openai`` client over a fake node
(``httpx.ASGITransport``): every field is honoured or refused with OpenAI's 400, the conversation
reaches the question's options as context, tool calls and JSON answers are built from the answer
and validated, and streaming sends the task's progress as ``reasoning_content`` before the answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import trio

from symphony.api.app import create_app
from symphony.api.asking import CONTEXT_BUDGET_CHARS
from symphony.node.tasks import TaskRecord
from symphony.pipeline.service import AskOptions
from tests.api.test_fake_node import BASE, FakeNode

QUESTION = [{"role": "user", "content": "What is 4*3+2?"}]
ADD = {"type": "function", "function": {"name": "record", "parameters": {
    "type": "object", "properties": {"value": {"type": "integer", "minimum": 0}}, "required": ["value"]}}}


class AnsweringNode(FakeNode):
    """Answers every question with ``answer`` at once (publishing a chain's progress first) and
    keeps the options it was asked with."""

    def __init__(self, answer: str = "14", *, fail: bool = False) -> None:
        super().__init__()
        self.answer, self.fail = answer, fail
        self.options: list[AskOptions] = []

    def submit(self, question: str, options: AskOptions, *, task_id: str | None = None) -> TaskRecord:
        record = super().submit(question, options, task_id=task_id)
        self.options.append(options)
        self.bus.publish("task_started", {"task": record.task_id, "planners": ["p1"]})
        self.bus.publish("plan_made", {"task": f"{record.task_id}/c0", "steps": ["Compute 4*3+2."], "plan": "ok"})
        trace = {"answer": self.answer, "prompt_tokens": 3, "completion_tokens": 1,
                 "chains": [{"planner": "p1", "ok": not self.fail, "error": "no answer" if self.fail else "",
                             "trace": {"steps": [{"question": "Compute 4*3+2.", "ok": False, "error": "no_answer"}]}}]}
        final = (record.failed(reason="no_answer", error="no chain returned a usable answer", trace=trace)
                 if self.fail else record.answered(trace))
        self.book.finish(final)
        self.bus.publish("task_record", final.to_wire())
        return final


def client(node: FakeNode) -> openai.AsyncOpenAI:
    """The official client (2 retries, its default) on ``node``'s one app."""
    if not hasattr(node, "app"):
        node.app = create_app(node, token=None)  # type: ignore[attr-defined]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app), base_url=BASE)  # type: ignore[attr-defined]
    return openai.AsyncOpenAI(base_url=BASE + "/v1", api_key="unused", http_client=http)


async def test_conversation_reaches_the_question_as_context() -> None:
    """System text and earlier turns go to the network as the question's context; the reply says so."""
    node = AnsweringNode()
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Remember x = 7."},
                {"role": "assistant", "content": "Noted."}, *QUESTION]
    reply = await client(node).chat.completions.create(model="symphony", messages=messages)
    assert node.options[0].context == "System: Answer in French.\nUser: Remember x = 7.\nAssistant: Noted."
    assert node.tasks()[0].question == "What is 4*3+2?"
    assert reply.model_extra["symphony"]["context"] == {"messages": 3, "dropped_turns": 0, "chars": 65,
                                                        "budget_chars": CONTEXT_BUDGET_CHARS, "truncated": False}


async def test_oldest_turns_are_dropped_past_the_budget_and_reported() -> None:
    """Past the budget the oldest turns go (the newest stay), and ``symphony.context`` counts them."""
    node = AnsweringNode()
    turns = [{"role": "user", "content": f"turn {i} " + "x" * 1000} for i in range(10)]
    reply = await client(node).chat.completions.create(model="symphony", messages=[*turns, *QUESTION])
    report = reply.model_extra["symphony"]["context"]
    assert report["truncated"] and report["dropped_turns"] == 5
    assert "turn 9 " in node.options[0].context and "turn 4 " not in node.options[0].context


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 2}, "n"),
        ({"top_p": 0.5}, "top_p"),
        ({"seed": 7}, "seed"),
        ({"logprobs": True}, "logprobs"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": 5}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"tools": [ADD, {**ADD, "function": {**ADD["function"], "name": "other"}}], "tool_choice": "required"},
         "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "two", "parameters": {
            "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}],
          "tool_choice": "required"}, "tools"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"items": {"type": "array"}}}}}}, "response_format"),
        ({"response_format": {"type": "json_object"}, "stop": "x"}, "stop"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}, "messages.0.content.0.type"),
    ],
)
async def test_fields_the_network_cannot_honour_get_a_400(fields: dict[str, Any], param: str) -> None:
    """Each refused field answers 400 in OpenAI's shape naming the field; nothing is asked."""
    node = AnsweringNode()
    with pytest.raises(openai.BadRequestError) as caught:
        await client(node).chat.completions.create(model="symphony", **{"messages": QUESTION, **fields})
    assert caught.value.body["param"] == param and caught.value.body["type"] == "invalid_request_error"
    assert node.options == []


async def test_temperature_goes_to_the_executors() -> None:
    node = AnsweringNode()
    await client(node).chat.completions.create(model="symphony", messages=QUESTION, temperature=0.7)
    assert node.options[0].temperature == 0.7


async def test_required_tool_call_is_built_from_the_answer() -> None:
    """``tool_choice="required"`` answers with a call whose arguments fill the one parameter, typed."""
    node = AnsweringNode("14")
    reply = await client(node).chat.completions.create(model="symphony", messages=QUESTION, tools=[ADD],
                                                       tool_choice="required")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "record" and json.loads(call.function.arguments) == {"value": 14}
    assert node.options[0].answer_kind == "number", "an integer slot asks the network for a number"


async def test_answer_that_breaks_the_schema_is_an_error_not_retried() -> None:
    """An answer outside the function's schema (minimum 0) is a 502 the client does not retry."""
    node = AnsweringNode("-3")
    with pytest.raises(openai.InternalServerError) as caught:
        await client(node).chat.completions.create(model="symphony", messages=QUESTION, tools=[ADD],
                                                   tool_choice={"type": "function", "function": {"name": "record"}})
    assert caught.value.code == "answer_does_not_fit" and len(node.options) == 1
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_json_schema_and_json_object_answers() -> None:
    node = AnsweringNode("14")
    schema = {"type": "object", "properties": {"result": {"type": "number"}}, "required": ["result"]}
    typed = await client(node).chat.completions.create(
        model="symphony", messages=QUESTION,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
    assert json.loads(typed.choices[0].message.content) == {"result": 14}
    plain = await client(node).chat.completions.create(model="symphony", messages=QUESTION,
                                                       response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content) == {"answer": "14"}


async def test_stop_and_max_tokens_cut_the_answer() -> None:
    node = AnsweringNode("one two three. four five")
    stopped = await client(node).chat.completions.create(model="symphony", messages=QUESTION, stop=["."])
    assert stopped.choices[0].message.content == "one two three" and stopped.choices[0].finish_reason == "stop"
    capped = await client(node).chat.completions.create(model="symphony", messages=QUESTION, max_tokens=2)
    assert capped.choices[0].message.content == "one two" and capped.choices[0].finish_reason == "length"


async def test_failed_question_is_not_retried_and_carries_its_trace() -> None:
    """A question the network could not answer: 502, ``x-should-retry: false`` (one run, though the
    client allows 2 retries), and the chains' summary in the error."""
    node = AnsweringNode(fail=True)
    with pytest.raises(openai.InternalServerError) as caught:
        await client(node).chat.completions.create(model="symphony", messages=QUESTION)
    assert len(node.options) == 1, "the official client did not ask again"
    assert caught.value.response.headers["x-should-retry"] == "false"
    summary = caught.value.body["symphony"]
    assert summary["trace"]["chains"][0]["steps"][0]["error"] == "no_answer"


async def test_streaming_sends_progress_as_reasoning_before_the_answer() -> None:
    node = AnsweringNode("14")
    stream = await client(node).chat.completions.create(model="symphony", messages=QUESTION, stream=True)
    deltas = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
    reasoning = [i for i, d in enumerate(deltas) if (d.model_extra or {}).get("reasoning_content")]
    content = [i for i, d in enumerate(deltas) if d.content]
    text = "".join(deltas[i].model_extra["reasoning_content"] for i in reasoning)
    assert "Asked 1 planner(s)" in text and "Compute 4*3+2." in text
    assert reasoning and content and max(reasoning) < min(content)
    assert "".join(d.content or "" for d in deltas) == "14"


async def test_unknown_paths_and_completions_answer_in_the_error_shape() -> None:
    node = AnsweringNode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node, token=None)),
                                 base_url=BASE) as http:
        missing = await http.get("/v1/nothing")
        legacy = await http.post("/v1/completions", json={"model": "symphony", "prompt": "hi"})
        wrong_method = await http.get("/v1/chat/completions")
        health = await http.get("/health")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    assert legacy.status_code == 404 and "chat/completions" in legacy.json()["error"]["message"]
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["message"]
    assert health.status_code == 200 and health.json()["ready"] is True


async def test_streaming_waits_until_the_task_ends() -> None:
    """A task still running when the stream opens streams once it ends (the node finishes it later)."""
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        async def finish() -> None:
            await node.submitted.wait()
            task_id = node.tasks()[0].task_id
            final = node.book[task_id].answered({"answer": "42"})
            node.book.finish(final)
            node.bus.publish("task_record", final.to_wire())
        nursery.start_soon(finish)
        stream = await client(node).chat.completions.create(model="symphony", messages=QUESTION, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "42"
