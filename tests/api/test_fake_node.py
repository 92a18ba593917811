"""The API needs nothing of a node but ``NodeApi``: served over a fake node (no network, no runtime,
a fixed clock) through ``httpx.ASGITransport``, its routes answer from the node's values alone."""

from __future__ import annotations

from typing import Any

import httpx
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from symphony.api.app import create_app
from symphony.api.node_api import NodeApi
from symphony.ledger.store import QueryFilter
from symphony.node.bus import Event, EventBus
from symphony.node.snapshots import LedgerEntry, NodeStatus, PeerState
from symphony.node.tasks import TaskBook, TaskRecord
from symphony.pipeline.service import AskOptions
from symphony.protocol.messages import LedgerRecord

NOW = 1_700_000_123.75
BASE = "http://127.0.0.1:8470"


class FakeNode:
    """A node reduced to ``NodeApi``: tasks stay running until the test finishes them."""

    agent_id = "fake"
    started_at = NOW - 60

    def __init__(self) -> None:
        self.bus = EventBus(clock=self.now)
        self.registry = CollectorRegistry()
        self.book = TaskBook(keep=10)
        self.submitted = trio.Event()

    def now(self) -> float:
        return NOW

    def status(self) -> NodeStatus:
        return NodeStatus(agent_id=self.agent_id, name="fake", addrs=[], api_url=BASE, lamport=3, uptime_s=60.0,
                          connected_peers=0, ledger_size=0, rejected={}, refused={}, event_log={},
                          task_records=len(self.book), traffic={})

    def peers(self) -> list[PeerState]:
        return []

    def ledger_entries(self) -> list[LedgerEntry]:
        return []

    def ledger_entry(self, agent_id: str) -> LedgerEntry | None:
        return None

    def has_agents(self, where: QueryFilter) -> bool:
        return True

    def tasks(self) -> list[TaskRecord]:
        return list(self.book.values())

    def task(self, task_id: str) -> TaskRecord | None:
        return self.book.get(task_id)

    def progress(self) -> list[Event]:
        return []

    def submit(self, question: str, options: AskOptions, *, task_id: str | None = None) -> TaskRecord:
        record = TaskRecord(task_id=task_id or "task-0001", question=question, submitted_at=NOW)
        self.book.add(record)
        self.submitted.set()
        return record

    def cancel(self, task_id: str) -> None:
        raise AssertionError("no client leaves in these tests")

    async def wait_task(self, task_id: str) -> TaskRecord:
        return await self.book.wait(task_id)

    async def update_record(self, **fields: Any) -> LedgerRecord:
        raise AssertionError("not asked in these tests")


def client(node: NodeApi) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node, token=None)), base_url=BASE)


async def answer_when_asked(node: FakeNode, trace: dict[str, Any]) -> TaskRecord:
    await node.submitted.wait()
    final = node.book["task-0001"].answered(trace)
    node.book.finish(final)
    return final


async def test_a_waiting_task_returns_its_final_record() -> None:
    """``POST /v1/tasks`` with ``wait`` answers the record the node finished, as its ``to_wire()``."""
    node = FakeNode()
    trace = {"answer": "42", "prompt_tokens": 3, "completion_tokens": 4}
    async with client(node) as http, trio.open_nursery() as nursery:
        nursery.start_soon(answer_when_asked, node, trace)
        reply = await http.post("/v1/tasks", json={"question": "What is 6 * 7?", "wait": True})
        shown = (await http.get("/v1/tasks/task-0001")).json()
    assert reply.status_code == 200 and reply.json()["answer"] == "42"
    assert reply.json() == shown == node.book["task-0001"].to_wire()


async def test_openai_timestamps_come_from_the_node_clock() -> None:
    """The model list and a chat completion say ``created`` by the node's clock, not the machine's."""
    node = FakeNode()
    body = {"model": "symphony", "messages": [{"role": "user", "content": "What is 6 * 7?"}]}
    async with client(node) as http, trio.open_nursery() as nursery:
        nursery.start_soon(answer_when_asked, node, {"answer": "42", "prompt_tokens": 3, "completion_tokens": 4})
        models = (await http.get("/v1/models")).json()
        chat = (await http.post("/v1/chat/completions", json=body)).json()
    assert models["data"][0]["created"] == int(NOW - 60)
    assert chat["created"] == int(NOW) and chat["choices"][0]["message"]["content"] == "42"
    assert chat["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
