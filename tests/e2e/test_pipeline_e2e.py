"""The pipeline on 5 real node processes over libp2p (scripted test-double models)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from symphony.pipeline.executor import STEP_MAX_TOKENS
from symphony.testing import open_swarm, wait_for

pytestmark = pytest.mark.e2e


def test_five_processes_answer_with_three_chains(tmp_path) -> None:
    """A question asked at one node is planned by 3 distinct planners, executed by beacon-chosen
    agents across the swarm, and voted; the trace names who did what."""
    with open_swarm(tmp_path) as swarm:
        boot = swarm.spawn("n0", args=("--model", "scripted:arith")).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--model", "scripted:arith")) for i in range(1, 5)]
        nodes = [boot] + [n.wait_ready() for n in rest]
        ids = {n.agent_id for n in nodes}
        wait_for(lambda: all(ids <= {a for a, r in n.ledger().items() if r["available"]} for n in nodes),
                 timeout=60, what="ledger convergence")
        # gossip reaches every node through n0 before every node has dialled every other: asking before the mesh
        # is complete made a beacon round miss agents on a loaded machine, so wait for full connectivity too
        wait_for(lambda: all(all(p["connected"] for p in n.get("/v1/peers")["peers"] if p["agent_id"] != n.agent_id)
                             for n in nodes), timeout=120, what="every node connected to every other")

        response = httpx.post(nodes[2].info["api"] + "/v1/tasks", timeout=120,
                              json={"question": "What is (17 + 25) * 2?", "cots": 3, "max_steps": 3, "adaptive": False,
                                    "wait": True})
        assert response.status_code == 200, response.text
        record = response.json()
        assert record["status"] == "done", record
        trace = record["trace"]
        assert trace["answer"] == "84"
        chains = trace["chains"]
        assert len({c["planner"] for c in chains if c["ok"]}) == 3
        executors = {s["executor"] for c in chains for s in c["trace"]["steps"]}
        assert executors <= ids and len(executors) >= 1
        assert nodes[2].get(f"/v1/tasks/{record['task_id']}")["answer"] == "84"
        logged = [e for e in nodes[2].events() if e["event"] == "task_record"]
        assert logged[-1]["task_id"] == record["task_id"] and logged[-1]["trace"]["chains"] == chains

        bad = httpx.post(nodes[2].info["api"] + "/v1/tasks", json={"question": "   "}, timeout=10)
        assert bad.status_code == 422 and "empty" in bad.text
        huge = httpx.post(nodes[2].info["api"] + "/v1/tasks", content=b'{"question": "' + b"x" * 1_000_000 + b'"}',
                          headers={"content-type": "application/json"}, timeout=10)
        assert huge.status_code == 400 and "exceeds" in huge.text
        assert nodes[2].get("/v1/node")["agent_id"] == nodes[2].agent_id

        # a client-chosen task ID: asking again under it is idempotent, another question under it a conflict
        chosen = {"question": "What is 5 * 5?", "task_id": "client-chosen-0001", "wait": True}
        first = httpx.post(nodes[3].info["api"] + "/v1/tasks", json=chosen, timeout=120).json()
        again = httpx.post(nodes[3].info["api"] + "/v1/tasks", json=chosen, timeout=120).json()
        assert first["task_id"] == "client-chosen-0001" and first["answer"] == "25" and again == first
        clash = httpx.post(nodes[3].info["api"] + "/v1/tasks", json={**chosen, "question": "What is 1 + 1?"}, timeout=10)
        assert clash.status_code == 409
        assert httpx.post(nodes[3].info["api"] + "/v1/tasks", json={**chosen, "task_id": "../x"},
                          timeout=10).status_code == 422

        planned = ("--cots", "3", "--max-steps", "3")  # chains with planned sub-tasks (the default: one step)
        shown = subprocess.run([sys.executable, "-m", "symphony", "ask", "What is 6 * 7?", *planned,
                                "--api", nodes[0].info["api"]], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "answer: 42" in shown.stdout and shown.stdout.count("[ok]") == 2
        assert "Compute 6 * 7." in shown.stdout, "the trace lists each chain's sub-tasks"
        assert "degraded: chains_collapsed: chains c0, c1" in shown.stdout, "two scripted chains: one solve"
        assert "chains: 2 of at most 3 launched (2 at once): stopped, 2 chains agreed" in shown.stdout, \
            "adaptive chains: the first two agreed, so no third ran, and `symphony ask` says so"
        every = subprocess.run([sys.executable, "-m", "symphony", "ask", "What is 6 * 7?", "--no-adaptive", "--json",
                                *planned, "--api", nodes[0].info["api"]], capture_output=True, text=True, timeout=120,
                               check=False)
        assert every.returncode == 0, every.stdout + every.stderr
        record = json.loads(every.stdout)
        assert len(record["trace"]["chains"]) == 3, "--no-adaptive: every one of the 3 chains at once"
        assert record["trace"]["adaptive"]["stopped"] == "off"


def test_chains_cut_at_the_planner_limit_are_stopped_and_their_tokens_reported(tmp_path) -> None:
    """Three ``symphony node`` processes whose model takes 30+ s a call (``timed:1``); a question with a 30 s
    deadline starts 2 chains with a backup planner queued, so each planner may hold its chain for half the time
    left (15 s). Both are cut there; the initiator tells each planner to stop, and each answers with what its
    chain spent: the executor call it abandoned counts (a full answer), though no chain returned an answer."""
    with open_swarm(tmp_path) as swarm:
        boot = swarm.spawn("n0", args=("--model", "timed:1")).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--model", "timed:1")) for i in (1, 2)]
        nodes = [boot] + [n.wait_ready() for n in rest]
        ids = {n.agent_id for n in nodes}
        wait_for(lambda: all(ids <= {a for a, r in n.ledger().items() if r["available"]} for n in nodes),
                 timeout=60, what="ledger convergence")
        response = httpx.post(boot.info["api"] + "/v1/tasks", timeout=120,
                              json={"question": "What is 2 + 2?", "cots": 3, "max_steps": 1, "deadline_s": 30,
                                    "wait": True})
        record = response.json()
        assert record["status"] == "failed", record
        cut = [c for c in record["trace"]["chains"] if c["error"].startswith("plan timeout")]
        assert len(cut) == 2, record["trace"]["chains"]
        assert all(c["completion_tokens"] >= STEP_MAX_TOKENS for c in cut), "the abandoned step is charged"
        # the planner's count, not the initiator's fallback guess (the 5-word question and a full answer)
        assert all(c["prompt_tokens"] > 20 for c in cut), json.dumps(cut)[:3000]
        stopped = {n.agent_id: [e["task"] for e in n.events() if e["event"] == "task_stopped"] for n in nodes}
        for chain in cut:  # the initiator's own chain, if one was cut, was cancelled in place
            assert chain["planner"] == boot.agent_id or any("/s" not in t for t in stopped[chain["planner"]]), stopped
        counted = sum(s.value for n in nodes for f in text_string_to_metric_families(
            httpx.get(str(n.info["api"]) + "/metrics", timeout=5).text) for s in f.samples
            if s.name == "symphony_stopped_tasks_total")
        assert counted == sum(len(tasks) for tasks in stopped.values())
