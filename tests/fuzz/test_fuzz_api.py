"""Hostile HTTP input to a real ``symphony node`` process (its API as a black box, 127.0.0.1 only):
arbitrary methods, paths, headers and bodies. Every answer is a 2xx/4xx (never a 5xx or a dropped
connection), the node keeps serving, and its memory does not grow without bound."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphony.testing import NodeProcess, open_swarm

pytestmark = pytest.mark.e2e

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
PATHS = ["/v1/tasks", "/v1/tasks/{x}", "/v1/node", "/v1/peers", "/v1/ledger", "/v1/ledger/{x}", "/v1/node/record",
         "/v1/chat/completions", "/metrics", "/{x}", "/v1/{x}/{x}"]
SEGMENT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
TASK_BODY = st.fixed_dictionaries({"question": st.text(max_size=60)},
                                  optional={"cots": JSON | st.integers(-3, 20), "deadline_s": JSON | st.floats(-1, 1e5),
                                            "top_l": st.integers(-5, 10**4), "answer_kind": JSON, "wait": st.just(False),
                                            "strategy": st.sampled_from(["cosine", "nope"])})
RECORD_BODY = st.dictionaries(st.sampled_from(["name", "tags", "models", "hardware", "availability", "capability",
                                               "agent_id", "lamport"]), JSON, max_size=4)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    with open_swarm(tmp_path_factory.mktemp("fuzz-api")) as swarm:
        yield swarm.spawn("target", args=("--model", "scripted:arith")).wait_ready()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       path=st.sampled_from(PATHS), segment=SEGMENT,
       body=st.one_of(st.binary(max_size=512), JSON.map(lambda v: json.dumps(v).encode()),
                      TASK_BODY.map(lambda v: json.dumps(v).encode()), RECORD_BODY.map(lambda v: json.dumps(v).encode())),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_api_answers_hostile_requests_without_server_errors(node: NodeProcess, method: str, path: str, segment: str,
                                                            body: bytes, content_type: str) -> None:
    url = str(node.info["api"]) + path.replace("{x}", quote(segment, safe="") or "x")
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.request(method, url, content=body, headers=headers, timeout=10)
    assert response.status_code < 500, (method, url, body[:200], response.status_code, response.text[:300])


def test_node_survives_and_memory_is_bounded_after_the_fuzzing(node: NodeProcess) -> None:
    assert node.proc is not None and node.proc.poll() is None
    before = _rss_kb(node.proc.pid)
    big = b'{"question": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for _ in range(5):
        response = httpx.post(str(node.info["api"]) + "/v1/tasks", content=big, timeout=10,
                              headers={"content-type": "application/json"})
        assert response.status_code in (400, 413, 422)
    assert node.get("/v1/node")["agent_id"] == node.agent_id
    assert _rss_kb(node.proc.pid) - before < 64 * 1024, "5 oversized bodies must not be kept"
