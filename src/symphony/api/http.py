"""HTTP plumbing shared by the API's modules: bounded JSON bodies, Server-Sent Events, options."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from symphony.pipeline.service import AskOptions

MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class BodyTooLarge(ValueError):
    """The request body is over ``MAX_BODY_BYTES`` (reading stops there)."""


class BadBody(ValueError):
    """A body that is not the JSON object a route takes; ``status`` is 400, or 413 when too large."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, kind: type[M]) -> M:
    """Read, parse and validate the body as ``kind``. Raises ``BadBody`` naming the field at fault
    (and saying so when the field is one this network does not support), for each face to put in its
    own error shape."""
    try:
        body = await read_json(request)
    except BodyTooLarge as exc:
        raise BadBody(413, str(exc)) from None
    except ValueError as exc:
        raise BadBody(400, f"body must be a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise BadBody(400, "body must be a JSON object")
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        hint = " (not supported by this network)" if error["type"] == "extra_forbidden" else ""
        raise BadBody(400, f"invalid {where}: {error['msg']}{hint}") from None


async def read_json(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    return json.loads(body)


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that stops its generator as soon as the client disconnects
    (whatever ASGI version the server speaks), so waiting generators clean up at once."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:
            async def stream() -> None:
                await self.stream_response(send)
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            await self.listen_for_disconnect(receive)
            tg.cancel_scope.cancel()


async def wait_unless_client_leaves(request: Request, wait: Callable[[], Awaitable[T]]) -> T | None:
    """What ``wait()`` returns (called after the body was read); None as soon as the client disconnects."""
    result: T | None = None
    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        result = await wait()
        tg.cancel_scope.cancel()
    return result


def sse(data: Any, *, event_id: int | None = None) -> str:
    """One Server-Sent Event whose data is ``data`` as JSON."""
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}data: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


class OptionsBody(BaseModel):
    """Symphony's options of one question (``POST /v1/tasks``, ``"symphony"`` in chat completions)."""

    model_config = ConfigDict(extra="forbid")

    # defaults: AskOptions', the same for `symphony ask` and `symphony demo`
    cots: int = Field(default=AskOptions.cots, ge=1, le=9)  # the most chains
    # adaptive chains (``pipeline.adaptive``): start first_cots, grow to cots while fewer than agree agree
    adaptive: bool = AskOptions.adaptive
    first_cots: int = Field(default=AskOptions.first_cots, ge=1, le=9)
    agree: int = Field(default=AskOptions.agree, ge=1, le=9)
    strategy: Literal["cosine", "random", "linucb"] = "cosine"
    top_l: int = Field(default=AskOptions.top_l, ge=1, le=256)
    max_steps: int = Field(default=AskOptions.max_steps, ge=1, le=12)
    deadline_s: float = Field(default=AskOptions.deadline_s, gt=0, le=3600)
    answer_kind: Literal["number", "option", "yes_no", "text", "code"] | None = None
    # fault knobs (issue 17; README "Fault knobs"); None: each planner node's own default
    redundancy: int | None = Field(default=None, ge=1, le=2)
    hop_timeout: Literal["adaptive", "off"] | Annotated[float, Field(gt=0, le=3600)] | None = None
    replans: int | None = Field(default=None, ge=0, le=3)
    disclosure: Literal["full", "minimal"] | None = None
    priority: int = Field(default=0, ge=0, le=9)
    latency_budget_ms: float | None = Field(default=None, gt=0, le=3_600_000)

    def options(self) -> AskOptions:
        return AskOptions(cots=self.cots, adaptive=self.adaptive, first_cots=self.first_cots, agree=self.agree,
                          strategy=self.strategy, top_l=self.top_l, max_steps=self.max_steps,
                          deadline_s=self.deadline_s, answer_kind=self.answer_kind, redundancy=self.redundancy,
                          hop_timeout=self.hop_timeout, replans=self.replans, disclosure=self.disclosure,
                          priority=self.priority, latency_budget_ms=self.latency_budget_ms)
