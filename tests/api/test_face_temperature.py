"""The Ollama and Anthropic faces pass the client's temperature to the executors (as the OpenAI endpoint
does), driven by their official clients over a fake node; an Ollama temperature out of range is a 400."""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import ollama
import pytest

from symphony.api.app import create_app
from tests.api.test_fake_node import BASE
from tests.api.test_openai_fields import AnsweringNode


def transport(node: AnsweringNode) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_app(node, token=None))


async def test_anthropic_temperature_goes_to_the_executors() -> None:
    node = AnsweringNode()
    # this SDK is built on httpx2 (httpx's successor), so its in-process transport comes from there
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(node, token=None)), base_url=BASE)
    client = anthropic.AsyncAnthropic(base_url=BASE, api_key="unused", http_client=http, max_retries=0)
    await client.messages.create(model="symphony", max_tokens=64, extra_body={"temperature": 0.3},  # not a kwarg in 2.10
                                 messages=[{"role": "user", "content": "What is 4*3+2?"}])
    assert node.options[0].temperature == 0.3


async def test_ollama_temperature_goes_to_the_executors_and_is_range_checked() -> None:
    node = AnsweringNode()
    client = ollama.AsyncClient(host=BASE, transport=transport(node))
    await client.chat(model="symphony", messages=[{"role": "user", "content": "What is 4*3+2?"}],
                      options={"temperature": 0.7}, stream=False)
    assert node.options[0].temperature == 0.7
    with pytest.raises(ollama.ResponseError, match="options.temperature"):
        await client.chat(model="symphony", messages=[{"role": "user", "content": "What is 4*3+2?"}],
                          options={"temperature": 7}, stream=False)
    assert len(node.options) == 1
