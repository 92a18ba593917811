"""Local HTTP API of a node. Bound to 127.0.0.1 by default; JSON in and out.

- ``GET  /v1/node``              this node: ID, addresses, lamport, traffic, rejection counters
- ``GET  /v1/peers``             every agent in the ledger with connectivity and availability
- ``GET  /v1/ledger``            all ledger records (decoded capability vectors included)
- ``GET  /v1/ledger/{agent_id}`` one record
- ``POST /v1/node/record``       UPDATE(field, value) of this node's own record
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

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
        for row in node.ledger_view():
            if row["agent_id"] == agent_id:
                return JSONResponse(row)
        return _error(404, f"no record for agent {agent_id[:64]!r}")

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
        assert node.service is not None
        record = await node.service.update(**fields)
        return JSONResponse({"lamport": record.lamport})

    return Starlette(
        routes=[
            Route("/v1/node", get_node),
            Route("/v1/peers", get_peers),
            Route("/v1/ledger", get_ledger),
            Route("/v1/ledger/{agent_id}", get_record),
            Route("/v1/node/record", update_record, methods=["POST"]),
        ]
    )
