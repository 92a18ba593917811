"""Real ``symphony node`` processes facing a stranger, a blacklisted member and faults of their own.

The stranger is a fresh key in this test process that speaks libp2p and signs valid Task envelopes
exactly as ``pipeline.service`` does; it is refused unread (no ledger record), counted in the node's
metrics, and the honest question beside it still gets all its chains. A member that sent an invalid
sync message is blacklisted and refused a plan task. A full disk, a shared data dir or key, and a
SIGTERM each end as documented (``node.daemon``, ``node.datadir``), never in a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from symphony.errors import TransportError
from symphony.ledger.gossip import SYNC_PROTOCOL
from symphony.node.runtime import AgentProfile, AgentRuntime
from symphony.pipeline.service import TASK_PROTOCOL
from symphony.protocol.envelope import seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Task
from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport
from tests.node.test_datadir import fill, needs_root

pytestmark = pytest.mark.e2e

MODEL = ("--model", "scripted:arith", "--no-tools")  # the model writes no programs: count text calls
LOCAL = Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"])


def counters(node: NodeProcess, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of counter ``name`` (without ``_total``) in the node's ``/metrics``, by labels."""
    text = httpx.get(str(node.info["api"]) + "/metrics", timeout=5).text
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name + "_total"}


def refused_tasks(node: NodeProcess) -> dict[str, float]:
    """Task requests the node refused, by reason."""
    rows = counters(node, "symphony_rejected_messages")
    return {dict(labels)["reason"]: value for labels, value in rows.items()
            if dict(labels)["channel"] == TASK_PROTOCOL}


def model_calls(node: NodeProcess) -> float:
    return sum(counters(node, "symphony_model_calls").values())


def envelope(identity: Identity, task: Task) -> bytes:
    return seal(identity, "task", task.wire(), now_ms=int(time.time() * 1000)).to_bytes()


def task(task_id: str, role: str) -> Task:
    return Task(task_id=task_id, role=role, question="What is 6 * 7?",  # type: ignore[arg-type]
                deadline_ms=int((time.time() + 3600) * 1000))


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    with open_swarm(tmp_path) as swarm:
        yield swarm


def test_a_strangers_flood_is_refused_and_an_honest_ask_keeps_its_chains(swarm: Swarm) -> None:
    """600 validly signed execute/plan Tasks from a fresh key: none served, each counted; cots=3 still gets 3."""
    boot = swarm.spawn("m0", args=MODEL).wait_ready()
    models = [boot] + [swarm.spawn(f"m{i}", bootstrap=boot, args=MODEL) for i in (1, 2)]
    for node in models:
        node.wait_ready()
    wait_for(lambda: all(len(n.ledger()) == 3 for n in models), timeout=30, what="every node holds 3 records")
    calls_before = sum(model_calls(n) for n in models)
    stranger = Identity.generate()
    sent = 600

    async def flood_and_ask() -> dict[str, Any]:
        async with open_libp2p_transport(stranger, LOCAL) as transport, trio.open_nursery() as nursery:
            for node in models:
                await transport.connect(node.addr)

            async def flood() -> None:
                for n in range(sent):
                    target = models[n % len(models)]
                    body = envelope(stranger, task(f"flood-{n}", "execute" if n % 2 else "plan"))
                    with pytest.raises(TransportError):
                        await transport.request(target.agent_id, TASK_PROTOCOL, body, timeout=10)

            nursery.start_soon(flood)
            return await trio.to_thread.run_sync(lambda: httpx.post(  # type: ignore[no-any-return]
                str(models[0].info["api"]) + "/v1/tasks", timeout=60,
                json={"question": "What is 6 * 7?", "cots": 3, "max_steps": 3, "adaptive": False, "wait": True,
                      "deadline_s": 50}).json())

    record = trio.run(flood_and_ask)
    assert record["status"] == "done" and record["answer"] == "42", record
    assert [c["ok"] for c in record["trace"]["chains"]] == [True, True, True]
    refused = [refused_tasks(n) for n in models]
    assert sum(sum(r.values()) for r in refused) == sent, refused
    assert all(r.get("unknown_peer", 0) + r.get("rate_limited", 0) + r.get("blacklisted", 0) == sum(r.values())
               for r in refused)
    # the only model calls are the honest question's: 3 plans and their steps, none of the stranger's 600
    honest = sum(1 + len(c["trace"]["steps"]) for c in record["trace"]["chains"])
    assert sum(model_calls(n) for n in models) - calls_before == honest


def test_a_blacklisted_member_is_refused_a_plan_task(swarm: Swarm) -> None:
    """A member is served a plan Task; after one invalid sync message it is blacklisted and refused one."""
    node = swarm.spawn("n0", args=MODEL).wait_ready()
    member = Identity.generate()

    async def scenario() -> bytes:
        async with open_libp2p_transport(member, LOCAL) as transport, trio.open_nursery() as nursery:
            runtime = AgentRuntime(transport=transport, identity=member, profile=AgentProfile(name="member"),
                                   model=None, clock=time.time, bootstrap=[node.addr])
            await nursery.start(runtime.run)
            await trio.to_thread.run_sync(lambda: wait_for(lambda: member.agent_id in node.ledger(), timeout=30,
                                                           what="the member's record at the node"))
            reply = await transport.request(node.agent_id, TASK_PROTOCOL, envelope(member, task("t-1/c0", "plan")),
                                            timeout=30)
            with pytest.raises(TransportError):
                await transport.request(node.agent_id, SYNC_PROTOCOL, b"not an envelope", timeout=10)
            with pytest.raises(TransportError):
                await transport.request(node.agent_id, TASK_PROTOCOL, envelope(member, task("t-2/c0", "plan")),
                                        timeout=30)
            nursery.cancel_scope.cancel()
            return reply

    calls_before = model_calls(node)
    assert trio.run(scenario)
    assert refused_tasks(node) == {"blacklisted": 1}
    assert model_calls(node) - calls_before == 3, "one plan and its two steps, for the first Task only"
    blacklisted = [e for e in node.events() if e["event"] == "blacklisted"]
    assert [e["offence"] for e in blacklisted] == ["invalid"]


def test_sigterm_exits_cleanly_and_the_peer_sees_the_departure(swarm: Swarm) -> None:
    a, b = swarm.start(2)
    wait_for(lambda: a.ledger()[b.agent_id]["available"], timeout=30, what="a holds b's record")
    assert b.terminate(timeout=20) == 0
    assert b.events()[-2:][0]["event"] == "leaving" and b.events()[-1]["event"] == "stopped"
    wait_for(lambda: a.ledger()[b.agent_id]["availability"] == "leaving", timeout=10, what="a sees b leaving")


def run_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "symphony", "node", "--api", "none", *args], check=False,
                          capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a node that refused to start: exit 2, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    return " ".join(output.split())


def test_a_second_node_on_a_data_dir_or_its_key_is_refused(swarm: Swarm, tmp_path: Path) -> None:
    first = swarm.spawn("first").wait_ready()
    message = one_line_error(run_node("--data-dir", str(first.data_dir)))
    assert f"is in use by another symphony node (pid {first.info['pid']}" in message
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "key").symlink_to(first.data_dir / "key")
    assert "is a symbolic link" in one_line_error(run_node("--data-dir", str(tmp_path / "other")))
    (tmp_path / "other" / "key").unlink()
    os.link(first.data_dir / "key", tmp_path / "other" / "key")
    assert "another data dir shares this identity" in one_line_error(run_node("--data-dir", str(tmp_path / "other")))


@pytest.mark.parametrize(("name", "fix"), [("events.jsonl", "is a directory"), ("record.json", "is a directory")])
def test_data_dir_problems_are_one_line_errors(tmp_path: Path, name: str, fix: str) -> None:
    (tmp_path / name).mkdir()
    message = one_line_error(run_node("--data-dir", str(tmp_path)))
    assert str(tmp_path / name) in message and fix in message


@needs_root
def test_a_full_disk_refuses_new_questions_and_the_node_keeps_serving(swarm: Swarm) -> None:
    root = swarm.root / "disk"
    root.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], check=True)
    try:
        node = swarm.spawn("n0", data_dir=root / "n0", args=MODEL).wait_ready()
        filler = fill(root)
        # the log's last page may still hold a few lines: ask until one is refused (each answer logs its trace)
        asks = (node.post("/v1/tasks", {"question": "What is 6 * 7?", "cots": 1, "wait": True}).json()
                for _ in range(50))
        refused = next(record for record in asks if record["status"] != "done")
        assert refused["status"] == "failed" and refused["reason"] == "storage", refused
        assert "free space under" in refused["error"]
        info = node.get("/v1/node")
        assert info["event_log"]["lost_lines"] >= 1 and not info["event_log"]["ok"]
        assert counters(node, "symphony_event_log_lost_lines")[()] >= 1
        filler.unlink()
        answered = node.post("/v1/tasks", {"question": "What is 6 * 7?", "cots": 1, "wait": True}).json()
        assert answered["status"] == "done" and answered["answer"] == "42", answered
        assert node.proc is not None and node.proc.poll() is None
        assert node.terminate(timeout=20) == 0
        assert any(e["event"] == "log_gap" for e in node.events())
    finally:
        swarm.close()
        subprocess.run(["umount", "-l", str(root)], check=True)


def test_a_node_whose_output_cannot_be_written_keeps_serving(tmp_path: Path) -> None:
    """stdout on a full device (/dev/full: every write fails with ENOSPC): the node still starts, serves and
    exits 0 on SIGTERM; its start-up lines are lost, not its life."""
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen([sys.executable, "-m", "symphony", "node", "--data-dir", str(tmp_path), "--api",
                                 "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", "--model", "scripted:arith"],
                                stdout=full, stderr=full, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        info = wait_for(lambda: (tmp_path / "node.json").exists() and (tmp_path / "node.json").read_text(),
                        timeout=60, what="node.json")
        api = json.loads(info)["api"]
        answer = wait_for(lambda: httpx.post(api + "/v1/tasks", timeout=30, json={
            "question": "What is 6 * 7?", "cots": 1, "wait": True}).json(), timeout=60, what="an answer")
        assert answer["answer"] == "42" and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
