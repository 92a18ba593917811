"""Ollama-compatible endpoint: Ollama clients (``ollama-python``, Open WebUI, ...) point at a node unchanged.

- ``GET  /api/version``   the node's version
- ``GET  /api/tags``      lists one model, ``symphony:latest`` (``GET /api/ps`` too: it is always "loaded")
- ``POST /api/show``      describes it
- ``POST /api/chat``      the last user message is the question, the system messages and the other
  turns its context (as on the OpenAI endpoint); ``stream`` (Ollama's default: true)
  answers in NDJSON: one empty-content line at once and every ``KEEPALIVE_S`` while the network
  works, then the answer, then the ``done`` line with token counts and durations
- ``POST /api/generate``  the same with ``prompt`` as the question and ``system`` as its context (an empty
  prompt only "loads" the model)

A question runs through the network exactly as ``POST /v1/tasks`` and the OpenAI endpoint run it
(``api.asking``); ``"symphony": {"cots": 3, ...}`` in the body sets its options, and the final line
carries ``"symphony": {"task_id", "trace", "context"}`` (``context``: how much of the conversation went
to the network, within ``asking.CONTEXT_BUDGET_CHARS``; the oldest turns past it are dropped and counted
there). A client that leaves cancels its question.

Errors take Ollama's shape ``{"error": "..."}`` (the guard's too): 400 bad JSON or fields, 404 an
unknown model, 503 no planner, 504 the deadline passed, 502 no usable answer (mid-stream: an
``{"error"}`` line, as Ollama does). Not honoured, so refused with a 400: ``tools``, ``format``,
``images``, ``raw``, an ``options.temperature`` outside [0, 2]. ``options.temperature`` becomes the executors'
sampling temperature. Accepted and not applied: the other ``options``, ``keep_alive``, ``think`` (nothing is
loaded per client), and an earlier assistant turn's ``thinking`` (its reasoning: the context carries
what it said, as the OpenAI endpoint carries no ``reasoning_content``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from symphony import __version__
from symphony.api.asking import (
    MAX_QUESTION_CHARS,
    MODEL_ID,
    Conversation,
    answer_or_cancel,
    extension,
    failure_status,
    fit_conversation,
    has_planners,
    question_problem,
    split_conversation,
    usage,
    wait_with_keepalives,
)
from symphony.api.http import (
    BadBody,
    EventStreamResponse,
    OptionsBody,
    read_body,
    read_json,
)
from symphony.api.node_api import NodeApi
from symphony.node.tasks import TaskRecord

MODEL_NAME = f"{MODEL_ID}:latest"
_DETAILS = {"parent_model": "", "format": "network", "family": MODEL_ID, "families": [MODEL_ID],
            "parameter_size": "", "quantization_level": ""}


class OllamaError(Exception):
    """An error answered in Ollama's shape ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self)}, status_code=self.status)


class NdjsonResponse(EventStreamResponse):
    """Ollama's streaming body: one JSON object per line; stops (and cancels the question) when the client leaves."""

    media_type = "application/x-ndjson"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None  # an earlier assistant turn's reasoning, sent back by some clients

    def text(self) -> str:
        return self.content

    def line(self) -> str:
        """The message as a line of the question's context: ``Role: text``."""
        return f"{self.role.capitalize()}: {self.content}"


class _Request(BaseModel):
    """Fields every asking route shares; unknown fields are refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    stream: StrictBool = True
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None
    think: bool | str | None = None
    symphony: OptionsBody = Field(default_factory=OptionsBody)
    tools: list[Any] | None = None  # the ollama client always sends a (usually empty) list
    format: None = None  # JSON mode / schemas: not honoured, so any value is refused

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("tool calls are not supported by this network")
        return tools


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(default_factory=list)

    def conversation(self) -> Conversation:
        """The last user message is the question; the system messages, then the other turns, its context."""
        return split_conversation(self.messages)


class GenerateRequest(_Request):
    prompt: str = ""
    system: str | None = None

    def conversation(self) -> Conversation:
        """``prompt`` is the question, ``system`` its context."""
        return fit_conversation(self.prompt, [f"System: {self.system}"] if self.system else [], [])


R = TypeVar("R", bound=_Request)


def _temperature(parsed: _Request) -> float | None:
    """``options.temperature`` (None when not given); ``OllamaError`` 400 when it is not a number in [0, 2]."""
    value = (parsed.options or {}).get("temperature")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise OllamaError(400, f"invalid options.temperature: {value!r} is not a number in [0, 2]")
    return float(value)


def _known_model(name: str) -> bool:
    return name in (MODEL_ID, MODEL_NAME)


async def _parse(request: Request, kind: type[R]) -> R:
    try:
        parsed = await read_body(request, kind)
    except BadBody as exc:
        raise OllamaError(exc.status, str(exc)) from None
    if not _known_model(parsed.model):
        raise _unknown_model(parsed.model)
    return parsed


def _unknown_model(name: str) -> OllamaError:
    return OllamaError(404, f"model {name[:100]!r} not found: this network serves {MODEL_NAME!r}")


def _check_question(text: str) -> None:
    problem = question_problem(text)
    if problem == "empty":
        raise OllamaError(400, "the question is empty: send a user message (chat) or a prompt (generate)")
    if problem == "too_long":
        raise OllamaError(400, f"the question is longer than {MAX_QUESTION_CHARS} characters")


def ollama_routes(node: NodeApi) -> list[Route]:
    """The Ollama API routes of ``node``."""

    def now_text() -> str:
        return datetime.fromtimestamp(node.now(), UTC).isoformat().replace("+00:00", "Z")

    model = {"name": MODEL_NAME, "model": MODEL_NAME, "size": 0, "digest": "0" * 64, "details": _DETAILS,
             "modified_at": datetime.fromtimestamp(node.started_at, UTC).isoformat().replace("+00:00", "Z")}

    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": __version__})

    async def tags(request: Request) -> JSONResponse:
        return JSONResponse({"models": [model]})

    async def running(request: Request) -> JSONResponse:
        return JSONResponse({"models": [{**model, "size_vram": 0, "expires_at": "2999-01-01T00:00:00Z"}]})

    async def show(request: Request) -> JSONResponse:
        try:
            body = await read_json(request)
        except ValueError as exc:
            return OllamaError(400, f"body must be a JSON object: {exc}").response()
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        if not isinstance(name, str) or not _known_model(name):
            return _unknown_model(str(name)).response()
        return JSONResponse({"modelfile": "", "parameters": "", "template": "", "details": _DETAILS,
                             "model_info": {}, "capabilities": ["completion"], "modified_at": model["modified_at"]})

    async def ask(request: Request, kind: type[ChatRequest] | type[GenerateRequest]) -> Response:
        try:
            parsed = await _parse(request, kind)
            if isinstance(parsed, GenerateRequest) and not parsed.prompt:  # Ollama: load the model, answer nothing
                return JSONResponse(_line(parsed, now_text(), "", done=True))
            talk = parsed.conversation()
            _check_question(talk.question)
            temperature = _temperature(parsed)
            if not has_planners(node):
                raise OllamaError(503, "no agent in the network can plan a question yet: start nodes with --model")
        except OllamaError as exc:
            return exc.response()
        options = replace(parsed.symphony.options(), context=talk.context, temperature=temperature)
        submitted = node.submit(talk.question, options)
        if parsed.stream:
            return NdjsonResponse(_stream(node, parsed, talk, submitted, now_text))
        record = await answer_or_cancel(request, node, submitted)
        if record is None:
            return Response(status_code=499)
        if record.status != "done":
            return OllamaError(failure_status(record), f"task {record.task_id}: {record.error or 'failed'}").response()
        return JSONResponse(_final(parsed, talk, now_text(), record, node.now(), text=str(record.answer)))

    async def chat(request: Request) -> Response:
        return await ask(request, ChatRequest)

    async def generate(request: Request) -> Response:
        return await ask(request, GenerateRequest)

    return [Route("/api/version", version), Route("/api/tags", tags), Route("/api/ps", running),
            Route("/api/show", show, methods=["POST"]), Route("/api/chat", chat, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"])]


def _line(parsed: _Request, created_at: str, text: str, *, done: bool) -> dict[str, Any]:
    """One reply object of a chat (``message``) or generate (``response``) request."""
    body: dict[str, Any] = {"model": parsed.model, "created_at": created_at, "done": done}
    if isinstance(parsed, ChatRequest):
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    if done:
        body["done_reason"] = "stop"
    return body


def _final(parsed: _Request, talk: Conversation, created_at: str, record: TaskRecord, now: float, *,
           text: str) -> dict[str, Any]:
    """The ``done`` object: Ollama's token counts (summed over the network), durations (ns), and
    Symphony's extension with what of the conversation went to the network."""
    prompt, completion = usage(record)
    total_ns = int(max(0.0, now - record.submitted_at) * 1e9)
    return {**_line(parsed, created_at, text, done=True), "total_duration": total_ns, "load_duration": 0,
            "prompt_eval_count": prompt, "prompt_eval_duration": 0, "eval_count": completion,
            "eval_duration": total_ns, "symphony": extension(record, talk)}


async def _stream(node: NodeApi, parsed: _Request, talk: Conversation, submitted: TaskRecord,
                  now_text: Callable[[], str]) -> AsyncIterator[str]:
    """NDJSON lines of one question: empty ones while the network works, the answer, the ``done`` line."""
    yield _ndjson(_line(parsed, now_text(), "", done=False))
    async for record in wait_with_keepalives(node, submitted):
        if record is None:
            yield _ndjson(_line(parsed, now_text(), "", done=False))  # keep-alive a JSON-per-line client can parse
        elif record.status == "done":
            yield _ndjson(_line(parsed, now_text(), str(record.answer), done=False))
            yield _ndjson(_final(parsed, talk, now_text(), record, node.now(), text=""))
        else:
            yield _ndjson({"error": f"task {record.task_id}: {record.error or 'failed'}"})


def _ndjson(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str) + "\n"
