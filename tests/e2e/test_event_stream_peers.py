"""``GET /v1/events`` on real node processes: a crashed peer shows up as *suspect*, a peer that
shuts down cleanly as *leave*, each with its (now unavailable) peer row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from symphony.testing import open_swarm, wait_for

pytestmark = pytest.mark.e2e


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def until(stream: Iterator[dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for event in stream:  # each read is bounded by the client's read timeout; keep-alives come every 5 s
        if done(event):
            return event
    raise AssertionError("the event stream ended")


def test_crash_is_suspect_and_clean_exit_is_leave(tmp_path) -> None:
    with open_swarm(tmp_path) as swarm:
        a, b, c = swarm.start(3)
        wait_for(lambda: {b.agent_id, c.agent_id} <= {p["agent_id"] for p in a.get("/v1/peers")["peers"]
                                                       if p["connected"]}, timeout=60, what="a connected to b and c")
        with httpx.stream("GET", str(a.info["api"]) + "/v1/events", timeout=30) as response:
            stream = events(response)
            snapshot = next(stream)
            assert snapshot["type"] == "snapshot"
            assert {p["agent_id"] for p in snapshot["data"]["peers"]} == {b.agent_id, c.agent_id}

            b.kill()
            crashed = until(stream, lambda e: e["type"] == "peer" and e["data"]["agent_id"] == b.agent_id)
            assert crashed["data"]["change"] == "suspect" and crashed["data"]["peer"]["available"] is False

            assert c.terminate() == 0
            left = until(stream, lambda e: e["type"] == "peer" and e["data"]["agent_id"] == c.agent_id
                         and e["data"]["change"] != "join")
            assert left["data"]["change"] == "leave" and left["data"]["peer"]["available"] is False
        assert a.get("/v1/node")["agent_id"] == a.agent_id
