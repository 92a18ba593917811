"""The network through two popular client libraries nobody here wrote: LangChain's ``ChatOpenAI``
(invoke, stream, structured output) and LiteLLM's ``completion``, against a real node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from symphony.testing import NodeProcess, open_swarm

pytestmark = pytest.mark.e2e

QUESTION = "What is (17 + 25) * 2?"


class Result(BaseModel):
    answer: int


@pytest.fixture(scope="module")
def arith(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with open_swarm(tmp_path_factory.mktemp("clients")) as swarm:
        yield swarm.spawn("arith", args=("--model", "scripted:arith")).wait_ready()


def test_langchain_invoke_stream_and_structured_output(arith: NodeProcess) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=str(arith.info["api"]) + "/v1", api_key="unused", model="symphony", max_retries=0,
                      timeout=120)
    assert chat.invoke([("system", "Answer briefly."), ("user", QUESTION)]).content == "84"
    assert "".join(str(chunk.content) for chunk in chat.stream(QUESTION)) == "84"
    structured = chat.with_structured_output(Result, method="json_schema")
    assert structured.invoke(QUESTION) == Result(answer=84)


def test_litellm_completion(arith: NodeProcess) -> None:
    import litellm

    response = litellm.completion(model="openai/symphony", api_base=str(arith.info["api"]) + "/v1",
                                  api_key="unused", messages=[{"role": "user", "content": QUESTION}], timeout=120)
    assert response.choices[0].message.content == "84"
    assert response.usage.total_tokens > 0
