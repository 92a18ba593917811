"""Outcome feedback on real node processes: skills learned after a vote show in peers' /v1/ledger,
are kept in the data dir's learned.json and come back with a restarted node."""

from __future__ import annotations

import json

import httpx
import pytest

from symphony.capability import SKILLS, task_type_index
from symphony.testing import open_swarm, wait_for

pytestmark = pytest.mark.e2e
PLANNING = SKILLS.start + task_type_index("planning")
OTHER = SKILLS.start + task_type_index("other")


def _learned(vector: list[float]) -> bool:
    """The planning skill stands above the untouched prior slots (float16 on the wire: a margin)."""
    return vector[PLANNING] > vector[OTHER] + 0.005


def test_skills_learned_from_a_vote_reach_peers_and_survive_a_restart(tmp_path) -> None:
    with open_swarm(tmp_path) as swarm:
        args = ("--model", "scripted:arith", "--learn-republish-s", "2")  # the option reaches the runtime
        boot = swarm.spawn("n0", args=args).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=args) for i in (1, 2)]
        nodes = [boot] + [n.wait_ready() for n in rest]
        ids = {n.agent_id for n in nodes}
        wait_for(lambda: all(ids <= {a for a, r in n.ledger().items() if r["available"]} for n in nodes),
                 timeout=60, what="ledger convergence")
        response = httpx.post(nodes[0].info["api"] + "/v1/tasks", headers=nodes[0].api_headers(), timeout=120,
                              json={"question": "What is (17 + 25) * 2?", "cots": 3, "adaptive": False, "wait": True})
        trace = response.json()["trace"]
        assert trace["answer"] == "84"
        outcomes = trace["outcomes"]
        assert len(outcomes) == 3 and all(o["delivery"] == "queued" and o["agreed"] == 1.0 for o in outcomes), outcomes
        wait_for(lambda: sum(e["event"] == "outcome_sent" and e["accepted"] for e in nodes[0].events()) == 3,
                 timeout=30, what="the outcomes delivered after the answer")
        planner = next(n for n in nodes[1:] if n.agent_id in {o["planner"] for o in outcomes})
        wait_for(lambda: _learned(nodes[0].ledger()[planner.agent_id]["vector"]), timeout=30,
                 what="the planner's republished skill block at a peer")
        assert any(e["event"] == "skill_learned" for e in planner.events())

        planner.terminate()
        saved = json.loads((planner.data_dir / "learned.json").read_text())
        assert saved["skills"][task_type_index("planning")] > 0.5
        again = swarm.spawn(planner.name, bootstrap=boot, args=("--model", "scripted:arith"))
        assert again.data_dir == planner.data_dir
        again.wait_ready()
        assert _learned(again.ledger()[again.agent_id]["vector"]), "a restarted node publishes what it learned"
