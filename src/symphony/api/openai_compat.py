"""OpenAI-compatible endpoint: any OpenAI client can ask the whole network.

- ``GET  /v1/models``            lists one model, ``symphony`` (``/v1/models/symphony`` describes it)
- ``POST /v1/chat/completions``  the last user message is the question; it runs through the
  network exactly as ``POST /v1/tasks`` does (planners, chains, weighted vote). The reply is a
  standard ``chat.completion`` whose content is the voted answer and whose ``usage`` sums the
  tokens of every model call made in the network for it (plans, steps, retries). Extensions:
  the request may carry ``"symphony": {"cots": 3, "strategy": "cosine", ...}`` (``extra_body``
  in the official clients); the reply carries ``"symphony": {"task_id", "trace"}``.

``stream: true`` answers with OpenAI's SSE chunks: a role chunk at once, keep-alive comments
while the network works, then the answer, a final chunk with ``finish_reason`` (and the trace),
a usage chunk if ``stream_options.include_usage``, and ``data: [DONE]``. A client that
disconnects (mid-stream, or while waiting for a plain reply) cancels its question (status
``cancelled``); the node keeps serving.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 bad JSON,
fields or an empty question; 413 a body over the cap; 404 an unknown model; 503 no planner
available; 504 the deadline passed; 502 the network returned no usable answer. The API's guard
(``api.guard``) answers in the same shape here: 415 a body not declared JSON, 401 a missing or
wrong token (the OpenAI client's ``api_key`` is sent as the bearer token), 403/421 cross-site use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from symphony.api.http import (
    BodyTooLarge,
    EventStreamResponse,
    OptionsBody,
    read_json,
    sse,
    wait_unless_client_leaves,
)
from symphony.api.node_api import NodeApi
from symphony.ledger.store import QueryFilter
from symphony.node.tasks import TaskRecord
from symphony.pipeline.service import PLANNER_TAG

MODEL_ID = "symphony"
MAX_QUESTION_CHARS = 32_000
KEEPALIVE_S = 10.0
_FAILURES = {"no_agents": (503, "no_agents"), "timeout": (504, "timeout")}


class OpenAIError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: accepted, unused

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The fields Symphony reads; OpenAI's other sampling fields (temperature, ...) are ignored:
    the network's agents choose their own."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    symphony: OptionsBody = Field(default_factory=OptionsBody)

    def question(self) -> str:
        users = [m for m in self.messages if m.role == "user"]
        text = users[-1].text() if users else ""
        if not text.strip():
            raise OpenAIError(400, "the last user message is empty: it is the question", param="messages")
        if len(text) > MAX_QUESTION_CHARS:
            raise OpenAIError(400, f"the question is longer than {MAX_QUESTION_CHARS} characters",
                              param="messages", code="question_too_long")
        return text


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of these routes, whose errors (the guard's too) take OpenAI's shape."""
    return path in ("/v1/models", "/v1/chat/completions") or path.startswith("/v1/models/")


async def _parse(request: Request) -> ChatCompletionRequest:
    try:
        body = await read_json(request)
    except BodyTooLarge as exc:
        raise OpenAIError(413, str(exc), code="request_too_large") from None
    except ValueError as exc:
        raise OpenAIError(400, f"body must be a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "body must be a JSON object")
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"])
        raise OpenAIError(400, f"invalid {param}: {error['msg']}", param=param) from None
    if chat.model != MODEL_ID:
        raise OpenAIError(404, f"the model {chat.model[:100]!r} does not exist; this network serves {MODEL_ID!r}",
                          param="model", code="model_not_found")
    return chat


def _failure(record: TaskRecord) -> OpenAIError:
    status, code = _FAILURES.get(record.reason or "", (502, "task_failed"))
    return OpenAIError(status, f"task {record.task_id}: {record.error or 'failed'}", type_="server_error", code=code)


def _usage(trace: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(trace.get("prompt_tokens", 0)), int(trace.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _extension(record: TaskRecord) -> dict[str, Any]:
    return {"task_id": record.task_id, "trace": record.trace or {}}


def openai_routes(node: NodeApi) -> list[Route]:
    def check_planners() -> None:
        if not node.has_agents(QueryFilter(tags_any=frozenset({PLANNER_TAG}))):
            raise OpenAIError(503, "no agent in the network can plan a question yet: start nodes with --model",
                              type_="server_error", code="no_agents")

    model = {"id": MODEL_ID, "object": "model", "created": int(node.started_at), "owned_by": "symphony-network"}

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model]})

    async def get_model(request: Request) -> JSONResponse:
        if request.path_params["model"] != MODEL_ID:
            return OpenAIError(404, f"the model {request.path_params['model'][:100]!r} does not exist",
                               param="model", code="model_not_found").response()
        return JSONResponse(model)

    async def chat_completions(request: Request) -> Response:
        try:
            chat = await _parse(request)
            question = chat.question()
            check_planners()
        except OpenAIError as exc:
            return exc.response()
        submitted = node.submit(question, chat.symphony.options())
        if chat.stream:
            include_usage = chat.stream_options is not None and chat.stream_options.include_usage
            return EventStreamResponse(_stream(node, submitted, include_usage=include_usage))
        record = await wait_unless_client_leaves(request, lambda: node.wait_task(submitted.task_id))
        if record is None:
            node.cancel(submitted.task_id)
            return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
        if record.status != "done":
            return _failure(record).response()
        return JSONResponse({
            "id": f"chatcmpl-{record.task_id}", "object": "chat.completion", "created": int(node.now()),
            "model": MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": record.answer},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(record.trace or {}),
            "symphony": _extension(record),
        })

    return [Route("/v1/models", list_models), Route("/v1/models/{model}", get_model),
            Route("/v1/chat/completions", chat_completions, methods=["POST"])]


async def _stream(node: NodeApi, submitted: TaskRecord, *, include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's chunk sequence for one question; cancels the question if the client leaves."""
    created = int(node.now())
    completion_id = f"chatcmpl-{submitted.task_id}"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    record: TaskRecord | None = None
    try:
        yield chunk({"role": "assistant", "content": ""})
        while record is None:
            with anyio.move_on_after(KEEPALIVE_S):
                record = await node.wait_task(submitted.task_id)
            if record is None:
                yield ": symphony is working\n\n"
        if record.status == "done":
            yield chunk({"content": record.answer})
            yield chunk({}, "stop", symphony=_extension(record))
            if include_usage:
                yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                           "model": MODEL_ID, "choices": [], "usage": _usage(record.trace or {})})
        else:
            yield sse(_failure(record).body)
        yield "data: [DONE]\n\n"
    finally:
        if record is None:
            node.cancel(submitted.task_id)
