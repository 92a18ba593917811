"""``GET /v1/events`` of real nodes (libp2p + hypercorn, in this process): a snapshot first, then
live ledger, peer and task-progress events; keep-alives; the subscriber leaves with its client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

import symphony.api.app
from symphony.api.server import node_with_api
from symphony.node.bus import EventBus
from symphony.node.config import NodeConfig
from symphony.node.daemon import Node


@asynccontextmanager
async def running(config: NodeConfig) -> AsyncIterator[Node]:
    node = node_with_api(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        yield node
        nursery.cancel_scope.cancel()


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The stream's events as dicts; a comment line becomes ``{"type": "comment"}``."""
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))
        elif line.startswith(":"):
            yield {"type": "comment", "text": line}


async def until(stream: AsyncIterator[dict[str, Any]], done: Any) -> list[dict[str, Any]]:
    seen = []
    async for event in stream:
        seen.append(event)
        if done(event):
            return seen
    raise AssertionError(f"stream ended before the awaited event; saw {[e['type'] for e in seen]}")


def config(tmp_path, name: str, **kwargs: Any) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / name, name=name, api="127.0.0.1:0", heartbeat_interval_s=0.5, **kwargs)


async def test_snapshot_then_every_step_of_a_task(tmp_path) -> None:
    async with running(config(tmp_path, "a", model="scripted:arith")) as node:
        assert node.api_url is not None
        async with httpx.AsyncClient(base_url=node.api_url, timeout=30) as http:
            with trio.fail_after(30):
                async with http.stream("GET", "/v1/events") as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    stream = messages(response)
                    snapshot = await anext(stream)
                    assert snapshot["type"] == "snapshot"
                    assert snapshot["data"]["node"]["agent_id"] == node.agent_id
                    assert [r["agent_id"] for r in snapshot["data"]["ledger"]] == [node.agent_id]
                    assert snapshot["data"]["tasks"] == [] and node.bus.subscribers == 1

                    body = {"question": "What is 6 * 7?", "cots": 1, "max_steps": 3}
                    task = (await http.post("/v1/tasks", json=body)).json()
                    seen = await until(stream, lambda e: e["type"] == "task_record")
            with trio.fail_after(10):
                while node.bus.subscribers:  # the client left: its subscription goes with it
                    await trio.sleep(0.01)

    kinds = [e["type"] for e in seen if e["data"].get("task", e["data"].get("task_id", "")).startswith(task["task_id"])]
    for kind in ("task_submitted", "task_started", "plan_made", "step_assigned", "step_finished", "chain_finished",
                 "task_finished", "task_record"):
        assert kind in kinds, kinds
    assert kinds.index("task_submitted") < kinds.index("plan_made") < kinds.index("chain_finished") < kinds.index("task_record")
    assigned = next(e["data"] for e in seen if e["type"] == "step_assigned")
    assert assigned["executor"] == node.agent_id and assigned["step"] == 0 and assigned["score"] >= 0
    finished = [e["data"] for e in seen if e["type"] == "step_finished"]
    assert [s["answer"] for s in finished] == ["42", "42"] and all(s["ok"] for s in finished)
    record = seen[-1]["data"]
    assert record["status"] == "done" and record["answer"] == "42" and record["trace"]["vote"][0]["answer"] == "42"
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_keepalive_and_a_peer_joining(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(symphony.api.app, "KEEPALIVE_S", 0.2)
    async with running(config(tmp_path, "a")) as a:
        assert a.api_url is not None and a.runtime is not None
        async with httpx.AsyncClient(base_url=a.api_url, timeout=30) as http:
            with trio.fail_after(60):
                async with http.stream("GET", "/v1/events") as response:
                    stream = messages(response)
                    assert (await anext(stream))["type"] == "snapshot"
                    quiet = await until(stream, lambda e: e["type"] == "peers")
                    assert {"type": "comment", "text": ": keep-alive"} in quiet

                    async with running(config(tmp_path, "b", bootstrap=a.runtime.transport.listen_addrs())) as b:
                        joined = await until(stream, lambda e: e["type"] == "record_merged"
                                             and e["data"]["agent"] == b.agent_id)
                        fresh = await until(stream, lambda e: e["type"] == "peers")
    assert {"change": "join", "agent_id": b.agent_id} in [
        {k: e["data"][k] for k in ("change", "agent_id")} for e in joined if e["type"] == "peer"]
    merged = joined[-1]["data"]
    assert merged["record"]["name"] == "b" and merged["peer"]["agent_id"] == b.agent_id
    assert merged["peer"]["available"] is True
    assert [p["name"] for p in fresh[-1]["data"]["peers"]] == ["b"]


async def test_subscribers_beyond_the_limit_get_503(tmp_path) -> None:
    async with running(config(tmp_path, "a")) as node:
        node.bus = EventBus(max_subscribers=1)
        assert node.api_url is not None
        async with httpx.AsyncClient(base_url=node.api_url, timeout=30) as http:
            with trio.fail_after(30):
                async with http.stream("GET", "/v1/events") as first:
                    assert (await anext(messages(first)))["type"] == "snapshot"
                    second = await http.get("/v1/events")
                    assert second.status_code == 503 and "too many event subscribers" in second.json()["error"]
                    assert (await http.get("/v1/node")).status_code == 200
