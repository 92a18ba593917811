"""The OpenAI-compatible endpoint, driven by the official ``openai`` client against real node
processes: answers, streaming, token usage, errors in OpenAI's shape, and a client that leaves
mid-stream (its question is cancelled; the node keeps serving)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for

pytestmark = pytest.mark.e2e

QUESTION = "What is (17 + 25) * 2?"
NO_ANSWER = {"answer_kind": "number", "cots": 1}  # scripted:arith finds no number for a question without arithmetic


@pytest.fixture(scope="module")
def swarm(tmp_path_factory) -> Iterator[Swarm]:
    """Three unconnected nodes: ``arith`` (scripted test double), ``empty`` (no model) and
    ``slow`` (a timed stand-in: every model call sleeps >= 1.6 s)."""
    with open_swarm(tmp_path_factory.mktemp("openai")) as swarm:
        for name, args in (("arith", ("--model", "scripted:arith")), ("empty", ()), ("slow", ("--model", "timed:20"))):
            swarm.spawn(name, args=args)
        for node in swarm.nodes:
            node.wait_ready()
        yield swarm


def node(swarm: Swarm, name: str) -> NodeProcess:
    return next(n for n in swarm.nodes if n.name == name)


def client(node: NodeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=str(node.info["api"]) + "/v1", api_key="unused", max_retries=0, timeout=120)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}]


def metrics(node: NodeProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(str(node.info["api"]) + "/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def model_tokens(node: NodeProcess) -> float:
    return sum(v for (name, _), v in metrics(node).items() if name == "symphony_model_tokens_total")


def test_models_lists_symphony(swarm: Swarm) -> None:
    openai_client = client(node(swarm, "arith"))
    assert [m.id for m in openai_client.models.list()] == ["symphony"]
    assert openai_client.models.retrieve("symphony").id == "symphony"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-4o")


def test_chat_completion_answers_with_usage_and_trace(swarm: Swarm) -> None:
    arith = node(swarm, "arith")
    before = model_tokens(arith)
    reply = client(arith).chat.completions.create(model="symphony", messages=ask(QUESTION),
                                                  extra_body={"symphony": {"max_steps": 1, "strategy": "random"}})
    assert reply.object == "chat.completion" and reply.choices[0].message.content == "84"
    assert reply.choices[0].finish_reason == "stop"
    trace = reply.model_extra["symphony"]["trace"]
    # one node, one planner: its first chain alone settles nothing, so (adaptive chains) it plans a second,
    # which agrees
    assert trace["answer"] == "84" and [c["index"] for c in trace["chains"]] == [0, 1]
    assert trace["adaptive"]["stopped"] == "agreed" and trace["adaptive"]["launched"] == 2
    assert len(trace["chains"][0]["trace"]["steps"]) == 1, "the extension's max_steps reached the planner"
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert reply.usage.prompt_tokens == sum(c["prompt_tokens"] for c in trace["chains"])
    # every model call of this (one-node) network ran on arith: usage is exactly what its model used
    assert model_tokens(arith) - before == reply.usage.total_tokens
    task = arith.get(f"/v1/tasks/{reply.model_extra['symphony']['task_id']}")
    assert task["status"] == "done" and task["answer"] == "84"


def test_streaming_sends_role_answer_finish_usage(swarm: Swarm) -> None:
    stream = client(node(swarm, "arith")).chat.completions.create(
        model="symphony", messages=ask(QUESTION), stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "84"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert finals[0].model_extra["symphony"]["trace"]["answer"] == "84"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_ends_with_done(swarm: Swarm) -> None:
    with httpx.stream("POST", str(node(swarm, "arith").info["api"]) + "/v1/chat/completions", timeout=60,
                      json={"model": "symphony", "messages": ask(QUESTION), "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"messages": ask("   ")}, 400, "messages"),
        ({"messages": [{"role": "system", "content": "no user message"}]}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
        ({"messages": ask(QUESTION), "n": 2}, 400, "n"),
        ({"messages": ask(QUESTION), "extra_body": {"symphony": {"cots": 99}}}, 400, "symphony.cots"),
        ({"messages": ask(QUESTION), "extra_body": {"symphony": {"colour": "blue"}}}, 400, "symphony.colour"),
        ({"messages": ask("x" * 40_000)}, 400, "messages"),
        ({"messages": ask("x" * 1_000_000)}, 413, None),
        ({"messages": ask(QUESTION), "model": "gpt-4o"}, 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(swarm: Swarm, kwargs: dict, status: int, param: str | None) -> None:
    kwargs = {"model": "symphony", **kwargs}
    with pytest.raises(openai.APIStatusError) as caught:
        client(node(swarm, "arith")).chat.completions.create(**kwargs)
    assert caught.value.status_code == status
    error = caught.value.body
    assert isinstance(error, dict) and error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert client(node(swarm, "arith")).models.list().data, "the node keeps serving"


def test_body_that_is_not_json_gets_an_openai_error(swarm: Swarm) -> None:
    url = str(node(swarm, "arith").info["api"]) + "/v1/chat/completions"
    response = httpx.post(url, content=b"{oops", headers={"content-type": "application/json"}, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    body = json.dumps({"model": "symphony", "messages": ask(QUESTION)})
    plain = httpx.post(url, content=body, headers={"content-type": "text/plain"}, timeout=5)  # a cross-site form
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"


def test_network_failures_have_their_status(swarm: Swarm) -> None:
    with pytest.raises(openai.InternalServerError) as no_agents:
        client(node(swarm, "empty")).chat.completions.create(model="symphony", messages=ask(QUESTION))
    assert no_agents.value.status_code == 503 and no_agents.value.code == "no_agents"

    with pytest.raises(openai.APIStatusError) as failed:  # the arith script has no number for this one
        client(node(swarm, "arith")).chat.completions.create(model="symphony", messages=ask("Who wrote Hamlet?"),
                                                            extra_body={"symphony": NO_ANSWER})
    assert failed.value.status_code == 502 and failed.value.code == "task_failed"

    with pytest.raises(openai.APIStatusError) as late:  # one model call takes longer than the deadline
        client(node(swarm, "slow")).chat.completions.create(model="symphony", messages=ask(QUESTION),
                                                           extra_body={"symphony": {"deadline_s": 0.5, "cots": 1}})
    assert late.value.status_code == 504 and late.value.code == "timeout"


def test_failure_while_streaming_is_an_error_event(swarm: Swarm) -> None:
    stream = client(node(swarm, "arith")).chat.completions.create(model="symphony", messages=ask("Who wrote Hamlet?"),
                                                                 stream=True, extra_body={"symphony": NO_ANSWER})
    with pytest.raises(openai.APIError, match="no chain returned a usable answer"):
        list(stream)


def test_client_leaving_mid_stream_cancels_its_question(swarm: Swarm) -> None:
    slow = node(swarm, "slow")
    stream = client(slow).chat.completions.create(model="symphony", messages=ask(QUESTION), stream=True,
                                                  extra_body={"symphony": {"cots": 1}})
    first = next(iter(stream))  # the role chunk comes at once; the answer needs >= 2 model calls
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    task_id = first.id.removeprefix("chatcmpl-")
    task = wait_for(lambda: (t := slow.get(f"/v1/tasks/{task_id}"))["status"] != "running" and t, timeout=60,
                    what="the abandoned question to stop")
    assert task["status"] == "cancelled"
    reply = client(slow).chat.completions.create(model="symphony", messages=ask(QUESTION),
                                                 extra_body={"symphony": {"cots": 1}})
    assert reply.choices[0].message.content == "0"  # the timed stand-in always answers 0
    assert slow.proc is not None and slow.proc.poll() is None


def test_client_leaving_a_plain_request_cancels_its_question(swarm: Swarm) -> None:
    slow = node(swarm, "slow")
    api = str(slow.info["api"])
    before = metrics(slow)
    body = json.dumps({"model": "symphony", "messages": ask(QUESTION), "symphony": {"cots": 1}}).encode()
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port.encode(), len(body), body))
        wait_for(lambda: moved(before, metrics(slow), "symphony_beacon_rounds_total", role="planning"), timeout=30,
                 what="the question to start")
    wait_for(lambda: moved(before, metrics(slow), "symphony_tasks_total", outcome="cancelled"), timeout=30,
             what="the abandoned question to be cancelled")
    assert moved(before, metrics(slow), "symphony_tasks_total", outcome="done") == 0
    assert client(slow).models.list().data


def test_failed_question_runs_once_though_the_client_may_retry(swarm: Swarm) -> None:
    """The official client's default 2 retries are not used on a failed question: one network run,
    and the error carries the chains' summary."""
    arith = node(swarm, "arith")
    before = metrics(arith)
    retrying = openai.OpenAI(base_url=str(arith.info["api"]) + "/v1", api_key="unused", timeout=120)
    with pytest.raises(openai.APIStatusError) as failed:
        retrying.chat.completions.create(model="symphony", messages=ask("Who wrote Hamlet?"),
                                         extra_body={"symphony": NO_ANSWER})
    assert failed.value.response.headers["x-should-retry"] == "false"
    assert moved(before, metrics(arith), "symphony_tasks_total", outcome="failed") == 1
    assert failed.value.body["symphony"]["trace"]["chains"], "the trace summary names the chains"
    usage = failed.value.body["symphony"]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0, "what it spent"


def test_streaming_shows_the_chains_progress_before_the_answer(swarm: Swarm) -> None:
    planned = {"cots": 1, "max_steps": 3}  # a plan of two steps, each step's progress shown
    stream = client(node(swarm, "arith")).chat.completions.create(model="symphony", messages=ask(QUESTION),
                                                                 stream=True, extra_body={"symphony": planned})
    deltas = [c.choices[0].delta for c in stream if c.choices]
    thinking = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not (d.model_extra or {}).get("reasoning_content") for d in deltas[first_content:])
    assert "plan made" in thinking and "step 2 answered '84'" in thinking and "Vote: '84'" in thinking


def test_tool_call_from_the_network_answer(swarm: Swarm) -> None:
    tool = {"type": "function", "function": {"name": "save", "parameters": {
        "type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}}}
    reply = client(node(swarm, "arith")).chat.completions.create(
        model="symphony", messages=ask(QUESTION), tools=[tool], tool_choice="required",
        extra_body={"symphony": {"cots": 1}})
    assert json.loads(reply.choices[0].message.tool_calls[0].function.arguments) == {"total": 84}


def test_symphony_ask_prints_task_id_and_progress(swarm: Swarm) -> None:
    arith = node(swarm, "arith")
    done = subprocess.run([sys.executable, "-m", "symphony", "ask", "--api", str(arith.info["api"]), "--cots", "1",
                           QUESTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    task_id = done.stderr.split()[1]
    assert arith.get(f"/v1/tasks/{task_id}")["answer"] == "84"
    assert "plan made" in done.stderr and "Vote: '84'" in done.stderr
