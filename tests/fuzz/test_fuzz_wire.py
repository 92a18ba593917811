"""Raw bytes on the wire against real ``symphony node`` processes.

A stranger (a bare py-libp2p host with a fresh key, in this process) dials a node and, on
every protocol the node announces through identify, writes each kind of garbage; then it
tries to hold every request slot of the task and beacon protocols. Each time the node
must keep serving: its process alive, its API answering, and an honest second node still
exchanging ledger records and tasks with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trio

from symphony.beacon.service import BEACON_PROTOCOL
from symphony.ledger.gossip import LEDGER_TOPIC, SYNC_PROTOCOL
from symphony.pipeline.service import TASK_PROTOCOL
from symphony.testing import NodeProcess, open_swarm, wait_for
from symphony.transport.stranger import GARBAGE, NON_UTF8_PROTOCOL_LINE, forged_publish, open_stranger, write_and_close

pytestmark = pytest.mark.e2e

MODEL = ("--model", "scripted:arith")
# What every node serves today; the test fuzzes whatever the node announces, and this set
# only guards against the announcement itself going missing.
EXPECTED = {
    TASK_PROTOCOL,
    BEACON_PROTOCOL,
    SYNC_PROTOCOL,
    "/meshsub/1.0.0",
    "/meshsub/1.1.0",
    "/ipfs/id/1.0.0",
    "/ipfs/id/push/1.0.0",
    "/ipfs/ping/1.0.0",
}
PER_PEER_CAP = 8  # Libp2pConfig.max_inbound_streams_per_peer


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two nodes with scripted models that list each other as available."""
    with open_swarm(tmp_path_factory.mktemp("wire")) as swarm:
        node = swarm.spawn("n0", args=MODEL).wait_ready()
        honest = swarm.spawn("n1", bootstrap=node, args=MODEL).wait_ready()
        ids = {node.agent_id, honest.agent_id}
        wait_for(
            lambda: all(ids <= {a for a, r in n.ledger().items() if r["available"]} for n in (node, honest)),
            timeout=60,
            what="both nodes in both ledgers",
        )
        yield node, honest


async def wait_until(condition: Callable[[], Any], *, timeout: float = 30, what: str) -> None:
    """Poll ``condition`` (which may call a node's API) while trio keeps the stranger running."""
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def offences(node: NodeProcess) -> dict[str, int]:
    return dict(node.get("/v1/node")["traffic"]["offences"])


def assert_serving(node: NodeProcess) -> None:
    assert node.proc is not None and node.proc.poll() is None, node.output()[-3000:]
    assert node.get("/v1/node")["agent_id"] == node.agent_id


async def test_garbage_on_every_protocol_leaves_the_node_serving(pair: tuple[NodeProcess, NodeProcess]) -> None:
    """Each kind of garbage on each announced protocol, forged gossipsub messages and a
    non-UTF-8 negotiation line: the node counts them against the stranger and serves on."""
    node, honest = pair
    async with open_stranger() as stranger:
        peer = await stranger.dial(node.addr)
        await wait_until(lambda: EXPECTED <= set(stranger.protocols_of(peer)), what="identify from the node")
        protocols = stranger.protocols_of(peer)
        for protocol in protocols:
            for data in GARBAGE.values():
                await write_and_close(await stranger.open(peer, protocol), data)
        for seqno, protocol in enumerate(("/meshsub/1.0.0", "/meshsub/1.1.0")):
            await write_and_close(await stranger.open(peer, protocol), forged_publish(LEDGER_TOPIC, seqno))
        await write_and_close(await stranger.open_unnegotiated(peer), NON_UTF8_PROTOCOL_LINE)

        # Outcomes that do not depend on timing: a parse error on each gossipsub version and
        # on the negotiation line, the two forged messages, and on each of our request
        # protocols a too-large and a truncated request.
        ours = sum(p.startswith("/symphony/") for p in protocols)
        expected = {"protocol_error": 3, "invalid_message": 2, "oversized_request": ours, "truncated_request": ours}
        await wait_until(
            lambda: all(offences(node).get(k, 0) >= v for k, v in expected.items()), what=f"offences {expected}"
        )
        assert_serving(node)
        blacklisted = {e["agent"] for e in node.events() if e["event"] == "blacklisted"}
        assert stranger.peer_id in blacklisted, "transport offences must reach the node's reputation table"

    honest.post("/v1/node/record", {"tags": ["after-fuzz"]}).raise_for_status()
    await wait_until(lambda: "after-fuzz" in node.ledger()[honest.agent_id]["tags"], what="a record update")
    assert_serving(node)


async def test_silent_streams_do_not_starve_honest_tasks(pair: tuple[NodeProcess, NodeProcess]) -> None:
    """A stranger opens 70 silent streams on each of the task and beacon protocols (more than
    the 64 slots a protocol has); a task asked at the honest node still gets the node as a
    planner, which takes a beacon and a task request served by it."""
    node, honest = pair
    before = offences(node).get("too_many_streams", 0)
    async with open_stranger() as stranger:
        peer = await stranger.dial(node.addr)
        held = [await stranger.try_open(peer, p) for p in (TASK_PROTOCOL, BEACON_PROTOCOL) for _ in range(70)]
        excess = 2 * (70 - PER_PEER_CAP)
        await wait_until(
            lambda: offences(node).get("too_many_streams", 0) >= before + excess,
            what=f"{excess} streams over the per-peer cap",
        )

        def ask() -> httpx.Response:
            return httpx.post(
                honest.info["api"] + "/v1/tasks",
                timeout=120,
                json={"question": "What is (17 + 25) * 2?", "cots": 2, "wait": True},
            )

        response = await trio.to_thread.run_sync(ask)
        assert response.status_code == 200, response.text
        record = response.json()
        assert record["status"] == "done" and record["trace"]["answer"] == "84", record
        assert node.agent_id in {c["planner"] for c in record["trace"]["chains"] if c["ok"]}
        assert sum(stream is not None for stream in held) >= 2 * PER_PEER_CAP
    assert_serving(node)
