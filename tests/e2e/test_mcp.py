"""``symphony mcp`` driven by the official MCP client (``mcp.client.stdio`` + ``ClientSession``) the way
Claude Desktop drives it: a real ``python -m symphony mcp`` subprocess in front of a real node process
(``scripted:arith``) whose API requires its token, found through ``--data-dir``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from symphony.testing import NodeProcess, open_swarm

pytestmark = pytest.mark.e2e
T = TypeVar("T")


@pytest.fixture(scope="module")
def arith(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node answering arithmetic, its API behind a bearer token (``--api-auth token``)."""
    with open_swarm(tmp_path_factory.mktemp("mcp")) as swarm:
        node = swarm.spawn("arith", args=("--model", "scripted:arith", "--api-auth", "token")).wait_ready()
        yield node


def with_session(args: list[str], use: Callable[[ClientSession], Awaitable[T]], cwd: Path) -> T:
    """Start ``python -m symphony mcp ARGS`` over stdio, initialize a session, and run ``use`` on it.
    Leaving ``stdio_client`` closes the server's stdin and waits for it to exit (the SDK kills it if not)."""
    # the SDK starts servers with a minimal environment (mcp.client.stdio.get_default_environment):
    # pass PYTHONPATH on, so that the server runs this checkout's code as the node processes do
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else None
    server = StdioServerParameters(command=sys.executable, args=["-m", "symphony", "mcp", *args], cwd=cwd, env=env)

    async def main() -> T:
        with anyio.fail_after(60):
            async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return await use(session)

    return anyio.run(main)


def test_ask_tool_answers_and_ledger_resource_lists_the_node(arith: NodeProcess, tmp_path: Path) -> None:
    async def use(session: ClientSession) -> tuple[list[str], object, object, str]:
        tools = [tool.name for tool in (await session.list_tools()).tools]
        answered = await session.call_tool("ask", {"question": "What is (17 + 25) * 2?", "cots": 1})
        refused = await session.call_tool("ask", {"question": "What is 2 + 2?", "cots": 0})
        ledger = await session.read_resource("symphony://ledger")
        return tools, answered, refused, ledger.contents[0].text

    tools, answered, refused, ledger_text = with_session(["--data-dir", str(arith.data_dir)], use, tmp_path)
    assert "ask" in tools
    assert not answered.is_error, answered.content
    result = answered.structured_content
    assert result["answer"] == "84"
    assert len(result["chains"]) == 1 and result["chains"][0]["ok"] and result["chains"][0]["steps"] >= 1
    assert result["vote"][0]["answer"] == "84" and result["prompt_tokens"] + result["completion_tokens"] > 0
    task = arith.get(f"/v1/tasks/{result['task_id']}")  # the task ID is the node's own
    assert task["status"] == "done" and task["answer"] == "84"
    assert refused.is_error and "cots" in refused.content[0].text  # the node's 422, passed on
    ledger = json.loads(ledger_text)
    assert arith.agent_id in {record["agent_id"] for record in ledger["records"]}


def test_a_refused_token_is_a_tool_error_with_the_nodes_message(arith: NodeProcess, tmp_path: Path) -> None:
    async def use(session: ClientSession) -> object:
        return await session.call_tool("ask", {"question": "What is 1 + 1?"})

    result = with_session(["--api", str(arith.info["api"]), "--api-token", "not-the-token"], use, tmp_path)
    assert result.is_error
    assert "HTTP 401" in result.content[0].text and "needs its token" in result.content[0].text
