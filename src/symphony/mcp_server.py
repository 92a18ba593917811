"""``symphony mcp``: the network as an MCP server over stdio, for Claude Desktop and IDE agents.

It is a client of one node's HTTP API, as ``symphony ask`` is, not a second node (DESIGN: "the MCP
server is a client of a node's API"): it holds no key and joins no network, so an MCP host may start
and stop it freely while the node keeps running. Built on the official ``mcp`` package's
``MCPServer`` (mcp 1.x called it FastMCP).

- tool ``ask``: a question in (with ``cots``, ``max_steps``, ``deadline_s``); the voted answer and a
  short trace out (task ID, vote, chains, tokens), as structured content and as JSON text.
- resources ``symphony://ledger``, ``symphony://peers``, ``symphony://node``: the node's ledger
  replica, the agents it knows, and the node itself (``GET /v1/ledger``, ``/v1/peers``, ``/v1/node``).

A node that cannot be reached, refuses the request (a wrong token, a bad option) or cannot answer
the question gives an MCP tool error (``isError``) carrying the node's own message, which the model
reads; stdout is the MCP channel, so nothing else is ever printed there.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel

try:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ToolError
except ImportError as exc:  # an optional extra: say how to get it instead of a traceback
    from symphony.errors import ConfigError

    raise ConfigError("`symphony mcp` needs the official MCP SDK: pip install 'mcp==2.3.0' "
                      "(the project's `mcp` extra)") from exc

from symphony import __version__
from symphony.pipeline.service import AskOptions

#: seconds added to the question's own deadline before the HTTP wait gives up
WAIT_MARGIN_S = 30.0
INSTRUCTIONS = ("Symphony is a decentralized network of small language-model agents. Use the `ask` tool for "
                "questions the network should answer (it plans, runs several chains of thought on different "
                "agents, and votes); it can take minutes with real models. The ledger resource lists the agents.")


class VoteRow(BaseModel):
    """One answer of the weighted vote."""

    answer: str | None
    weight: float
    chains: list[str]


class ChainSummary(BaseModel):
    """One chain of thought: who planned it, how many sub-tasks it ran, and what it concluded."""

    index: int
    planner: str
    ok: bool
    answer: str | None
    steps: int
    error: str | None = None


class AskResult(BaseModel):
    """What the ``ask`` tool returns: the answer and a short trace (``GET /v1/tasks/ID`` has all of it)."""

    task_id: str
    answer: str | None
    vote: list[VoteRow]
    chains: list[ChainSummary]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class NodeClient:
    """The node API the server talks to: ``base`` URL and the headers that authenticate it."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base.rstrip("/")
        self.headers = headers

    async def request(self, method: str, path: str, *, body: Any = None, timeout: float = 10.0) -> Any:
        """The JSON the node answers; ``ToolError`` with the node's message if it cannot or will not."""
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.request(method, self.base + path, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise ToolError(f"no node API at {self.base} ({exc!r}): start one with `symphony node`, "
                            "or give `symphony mcp` the right --api") from exc
        try:
            data = response.json()
        except ValueError:
            raise ToolError(f"{self.base}{path}: HTTP {response.status_code} without JSON: "
                            f"{response.text[:300]}") from None
        if response.status_code >= 400:
            detail = data.get("error", data) if isinstance(data, dict) else data
            raise ToolError(f"{self.base}{path}: HTTP {response.status_code}: {detail}")
        return data

    async def resource(self, path: str) -> str:
        """``GET path`` as pretty JSON text; ``ResourceError`` with the node's message if it fails."""
        try:
            return json.dumps(await self.request("GET", path), indent=2)
        except ToolError as exc:
            raise ResourceError(str(exc)) from None


def summarize(record: dict[str, Any]) -> AskResult:
    """The short trace of a finished task record (``GET /v1/tasks/ID``'s shape); ``ToolError`` unless done."""
    if record.get("status") != "done":
        raise ToolError(f"task {record.get('task_id')}: {record.get('status')}: "
                        f"{record.get('error') or 'the network gave no answer'}")
    trace = record["trace"]
    chains = [ChainSummary(index=c["index"], planner=c["planner"], ok=c["ok"], answer=c.get("answer"),
                           steps=len(c.get("trace", {}).get("steps", [])), error=c.get("error"))
              for c in trace["chains"]]
    return AskResult(task_id=record["task_id"], answer=record.get("answer", trace["answer"]),
                     vote=[VoteRow(answer=t["answer"], weight=t["weight"], chains=t["chains"]) for t in trace["vote"]],
                     chains=chains, prompt_tokens=trace["prompt_tokens"],
                     completion_tokens=trace["completion_tokens"], latency_s=round(trace["latency_ms"] / 1000, 3))


def build_server(base: str, headers: dict[str, str]) -> MCPServer:
    """The MCP server for the node API at ``base`` (``headers`` carry its bearer token, if any)."""
    node = NodeClient(base, headers)
    server: MCPServer = MCPServer("symphony", instructions=INSTRUCTIONS, version=__version__)

    @server.tool()
    async def ask(question: str, cots: int = AskOptions.cots, max_steps: int = AskOptions.max_steps,
                  deadline_s: float = AskOptions.deadline_s) -> AskResult:
        """Ask the Symphony network a question; returns the voted answer, the vote and each chain.

        cots: chains of thought on different planners (1-9); max_steps: most sub-tasks per chain (1-12);
        deadline_s: seconds before the network gives up."""
        body = {"question": question, "cots": cots, "max_steps": max_steps, "deadline_s": deadline_s, "wait": True}
        return summarize(await node.request("POST", "/v1/tasks", body=body, timeout=deadline_s + WAIT_MARGIN_S))

    @server.resource("symphony://ledger", name="ledger", mime_type="application/json",
                     description="The node's replica of the capability ledger: every agent's signed record.")
    async def ledger() -> str:
        return await node.resource("/v1/ledger")

    @server.resource("symphony://peers", name="peers", mime_type="application/json",
                     description="The agents this node knows, with connectivity and availability.")
    async def peers() -> str:
        return await node.resource("/v1/peers")

    @server.resource("symphony://node", name="node", mime_type="application/json",
                     description="The node this server talks to: ID, addresses, traffic and counters.")
    async def this_node() -> str:
        return await node.resource("/v1/node")

    return server


def serve_stdio(base: str, headers: dict[str, str]) -> None:
    """Serve MCP over stdin/stdout until the host closes it."""
    build_server(base, headers).run("stdio")
