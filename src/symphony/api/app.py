"""Local HTTP API of a node. Bound to 127.0.0.1 by default; JSON in and out.

- ``GET  /v1/node``              this node: ID, addresses, lamport, traffic, rejection counters
- ``GET  /v1/peers``             every agent in the ledger with connectivity and availability
- ``GET  /v1/ledger``            all ledger records (decoded capability vectors included)
- ``GET  /v1/ledger/{agent_id}`` one record
- ``POST /v1/node/record``       UPDATE(field, value) of this node's own record
- ``POST /v1/tasks``             ask the network a question (``wait: true`` blocks until answered)
- ``GET  /v1/tasks/{task_id}``   a question's status, answer and trace
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from symphony.pipeline.service import AskOptions
from symphony.protocol.messages import Hardware, LedgerRecord

if TYPE_CHECKING:
    from symphony.node.daemon import Node

MAX_BODY_BYTES = 64 * 1024
UPDATABLE_FIELDS = frozenset({"name", "tags", "models", "hardware", "availability", "capability"})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_json(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"request body exceeds {MAX_BODY_BYTES} bytes")
    return json.loads(body)


class AskRequest(BaseModel):
    """Body of ``POST /v1/tasks``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=32_000)
    cots: int = Field(default=3, ge=1, le=9)
    strategy: Literal["cosine", "random", "linucb"] = "cosine"
    top_l: int = Field(default=8, ge=1, le=256)
    max_steps: int = Field(default=5, ge=1, le=12)
    deadline_s: float = Field(default=300.0, gt=0, le=3600)
    answer_kind: Literal["number", "option", "yes_no", "text", "code"] | None = None
    wait: bool = False

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is empty")
        return value

    def options(self) -> AskOptions:
        return AskOptions(cots=self.cots, strategy=self.strategy, top_l=self.top_l, max_steps=self.max_steps,
                          deadline_s=self.deadline_s, answer_kind=self.answer_kind)


def _task_view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "done"}


def create_app(node: Node) -> Starlette:
    async def get_node(request: Request) -> JSONResponse:
        return JSONResponse(node.info())

    async def get_peers(request: Request) -> JSONResponse:
        return JSONResponse({"peers": node.peers()})

    async def get_ledger(request: Request) -> JSONResponse:
        records = node.ledger_view()
        return JSONResponse({"count": len(records), "records": records})

    async def get_record(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        row = node.record_view(agent_id)
        if row is None:
            return _error(404, f"no record for agent {agent_id[:64]!r}")
        return JSONResponse(row)

    async def update_record(request: Request) -> JSONResponse:
        try:
            fields = await _read_json(request)
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
        assert node.runtime is not None
        record = await node.runtime.gossip.update(**fields)
        return JSONResponse({"lamport": record.lamport})

    async def create_task(request: Request) -> JSONResponse:
        try:
            body = await _read_json(request)
            if not isinstance(body, dict):
                raise ValueError("expected an object")
            ask = AskRequest.model_validate(body)
        except ValidationError as exc:
            return _error(422, f"invalid request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        except ValueError as exc:
            return _error(400, f"body must be a JSON object: {exc}")
        record = node.submit(ask.question, ask.options())
        if ask.wait:
            await record["done"].wait()
        return JSONResponse(_task_view(record), status_code=200 if ask.wait else 202)

    async def get_task(request: Request) -> JSONResponse:
        record = node.task_records.get(request.path_params["task_id"])
        if record is None:
            return _error(404, "no such task on this node")
        return JSONResponse(_task_view(record))

    return Starlette(
        routes=[
            Route("/v1/tasks", create_task, methods=["POST"]),
            Route("/v1/tasks/{task_id}", get_task),
            Route("/v1/node", get_node),
            Route("/v1/peers", get_peers),
            Route("/v1/ledger", get_ledger),
            Route("/v1/ledger/{agent_id}", get_record),
            Route("/v1/node/record", update_record, methods=["POST"]),
        ]
    )
