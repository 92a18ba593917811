"""Team tasks through the node's API (issue #21): post a graph of sub-tasks, read how the team did.

- ``POST /v1/teams``          ``{"library": "text_utils", "p": 0.9}`` (a bench library with its tests), or
                              ``{"subtasks": [{"id", "spec", "depends_on"}], "tests": {"id": "def test_id(): ..."}}``;
                              options: ``"mode": "cnet"`` (award sub-tasks by contract net before plain
                              claiming), ``"gap_grace_s"`` (how long a fix gap excludes the agent that posted it);
                              202 with the team's view (its ``board`` ID). The graph is checked as the
                              network checks an announcement (``board.service.parse_graph``: caps, ids,
                              no cycle); the body is capped like every body (``api.http.MAX_BODY_BYTES``).
- ``GET  /v1/teams``          every board this node holds, without the per-sub-task rows, and what the
                              node refused from the network before it reached a board (``rejected``)
- ``GET  /v1/teams/{board}``  one board: sub-tasks (claimants, holder, producer, content), conflicts,
                              extra artifacts, this node's agent (executed, wasted, tokens, idle s), and on
                              the poster the sandboxed test score once the board is complete; ``gaps``:
                              each capability gap, who posted it and why, who closed it
- ``POST /v1/teams/{board}/gaps``  ``{"subtask", "need", "blocks", "depends_on"}``: a gap signed by this
                              node, posted to a running board: a new sub-task (spec ``need``) that the
                              unfinished sub-task ``blocks`` now waits for; 201 with the gap's row, 404
                              no such board, 409 the board is finished, 422 a gap that does not fit

The routes sit behind the same ``ApiGuard`` as the rest of the API (``api.app``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from symphony.api.http import BadBody, read_body
from symphony.api.node_api import NodeApi
from symphony.board import (MAX_GAP_GRACE_S, MAX_NEED_CHARS, MAX_SUBTASKS, SubtaskId, TaskGraph, gap_view,
                            parse_graph, parse_tests)
from symphony.errors import ConfigError


class TeamRequest(BaseModel):
    """Body of ``POST /v1/teams``: a bench library, or sub-tasks of one's own (with optional tests)."""

    model_config = ConfigDict(extra="forbid")

    library: str | None = Field(default=None, max_length=64)
    p: float = Field(default=0.9, ge=0.0, le=1.0)
    subtasks: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_SUBTASKS)
    tests: dict[str, str] = Field(default_factory=dict, max_length=MAX_SUBTASKS)
    gap_grace_s: float | None = Field(default=None, ge=0.0, le=MAX_GAP_GRACE_S)  # None: the node's default
    mode: Literal["claim", "cnet"] = "claim"  # cnet: sub-tasks awarded by announce/bid/award first

    def graph(self) -> tuple[TaskGraph, dict[str, str]]:
        """The graph and tests asked for. Raises ``ConfigError`` for a bad graph or a test of no sub-task."""
        if (self.library is None) == (self.subtasks is None):
            raise ConfigError("give either library (with p) or subtasks")
        if self.library is not None:
            from symphony.bench.teams import library_task  # the bench's libraries: loaded only when asked for

            return library_task(self.library, self.p)
        graph = parse_graph(self.subtasks)
        return graph, parse_tests(self.tests, graph)


class GapRequest(BaseModel):
    """Body of ``POST /v1/teams/{board}/gaps``: the new sub-task, its spec, and the sub-task that waits for it."""

    model_config = ConfigDict(extra="forbid")

    subtask: SubtaskId
    need: str = Field(min_length=1, max_length=MAX_NEED_CHARS)
    blocks: SubtaskId
    depends_on: list[SubtaskId] = Field(default_factory=list, max_length=16)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def team_routes(node: NodeApi) -> list[Route]:
    """The ``/v1/teams`` routes of ``node``."""

    async def post_team(request: Request) -> JSONResponse:
        if node.teams is None:
            return _error(503, "this node's task boards are not running")
        try:
            body = await read_body(request, TeamRequest)
            graph, tests = body.graph()
            team = node.teams.post(graph, tests=tests, library=body.library, gap_grace_s=body.gap_grace_s,
                                   mode=body.mode)
        except BadBody as exc:
            return _error(exc.status, str(exc))
        except ConfigError as exc:
            return _error(422, str(exc))
        view = node.teams.view(team.board.board_id)
        return JSONResponse(view, status_code=202)

    async def list_teams(request: Request) -> JSONResponse:
        if node.teams is None:
            return JSONResponse({"teams": [], "rejected": {}})
        return JSONResponse({"teams": node.teams.views(), "rejected": dict(node.teams.rejected)})

    async def get_team(request: Request) -> JSONResponse:
        view = None if node.teams is None else node.teams.view(request.path_params["board"])
        return _error(404, "no such team task on this node") if view is None else JSONResponse(view)

    async def post_gap(request: Request) -> JSONResponse:
        board_id = request.path_params["board"]
        if node.teams is None or board_id not in node.teams.teams:
            return _error(404, "no such team task on this node")
        try:
            body = await read_body(request, GapRequest)
            if node.teams.teams[board_id].complete():
                return _error(409, "this team task is finished: its agents have stopped")
            gap = await node.teams.post_gap(board_id, body.subtask, body.need, body.blocks, body.depends_on)
        except BadBody as exc:
            return _error(exc.status, str(exc))
        except ConfigError as exc:
            return _error(422, str(exc))
        return JSONResponse(gap_view(node.teams.teams[board_id].replica.board, gap), status_code=201)

    return [Route("/v1/teams", post_team, methods=["POST"]), Route("/v1/teams", list_teams, methods=["GET"]),
            Route("/v1/teams/{board}", get_team), Route("/v1/teams/{board}/gaps", post_gap, methods=["POST"])]
