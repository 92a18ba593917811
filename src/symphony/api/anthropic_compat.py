"""Anthropic Messages endpoint: clients built on the ``anthropic`` SDK can ask the network.

``POST /v1/messages``: the last user turn is the question, ``system`` and the earlier turns its
context (as on the OpenAI endpoint, within ``asking.CONTEXT_BUDGET_CHARS``: the oldest turns past it
are dropped, and the reply's ``symphony.context`` counts them); it runs through the network exactly as
``POST /v1/tasks`` and the OpenAI endpoint run it (``api.asking``). The reply is a ``message``
whose one text block is the voted answer and whose ``usage`` sums the tokens of every model call
made in the network for it. ``"symphony": {"cots": 3, ...}`` in the body (``extra_body`` in the
SDK) sets the question's options; the reply carries ``"symphony": {"task_id", "trace", "context"}``.

``stream: true`` answers with Anthropic's SSE events: ``message_start`` and ``content_block_start``
at once, ``ping`` every ``KEEPALIVE_S`` while the network works, then ``content_block_delta``
(the answer), ``content_block_stop``, ``message_delta`` (stop reason, usage) and ``message_stop``;
a failure mid-stream is an ``error`` event. A client that leaves cancels its question.

The API token, when the node requires one, is the SDK's ``api_key`` (sent as ``x-api-key``, which
the guard accepts as it accepts ``Authorization: Bearer``). Errors take Anthropic's shape
``{"type": "error", "error": {"type", "message"}}``: 400 bad JSON or fields, 404 an unknown model,
413 a body over the cap, 503 no planner (``overloaded_error``), 504 the deadline passed, 502 no
usable answer; a failed question carries ``x-should-retry: false`` so the SDK does not run it again.
Not honoured, so refused with a 400: ``tools``/``tool_choice``, ``thinking``, image and document
blocks, ``temperature`` outside [0, 1]. ``temperature`` becomes the executors' sampling temperature.
Accepted and not applied: ``max_tokens`` (required by the API; the network's answers are short),
``top_p``, ``top_k``, ``stop_sequences``, ``metadata``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from symphony.api.asking import (
    MAX_QUESTION_CHARS,
    MODEL_ID,
    NO_RETRY,
    Conversation,
    answer_or_cancel,
    extension,
    failure_status,
    has_planners,
    question_problem,
    split_conversation,
    usage,
    wait_with_keepalives,
)
from symphony.api.http import BadBody, EventStreamResponse, OptionsBody, read_body
from symphony.api.node_api import NodeApi
from symphony.node.tasks import TaskRecord

#: Anthropic's error type of each status this face answers
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large",
                502: "api_error", 503: "overloaded_error", 504: "timeout_error"}


class AnthropicError(Exception):
    """An error answered in Anthropic's shape."""

    def __init__(self, status: int, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry

    @property
    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(self.status, "api_error"), "message": str(self)}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=None if self.retry else NO_RETRY)


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control, citations: accepted, unused

    type: Literal["text"]
    text: str


def _text(content: str | list[TextBlock]) -> str:
    return "\n".join(block.text for block in content) if isinstance(content, list) else content


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[TextBlock]

    def text(self) -> str:
        return _text(self.content)

    def line(self) -> str:
        return f"{self.role.capitalize()}: {self.text()}"


class MessagesRequest(BaseModel):
    """``POST /v1/messages``; unknown fields (``tools``, ``thinking``, ...) are refused."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stream: StrictBool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None
    symphony: OptionsBody = Field(default_factory=OptionsBody)

    def conversation(self) -> Conversation:
        """The last user turn is the question; ``system``, then the other turns, its context."""
        talk = split_conversation(self.messages, system=[f"System: {_text(self.system)}"] if self.system else [])
        problem = question_problem(talk.question)
        if problem == "empty":
            raise AnthropicError(400, "messages: the last user turn is empty: it is the question")
        if problem == "too_long":
            raise AnthropicError(400, f"messages: the question is longer than {MAX_QUESTION_CHARS} characters")
        return talk


async def _parse(request: Request) -> MessagesRequest:
    try:
        parsed = await read_body(request, MessagesRequest)
    except BadBody as exc:
        raise AnthropicError(exc.status, str(exc)) from None
    if parsed.model != MODEL_ID:
        raise AnthropicError(404, f"model: {parsed.model[:100]!r} does not exist; this network serves {MODEL_ID!r}")
    return parsed


def _failure(record: TaskRecord) -> AnthropicError:
    return AnthropicError(failure_status(record), f"task {record.task_id}: {record.error or 'failed'}", retry=False)


def _message(record: TaskRecord, *, content: list[dict[str, Any]], stop_reason: str | None,
             usage_: dict[str, int]) -> dict[str, Any]:
    return {"id": f"msg_{record.task_id}", "type": "message", "role": "assistant", "model": MODEL_ID,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage_}


def _usage(record: TaskRecord) -> dict[str, int]:
    prompt, completion = usage(record)
    return {"input_tokens": prompt, "output_tokens": completion}


def anthropic_routes(node: NodeApi) -> list[Route]:
    """The Anthropic Messages route of ``node``."""

    async def messages(request: Request) -> Response:
        try:
            parsed = await _parse(request)
            talk = parsed.conversation()
            if not has_planners(node):
                raise AnthropicError(503, "no agent in the network can plan a question yet: start nodes with --model")
        except AnthropicError as exc:
            return exc.response()
        # the executors sample at the client's temperature, as on the OpenAI endpoint
        options = replace(parsed.symphony.options(), context=talk.context, temperature=parsed.temperature)
        submitted = node.submit(talk.question, options)
        if parsed.stream:
            return EventStreamResponse(_stream(node, talk, submitted))
        record = await answer_or_cancel(request, node, submitted)
        if record is None:
            return Response(status_code=499)
        if record.status != "done":
            return _failure(record).response()
        reply = _message(record, content=[{"type": "text", "text": str(record.answer)}], stop_reason="end_turn",
                         usage_=_usage(record))
        return JSONResponse({**reply, "symphony": extension(record, talk)})

    return [Route("/v1/messages", messages, methods=["POST"])]


def _event(kind: str, data: dict[str, Any]) -> str:
    """One named Server-Sent Event, as Anthropic sends them (the SDK dispatches on ``event:``)."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, separators=(',', ':'), default=str)}\n\n"


async def _stream(node: NodeApi, talk: Conversation, submitted: TaskRecord) -> AsyncIterator[str]:
    """Anthropic's event sequence for one question."""
    start = _message(submitted, content=[], stop_reason=None, usage_={"input_tokens": 0, "output_tokens": 0})
    yield _event("message_start", {"message": start})
    yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    async for record in wait_with_keepalives(node, submitted):
        if record is None:
            yield _event("ping", {})
        elif record.status == "done":
            delta = {"type": "text_delta", "text": str(record.answer)}
            yield _event("content_block_delta", {"index": 0, "delta": delta})
            yield _event("content_block_stop", {"index": 0})
            yield _event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                           "usage": _usage(record), "symphony": extension(record, talk)})
            yield _event("message_stop", {})
        else:
            yield _event("error", {"error": _failure(record).body["error"]})
