"""Local HTTP API of a node. Bound to 127.0.0.1 by default; JSON in and out. Every route is
behind ``api.guard.ApiGuard``: own Host and Origin only, JSON bodies only, and a bearer token
when ``--api`` binds a non-loopback address or the node runs with ``--api-auth token``.

- ``GET  /v1/node``              this node: ID, addresses, lamport, traffic, rejection counters
- ``GET  /v1/peers``             every agent in the ledger with connectivity and availability
- ``GET  /v1/ledger``            all ledger records (decoded capability vectors included)
- ``GET  /v1/ledger/{agent_id}`` one record
- ``POST /v1/node/record``       UPDATE(field, value) of this node's own record
- ``POST /v1/tasks``             ask the network a question (``wait: true`` blocks until answered)
- ``GET  /v1/tasks/{task_id}``   a question's status, answer and trace
- ``POST /v1/teams``, ``GET /v1/teams[/{board}]``  team tasks on the shared task board (``api.teams``)
- ``GET  /v1/events``            Server-Sent Events: a ``snapshot`` first, then live events (``api.events``)
- ``GET  /`` or ``/dashboard``   the live dashboard (one self-contained page fed by ``/v1/events``)
- ``GET  /metrics``              Prometheus text format (``api.metrics``)
- ``GET  /v1/models``, ``POST /v1/chat/completions``  OpenAI-compatible (``api.openai_compat``)
- ``GET  /.well-known/agent-card.json``  the A2A agent card (``api.a2a``; public, like the dashboard page)
- ``GET  /health``               liveness (it answers) and readiness (``ready``: a planner is available)
- ``POST /api/chat``, ``GET /api/tags``, ...         Ollama-compatible (``api.ollama_compat``)
- ``POST /v1/messages``                             Anthropic Messages (``api.anthropic_compat``)

Any other path or method answers 404/405 in OpenAI's JSON error shape, which this API's own
``{"error": message}`` readers also understand as an error.

The app sees its node only through ``api.node_api.NodeApi``; ``api.server`` serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

import anyio
from pydantic import Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from symphony.api.a2a import a2a_routes
from symphony.api.guard import ApiGuard
from symphony.api.http import EventStreamResponse, OptionsBody, read_json, sse
from symphony.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from symphony.api.metrics import count_http_errors, render
from symphony.api.node_api import NodeApi
from symphony.api.anthropic_compat import anthropic_routes
from symphony.api.ollama_compat import ollama_routes
from symphony.api.openai_compat import error_response, is_openai_path, openai_routes
from symphony.api.openai_request import OpenAIError
from symphony.api.teams import team_routes
from symphony.api.views import ledger_view, node_view, peers_view, snapshot
from symphony.ledger.store import QueryFilter
from symphony.pipeline.service import EXECUTOR_TAG, PLANNER_TAG
from symphony.protocol.messages import Hardware, LedgerRecord

KEEPALIVE_S = 5.0
UPDATABLE_FIELDS = frozenset({"name", "tags", "models", "hardware", "availability", "capability"})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class AskRequest(OptionsBody):
    """Body of ``POST /v1/tasks``."""

    question: str = Field(min_length=1, max_length=32_000)
    wait: bool = False
    # chosen by the client so that, if this node dies, it can re-ask another node under the same
    # ID and the planners hand back the chains they already finished (durable task record)
    task_id: str | None = Field(default=None, pattern=r"^[0-9A-Za-z_-]{8,64}$")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is empty")
        return value


def _dashboard_html() -> str:
    return resources.files("symphony.api").joinpath("dashboard.html").read_text(encoding="utf-8")


async def _event_stream(node: NodeApi) -> AsyncIterator[str]:
    """``GET /v1/events``: the snapshot, then every bus event; every ``KEEPALIVE_S`` of quiet a
    keep-alive comment and a fresh ``peers`` list (availability also changes by TTL expiry,
    which is no event). Ends when the bus cuts this client off for being too slow."""
    async with node.bus.subscribe() as events:
        yield sse({"type": "snapshot", "seq": node.bus.seq, "data": snapshot(node)})
        refresh_at = anyio.current_time() + KEEPALIVE_S
        while True:
            with anyio.move_on_after(max(0.0, refresh_at - anyio.current_time())):
                try:
                    event = await events.receive()
                except anyio.EndOfStream:
                    return
                yield sse(event, event_id=event["seq"])
                continue
            refresh_at = anyio.current_time() + KEEPALIVE_S
            yield ": keep-alive\n\n"
            yield sse({"type": "peers", "seq": node.bus.seq, "data": {"peers": peers_view(node)}})


def create_app(node: NodeApi, *, token: str | None) -> ASGIApp:
    """The API of ``node``, every route behind ``ApiGuard`` (Host, Origin, JSON checks, and the bearer
    ``token`` unless it is None)."""
    async def get_node(request: Request) -> JSONResponse:
        return JSONResponse(node_view(node.status()))

    async def get_peers(request: Request) -> JSONResponse:
        return JSONResponse({"peers": peers_view(node)})

    async def get_ledger(request: Request) -> JSONResponse:
        records = ledger_view(node)
        return JSONResponse({"count": len(records), "records": records})

    async def get_record(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        entry = node.ledger_entry(agent_id)
        if entry is None:
            return _error(404, f"no record for agent {agent_id[:64]!r}")
        return JSONResponse(entry.to_wire())

    async def update_record(request: Request) -> JSONResponse:
        try:
            fields = await read_json(request)
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            return _error(400, f"body must be a JSON object: {exc}")
        if not isinstance(fields, dict) or not fields:
            return _error(400, "body must be a non-empty JSON object of fields to update")
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            return _error(400, f"cannot update {sorted(unknown)}; updatable: {sorted(UPDATABLE_FIELDS)}")
        try:
            if "hardware" in fields:
                fields["hardware"] = Hardware.model_validate(fields["hardware"])
            LedgerRecord.model_validate({"agent_id": node.agent_id, "lamport": 0, "issued_at": 0, **fields})
        except ValidationError as exc:
            return _error(422, f"invalid field value: {exc.errors()[0]['msg']}")
        record = await node.update_record(**fields)
        return JSONResponse({"lamport": record.lamport})

    async def create_task(request: Request) -> JSONResponse:
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("expected an object")
            ask = AskRequest.model_validate(body)
        except ValidationError as exc:
            return _error(422, f"invalid request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        except ValueError as exc:
            return _error(400, f"body must be a JSON object: {exc}")
        existing = node.task(ask.task_id or "")
        if existing is not None and existing.question != ask.question:
            return _error(409, f"task {ask.task_id} exists on this node with another question")
        record = existing or node.submit(ask.question, ask.options(), task_id=ask.task_id)
        if ask.wait:
            record = await node.wait_task(record.task_id)
        return JSONResponse(record.to_wire(), status_code=200 if ask.wait else 202)

    async def get_task(request: Request) -> JSONResponse:
        record = node.task(request.path_params["task_id"])
        if record is None:
            return _error(404, "no such task on this node")
        return JSONResponse(record.to_wire())

    async def get_events(request: Request) -> Response:
        if node.bus.subscribers >= node.bus.max_subscribers:
            return _error(503, f"too many event subscribers (limit {node.bus.max_subscribers}); retry later")
        return EventStreamResponse(_event_stream(node))

    async def get_metrics(request: Request) -> Response:
        return Response(render(node.registry), media_type=METRICS_CONTENT_TYPE)

    async def get_dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(dashboard, headers={"Cache-Control": "no-cache"})

    async def get_health(request: Request) -> JSONResponse:
        planners = node.has_agents(QueryFilter(tags_any=frozenset({PLANNER_TAG})))
        executors = node.has_agents(QueryFilter(tags_any=frozenset({EXECUTOR_TAG})))
        return JSONResponse({"status": "ok", "ready": planners and executors,
                             "agents": {"planners": planners, "executors": executors}})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        return error_response(OpenAIError(status, f"{request.method} {request.url.path[:200]}: {detail}",
                                          code="unknown_url" if status == 404 else None))

    dashboard = _dashboard_html()
    routes = Starlette(
        routes=[
            Route("/", get_dashboard),
            Route("/dashboard", get_dashboard),
            Route("/metrics", get_metrics),
            Route("/v1/events", get_events),
            *openai_routes(node),
            *a2a_routes(node, token_required=token is not None),
            *ollama_routes(node),
            *anthropic_routes(node),
            Route("/v1/tasks", create_task, methods=["POST"]),
            Route("/v1/tasks/{task_id}", get_task),
            *team_routes(node),
            Route("/v1/node", get_node),
            Route("/v1/peers", get_peers),
            Route("/v1/ledger", get_ledger),
            Route("/v1/ledger/{agent_id}", get_record),
            Route("/v1/node/record", update_record, methods=["POST"]),
            Route("/health", get_health),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    guarded = ApiGuard(routes, token=token, is_openai_path=is_openai_path, registry=node.registry)
    return count_http_errors(guarded, node.registry)
