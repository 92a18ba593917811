"""A packaged GSM8K question answered end to end by real node processes running the embedded
Qwen2.5-Coder-0.5B (llama.cpp). Checks that the whole path works with a real model; accuracy is
measured by `symphony bench gsm8k`, not asserted here (a 0.5B model is often wrong)."""

from __future__ import annotations

import httpx
import pytest

from symphony.bench.datasets import load_gsm8k
from symphony.pipeline.extraction import extract_number
from symphony.testing import open_swarm, wait_for

pytestmark = pytest.mark.e2e
pytest.importorskip("llama_cpp", reason="install with `make` (builds llama-cpp-python with safe CMAKE_ARGS)")


def test_gsm8k_question_through_two_embedded_model_nodes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SYMPHONY_LLAMA_THREADS", "1")  # two processes on a 2-core machine
    item = load_gsm8k(log=lambda message: None)[1]
    with open_swarm(tmp_path) as swarm:
        boot = swarm.spawn("a", args=("--model", "llama:qwen2.5-coder-0.5b", "--skills", "math")).wait_ready()
        other = swarm.spawn("b", bootstrap=boot, args=("--model", "llama:qwen2.5-coder-0.5b")).wait_ready()
        agents = {boot.agent_id, other.agent_id}
        wait_for(lambda: agents <= {a for a, r in boot.ledger().items() if "planner" in r["tags"]},
                 timeout=60, what="both model nodes in the ledger")
        response = httpx.post(boot.info["api"] + "/v1/tasks", timeout=600, json={
            "question": item.question, "cots": 2, "max_steps": 2, "answer_kind": "number", "wait": True})
    assert response.status_code == 200, response.text
    record = response.json()
    trace = record["trace"]
    assert record["status"] == "done", record.get("error")
    assert extract_number(record["answer"]) is not None, "the vote produced a number"
    assert trace["completion_tokens"] > 0 and trace["prompt_tokens"] > trace["completion_tokens"]
    ok_chains = [c for c in trace["chains"] if c["ok"]]
    assert ok_chains and all(c["planner"] in agents for c in ok_chains)
    executors = {s["executor"] for c in ok_chains for s in c["trace"]["steps"]}
    assert executors <= agents
    print(f"gold {item.gold}, answered {record['answer']} in {trace['latency_ms'] / 1000:.0f} s")
