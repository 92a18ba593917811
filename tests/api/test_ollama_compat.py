"""The Ollama-compatible endpoint, driven by the official ``ollama`` client against real node processes:
chat (plain and streaming), generate, list, show, version, the token, and errors in Ollama's shape."""

from __future__ import annotations

import httpx
import ollama
import pytest

from symphony.testing import NodeProcess, Swarm
from tests.api.faces import node, swarm, token

pytestmark = pytest.mark.e2e

QUESTION = "What is (17 + 25) * 2?"
FAST = {"cots": 1, "max_steps": 1}


def client(target: NodeProcess, *, authorised: bool = True) -> ollama.Client:
    headers = {"Authorization": f"Bearer {token(target)}"} if authorised else {}
    return ollama.Client(host=str(target.info["api"]), headers=headers, timeout=60)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}]


def test_list_show_and_version(swarm: Swarm) -> None:
    arith = client(node(swarm, "arith"))
    assert [m.model for m in arith.list().models] == ["symphony:latest"]
    assert arith.show("symphony").details.family == "symphony"
    assert [m.model for m in arith.ps().models] == ["symphony:latest"]
    with pytest.raises(ollama.ResponseError) as missing:
        arith.show("llama3")
    assert missing.value.status_code == 404


def test_chat_answers_with_counts_and_trace(swarm: Swarm) -> None:
    arith = node(swarm, "arith")
    reply = client(arith).chat(model="symphony", messages=ask(QUESTION), stream=False)
    assert reply.message.role == "assistant" and reply.message.content == "84"
    assert reply.done and reply.done_reason == "stop"
    assert reply.prompt_eval_count > 0 and reply.eval_count > 0


def test_chat_streams_ndjson(swarm: Swarm) -> None:
    parts = list(client(node(swarm, "arith")).chat(model="symphony:latest", messages=ask(QUESTION), stream=True))
    assert "".join(p.message.content for p in parts) == "84"
    assert [p.done for p in parts][-1] is True and not any(p.done for p in parts[:-1])
    assert parts[-1].eval_count > 0


def test_generate_plain_and_streaming(swarm: Swarm) -> None:
    arith = client(node(swarm, "arith"))
    assert arith.generate(model="symphony", prompt=QUESTION).response == "84"
    assert "".join(p.response for p in arith.generate(model="symphony", prompt=QUESTION, stream=True)) == "84"


def post(target: NodeProcess, path: str, body: dict) -> httpx.Response:
    return httpx.post(str(target.info["api"]) + path, json=body, headers={"Authorization": f"Bearer {token(target)}"},
                      timeout=60)


def test_options_reach_the_network_and_the_question_is_the_last_user_message(swarm: Swarm) -> None:
    """The ``symphony`` extension sets the question's options (one chain here), as in the OpenAI face;
    the reply's extension names the task, whose question is the last user message."""
    arith = node(swarm, "arith")
    reply = post(arith, "/api/chat", {"model": "symphony", "messages": ask(QUESTION), "stream": False,
                                      "symphony": FAST}).json()
    assert len(reply["symphony"]["trace"]["chains"]) == 1
    task = httpx.get(f"{arith.info['api']}/v1/tasks/{reply['symphony']['task_id']}",
                     headers={"Authorization": f"Bearer {token(arith)}"}, timeout=10).json()
    assert task["status"] == "done" and task["question"] == QUESTION
    assert reply["symphony"]["context"]["messages"] == 1, "the system message went as the question's context"


def test_token_is_required(swarm: Swarm) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client(node(swarm, "arith"), authorised=False).list()
    assert refused.value.status_code == 401


def test_client_errors_are_ollama_errors(swarm: Swarm) -> None:
    arith = client(node(swarm, "arith"))
    with pytest.raises(ollama.ResponseError) as unknown:
        arith.chat(model="llama3", messages=ask(QUESTION))
    assert unknown.value.status_code == 404 and "symphony:latest" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as tools:
        arith.chat(model="symphony", messages=ask(QUESTION), tools=[{"type": "function", "function": {"name": "f"}}])
    assert tools.value.status_code == 400 and "tools" in tools.value.error


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "symphony", "messages": ask("   ")}, 400, "empty"),
        ({"model": "symphony", "messages": [{"role": "user", "content": "hi", "images": ["AA=="]}]}, 400, "images"),
        ({"model": "symphony", "messages": ask(QUESTION), "format": "json"}, 400, "format"),
        ({"model": "symphony", "messages": ask(QUESTION), "symphony": {"cots": 99}}, 400, "cots"),
        ({"model": "symphony", "messages": "hi"}, 400, "messages"),
    ],
)
def test_bad_requests_get_ollama_errors(swarm: Swarm, body: dict, status: int, words: str) -> None:
    reply = post(node(swarm, "arith"), "/api/chat", body)
    assert reply.status_code == status and words in reply.json()["error"]


def test_no_planner_is_a_503(swarm: Swarm) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=str(node(swarm, "empty").info["api"])).chat(model="symphony", messages=ask(QUESTION))
    assert refused.value.status_code == 503 and "plan" in refused.value.error
