"""``GET /metrics`` of a real node (libp2p + hypercorn, in this process): the output parses as
Prometheus text, follows the naming conventions (no ``*_created`` series, the unit before ``_total``),
carries the process's own series, and its numbers move when a task runs and when bad messages are
rejected."""

from __future__ import annotations

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from symphony.api.server import node_with_api
from symphony.errors import TransportError
from symphony.ledger.gossip import SYNC_PROTOCOL
from symphony.node.config import NodeConfig
from symphony.pipeline.service import TASK_PROTOCOL
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport
from tests.conftest import identity

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_move_with_tasks_and_rejections(tmp_path) -> None:
    node = node_with_api(NodeConfig(data_dir=tmp_path / "node", api="127.0.0.1:0", model="scripted:arith",
                                    tools=()))  # the scripted model writes no programs: count text calls
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert node.api_url is not None and node.runtime is not None
        async with httpx.AsyncClient(base_url=node.api_url, timeout=30) as http:
            before = await scrape(http)
            assert before[("symphony_ledger_records", ())] == 1
            reply = await http.post("/v1/tasks", json={"question": "What is 6 * 7?", "cots": 1, "max_steps": 3,
                                                         "wait": True})
            assert reply.json()["answer"] == "42"
            after = await scrape(http)
            assert not {n for n in names(after) if n.endswith("_created")}, "no *_created series"
            assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
                    "process_open_fds", "python_info"} <= names(after)
            assert after[("process_resident_memory_bytes", ())] > 0
            assert ("symphony_event_disconnected_subscribers_total", ()) in after
            assert after[("symphony_progress_dropped_events_total", ())] == 0
            assert moved(before, after, "symphony_tasks_total", outcome="done") == 1
            assert moved(before, after, "symphony_task_latency_seconds_count") == 1
            assert moved(before, after, "symphony_beacon_rounds_total", role="planning") == 1
            assert moved(before, after, "symphony_beacon_rounds_total", role="execution") == 1  # one per chain, 2 steps
            assert moved(before, after, "symphony_model_calls_total", outcome="ok") == 3  # plan + 2 steps
            trace = reply.json()["trace"]
            assert moved(before, after, "symphony_model_tokens_total", kind="prompt") == trace["prompt_tokens"]
            assert moved(before, after, "symphony_model_tokens_total", kind="completion") == trace["completion_tokens"]

            bad = await http.post("/v1/tasks", json={"question": ""})
            assert bad.status_code == 422
            assert moved(after, await scrape(http), "symphony_api_errors_total", status="422") == 1

            for n, protocol in enumerate((SYNC_PROTOCOL, TASK_PROTOCOL)):  # one stranger each: a bad sync blacklists
                async with open_libp2p_transport(identity(7 + n), Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"])) as peer:
                    await peer.connect(node.runtime.transport.listen_addrs()[0])
                    with pytest.raises(TransportError):
                        await peer.request(node.agent_id, protocol, b"not json", timeout=5)
                    hostile = await scrape(http)
        node.stop()
    # a Task from a stranger is refused before it is read: it has no record in the node's ledger
    for protocol, reason in ((SYNC_PROTOCOL, "malformed"), (TASK_PROTOCOL, "unknown_peer")):
        assert moved(after, hostile, "symphony_rejected_messages_total", reason=reason, channel=protocol) == 1
        assert moved(after, hostile, "symphony_transport_received_messages_total", channel=protocol) == 1
        assert moved(after, hostile, "symphony_transport_received_bytes_total", channel=protocol) == len(b"not json")
    assert hostile[("symphony_connected_peers", ())] >= 1
    # the unit before _total (renamed from symphony_transport_bytes_sent_total and the like)
    assert {n for n in names(hostile) if n.startswith("symphony_transport_")} == {
        "symphony_transport_sent_bytes_total", "symphony_transport_received_bytes_total",
        "symphony_transport_sent_messages_total", "symphony_transport_received_messages_total"}
