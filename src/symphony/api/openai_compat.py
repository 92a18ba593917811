"""OpenAI-compatible endpoint: any OpenAI client can ask the whole network.

- ``GET  /v1/models``            lists one model, ``symphony`` (``/v1/models/symphony`` describes it)
- ``POST /v1/chat/completions``  the last user message is the question and the rest of the
  conversation its context (``api.openai_request``: the field policy, the context budget and the
  JSON / tool-call answers). It runs through the network exactly as ``POST /v1/tasks`` does
  (planners, chains, weighted vote). The reply is a standard ``chat.completion`` whose ``usage``
  sums the tokens of every model call made in the network for it (plans, steps, retries).
  Extensions: the request may carry ``"symphony": {"cots": 3, "strategy": "cosine", ...}``
  (``extra_body`` in the official clients); the reply carries ``"symphony": {"task_id", "trace",
  "context", "degraded"}`` (``context``: how much of the conversation went to the network, and what
  was cut; ``degraded``: the trace's list of what ran worse than designed, e.g. planners that fell
  back to one step, so a client sees it without reading the trace). An extra top-level object is
  what OpenAI clients tolerate: the official SDKs keep unknown fields (``model_extra``) and
  others ignore them; ``system_fingerprint`` is left alone (clients compare it for equality).
- ``POST /v1/completions``       404 in OpenAI's shape: the network serves chat completions only.

``stream: true`` answers with OpenAI's SSE chunks: a role chunk at once, then the network's
progress as ``reasoning_content`` deltas (plan made, step assigned and answered, chain finished:
this task's events from the node's bus; Open WebUI and other chat UIs show them as the model's
thinking), keep-alive comments in quiet spells, then the answer, a final chunk with
``finish_reason`` (and the trace), a usage chunk if ``stream_options.include_usage``, and
``data: [DONE]``. A client that disconnects (mid-stream, or while waiting for a plain reply)
cancels its question (status ``cancelled``); the node keeps serving.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 bad JSON,
fields or an empty question, and every field the network cannot honour; 413 a body over the cap;
404 an unknown model; 503 no planner available. A question the network ran and could not answer
is 504 (deadline passed) or 502 (no usable answer, or an answer that does not fit the requested
schema), sent with ``x-should-retry: false`` (the official clients then do not run it again:
``openai._base_client.BaseClient._should_retry``) and with a summary of its trace and its usage
(the tokens it spent though it failed) in ``error.symphony``. The API's guard (``api.guard``) answers
in the same shape here: 415 a body not declared JSON, 401 a missing or wrong token, 403/421 cross-site use.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

from anyio.streams.memory import MemoryObjectReceiveStream

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from symphony.api.asking import (
    KEEPALIVE_S,
    MODEL_ID,
    NO_RETRY,
    answer_or_cancel,
    extension,
    failure_status,
    has_planners,
    usage,
)
from symphony.api.http import BodyTooLarge, EventStreamResponse, read_json, sse
from symphony.api.node_api import NodeApi
from symphony.api.progress import progress_line
from symphony.api.openai_request import (
    ChatCompletionRequest,
    Conversation,
    OpenAIError,
    Shape,
    conversation,
    parse_request,
    shape,
)
from symphony.node.bus import Event
from symphony.node.tasks import TaskRecord
from symphony.pipeline.service import AskOptions



def error_response(error: OpenAIError) -> JSONResponse:
    """``error`` as a response; one the client must not retry says so (``x-should-retry: false``)."""
    return JSONResponse(error.body, status_code=error.status, headers=None if error.retry else NO_RETRY)


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of these routes, whose errors (the guard's too) take OpenAI's shape."""
    return path in ("/v1/models", "/v1/chat/completions", "/v1/completions") or path.startswith("/v1/models/")


async def _parse(request: Request) -> ChatCompletionRequest:
    try:
        body = await read_json(request)
    except BodyTooLarge as exc:
        raise OpenAIError(413, str(exc), code="request_too_large") from None
    except ValueError as exc:
        raise OpenAIError(400, f"body must be a JSON object: {exc}") from None
    return parse_request(body)


def trace_summary(trace: dict[str, Any]) -> dict[str, Any]:
    """What each chain did, in brief: enough to see why a question failed (the full trace is at
    ``GET /v1/tasks/ID``)."""
    chains = []
    for chain in trace.get("chains", []):
        steps = [{"question": str(s.get("question", ""))[:200], "ok": s.get("ok"),
                  **({"answer": s.get("answer")} if s.get("ok") else {"error": str(s.get("error", ""))[:200]})}
                 for s in (chain.get("trace") or {}).get("steps", [])]
        chains.append({"planner": chain.get("planner"), "ok": chain.get("ok"), "answer": chain.get("answer"),
                       "error": str(chain.get("error", ""))[:300], "steps": steps})
    return {"chains": chains, "latency_ms": trace.get("latency_ms"), "degraded": trace.get("degraded", []),
            "adaptive": trace.get("adaptive")}


def _failure(record: TaskRecord) -> OpenAIError:
    status = failure_status(record)
    code = record.reason if status != 502 else "task_failed"
    summary = {"task_id": record.task_id, "trace": trace_summary(record.trace or {}), "usage": _usage(record)}
    return OpenAIError(status, f"task {record.task_id}: {record.error or 'failed'} "
                       f"(trace: GET /v1/tasks/{record.task_id})", type_="server_error", code=code, retry=False,
                       extra={"symphony": summary})


def _usage(record: TaskRecord) -> dict[str, int]:
    prompt, completion = usage(record)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _extension(record: TaskRecord, talk: Conversation) -> dict[str, Any]:
    return {**extension(record, talk), "degraded": (record.trace or {}).get("degraded", [])}


def _message(record: TaskRecord, form: Shape) -> tuple[dict[str, Any], str]:
    """The reply's message and finish_reason; ``OpenAIError`` when the answer does not fit the schema."""
    text, finish = form.output(record.answer or "")
    if form.tool is None:
        return {"role": "assistant", "content": text}, finish
    call = {"id": f"call_{record.task_id[:24]}", "type": "function", "function": {"name": form.tool, "arguments": text}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}, finish


def _options(chat: ChatCompletionRequest, talk: Conversation, form: Shape) -> AskOptions:
    """The question's options: the ``symphony`` extension's, the conversation and the temperature; a
    typed JSON or tool slot asks for its kind of answer unless the extension names one."""
    options = chat.symphony.options()
    return replace(options, answer_kind=options.answer_kind or form.answer_kind, context=talk.context,
                   temperature=chat.temperature)


def openai_routes(node: NodeApi) -> list[Route]:
    def check_planners() -> None:
        if not has_planners(node):
            raise OpenAIError(503, "no agent in the network can plan a question yet: start nodes with --model",
                              type_="server_error", code="no_agents")

    model = {"id": MODEL_ID, "object": "model", "created": int(node.started_at), "owned_by": "symphony-network"}

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model]})

    async def get_model(request: Request) -> JSONResponse:
        if request.path_params["model"] != MODEL_ID:
            return error_response(OpenAIError(404, f"the model {request.path_params['model'][:100]!r} does not exist",
                                              param="model", code="model_not_found"))
        return JSONResponse(model)

    async def completions(request: Request) -> JSONResponse:
        return error_response(OpenAIError(404, "this network serves chat completions only: "
                                          "POST /v1/chat/completions", code="unknown_url"))

    async def chat_completions(request: Request) -> Response:
        try:
            chat = await _parse(request)
            talk = conversation(chat.messages)
            form = shape(chat)
            check_planners()
        except OpenAIError as exc:
            return error_response(exc)
        options = _options(chat, talk, form)
        if chat.stream:
            include_usage = chat.stream_options is not None and chat.stream_options.include_usage
            return EventStreamResponse(_stream(node, talk, options, form, include_usage=include_usage))
        submitted = node.submit(talk.question, options)
        record = await answer_or_cancel(request, node, submitted)
        if record is None:
            return Response(status_code=499)
        try:
            if record.status != "done":
                raise _failure(record)
            message, finish = _message(record, form)
        except OpenAIError as exc:
            return error_response(exc)
        return JSONResponse({
            "id": f"chatcmpl-{record.task_id}", "object": "chat.completion", "created": int(node.now()),
            "model": MODEL_ID, "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(record), "symphony": _extension(record, talk),
        })

    return [Route("/v1/models", list_models), Route("/v1/models/{model}", get_model),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"])]


async def _stream(node: NodeApi, talk: Conversation, options: AskOptions, form: Shape, *,
                  include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's chunk sequence for one question, its progress first; cancels the question if the client leaves."""
    task_id = uuid.uuid4().hex
    created = int(node.now())
    completion_id = f"chatcmpl-{task_id}"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    record: TaskRecord | None = None
    try:
        async with AsyncExitStack() as stack:
            events = None  # subscribed before the question starts, so no event of it is missed
            if node.bus.subscribers < node.bus.max_subscribers:
                events = await stack.enter_async_context(node.bus.subscribe())
            node.submit(talk.question, options, task_id=task_id)
            yield chunk({"role": "assistant", "content": ""})
            if events is None:
                yield chunk({"reasoning_content": "(no live progress: this node has too many event subscribers)\n"})
            async for line in _progress_lines(node, events, task_id):
                yield line if line.startswith(":") else chunk({"reasoning_content": line})
            record = await node.wait_task(task_id)
        if record.status != "done":
            raise _failure(record)
        message, finish = _message(record, form)
        if form.tool is not None:
            call = {"index": 0, **message["tool_calls"][0]}
            yield chunk({"tool_calls": [call]})
        else:
            yield chunk({"content": message["content"]})
        yield chunk({}, finish, symphony=_extension(record, talk))
        if include_usage:
            yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                       "model": MODEL_ID, "choices": [], "usage": _usage(record)})
        yield "data: [DONE]\n\n"
    except OpenAIError as exc:
        yield sse(exc.body)
        yield "data: [DONE]\n\n"
    finally:
        if record is None:
            node.cancel(task_id)


async def _progress_lines(node: NodeApi, events: MemoryObjectReceiveStream[Event] | None,
                          task_id: str) -> AsyncIterator[str]:
    """Progress lines of ``task_id`` (and ``: keep-alive`` comments) until its final ``task_record``."""
    while events is not None:
        event = None
        with anyio.move_on_after(KEEPALIVE_S):
            try:
                event = await events.receive()
            except anyio.EndOfStream:  # the bus cut this slow client off: the answer still comes
                yield "(live progress stopped: this client fell behind the node's events)\n"
                events = None
                break
        if event is None:
            if (current := node.task(task_id)) is None or current.status != "running":
                return
            yield ": symphony is working\n\n"
        elif (line := progress_line(event, task_id)) is not None:
            yield line
        elif event["type"] == "task_record" and event["data"].get("task_id") == task_id \
                and event["data"].get("status") != "running":
            return
    while (current := node.task(task_id)) is not None and current.status == "running":
        with anyio.move_on_after(KEEPALIVE_S):
            await node.wait_task(task_id)
            return
        yield ": symphony is working\n\n"
