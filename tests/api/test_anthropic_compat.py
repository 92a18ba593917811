"""The Anthropic Messages endpoint, driven by the official ``anthropic`` SDK against real node processes:
messages (plain and streamed), the token as ``api_key`` (``x-api-key``) or bearer, and errors in
Anthropic's shape that the SDK does not retry."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from symphony.testing import NodeProcess, Swarm
from tests.api.faces import node, swarm, token

pytestmark = pytest.mark.e2e

QUESTION = "What is (17 + 25) * 2?"
NO_ANSWER = {"answer_kind": "number", "cots": 1}  # scripted:arith finds no number for a question without arithmetic


def client(target: NodeProcess, **kwargs: object) -> anthropic.Anthropic:
    kwargs.setdefault("api_key", token(target))
    return anthropic.Anthropic(base_url=str(target.info["api"]), timeout=60, **kwargs)  # type: ignore[arg-type]


def ask(text: str) -> dict[str, object]:
    return {"model": "symphony", "max_tokens": 256, "system": "You are helpful.",
            "messages": [{"role": "user", "content": "Remember x = 7."}, {"role": "assistant", "content": "OK."},
                         {"role": "user", "content": text}]}


def test_message_answers_with_usage_and_trace(swarm: Swarm) -> None:
    arith = node(swarm, "arith")
    reply = client(arith).messages.create(**ask(QUESTION))  # type: ignore[arg-type]
    assert reply.type == "message" and reply.role == "assistant" and reply.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in reply.content] == [("text", "84")]  # type: ignore[union-attr]
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    task_id = reply.model_extra["symphony"]["task_id"]  # type: ignore[index]
    task = httpx.get(f"{arith.info['api']}/v1/tasks/{task_id}", headers={"x-api-key": token(arith)}, timeout=10).json()
    assert task["status"] == "done" and task["question"] == QUESTION, "the last user turn was the question"
    assert reply.model_extra["symphony"]["context"]["messages"] == 3, "system and the earlier turns: its context"  # type: ignore[index]


def test_stream_sends_anthropics_events(swarm: Swarm) -> None:
    with client(node(swarm, "arith")).messages.stream(**ask(QUESTION)) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].text == "84" and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


def test_bearer_token_works_and_a_wrong_key_is_refused(swarm: Swarm) -> None:
    arith = node(swarm, "arith")
    bearer = anthropic.Anthropic(base_url=str(arith.info["api"]), auth_token=token(arith), timeout=60)
    assert bearer.messages.create(**ask(QUESTION)).content[0].text == "84"  # type: ignore[arg-type,union-attr]
    with pytest.raises(anthropic.AuthenticationError):
        client(arith, api_key="wrong-key-of-some-length").messages.create(**ask(QUESTION))  # type: ignore[arg-type]


def test_failed_question_is_not_retried(swarm: Swarm) -> None:
    """A question the network cannot answer is a 502 in Anthropic's shape, marked not to be retried:
    the SDK (2 retries by default) sends it once."""
    arith = node(swarm, "arith")
    started = [e for e in arith.events() if e["event"] == "task_submitted"]
    with pytest.raises(anthropic.InternalServerError) as failed:
        client(arith).messages.create(**ask("Say hello."), extra_body={"symphony": NO_ANSWER})  # type: ignore[arg-type]
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert failed.value.response.headers["x-should-retry"] == "false"
    assert len([e for e in arith.events() if e["event"] == "task_submitted"]) == len(started) + 1


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"model": "some-other-model"}, 404, "symphony"),
        ({"messages": [{"role": "user", "content": "  "}]}, 400, "empty"),
        ({"tools": [{"name": "f", "input_schema": {"type": "object"}}]}, 400, "tools"),
        ({"extra_body": {"temperature": 1.5}}, 400, "temperature"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, 400, "messages"),
    ],
)
def test_bad_requests_get_anthropic_errors(swarm: Swarm, change: dict, status: int, words: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as refused:
        request = {**ask(QUESTION), **change}
        client(node(swarm, "arith"), max_retries=0).messages.create(**request)  # type: ignore[arg-type]
    assert refused.value.status_code == status
    body = refused.value.body
    assert body["type"] == "error" and words in body["error"]["message"]  # type: ignore[index]


def test_no_planner_is_an_overloaded_error(swarm: Swarm) -> None:
    with pytest.raises(anthropic.APIStatusError) as refused:
        anthropic.Anthropic(base_url=str(node(swarm, "empty").info["api"]), api_key="unused",
                            max_retries=0).messages.create(**ask(QUESTION))  # type: ignore[arg-type]
    assert refused.value.status_code == 503
    assert refused.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
