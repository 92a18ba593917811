"""``ollama:MODEL``, its start-up probe and ``symphony models``, against a fake Ollama server this test
starts on 127.0.0.1 (Ollama itself is not installable here): it speaks Ollama's ``GET /api/tags`` and
the OpenAI-compatible ``/v1`` that the ``ollama:`` backend talks to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trio
from click.testing import Result
from typer.testing import CliRunner

from symphony.cli.main import app
from symphony.errors import ConfigError
from symphony.llm import ollama_url, parse_model_spec, probe_ollama
from symphony.node.config import probe_model_server
from symphony.testing import free_port

TAGS = {"models": [{"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b", "size": 397821319,
                    "modified_at": "2025-01-01T00:00:00Z", "details": {"parameter_size": "494.03M"}},
                   {"name": "smollm2:latest", "model": "smollm2:latest", "size": 1, "details": {}}]}


class FakeOllama(BaseHTTPRequestHandler):
    """Ollama's listing, and a chat completion that echoes the model name and last message."""

    def do_GET(self) -> None:
        if self.path == "/api/tags":
            self._json(TAGS)
        elif self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": m["name"], "object": "model"} for m in TAGS["models"]]})
        else:
            self._json({"error": "not found"}, status=404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = f"{body['model']} says: {body['messages'][-1]['content']}"
        self._json({"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

    def _json(self, data: object, status: int = 200) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[str]:
    """``HOST:PORT`` of a fake Ollama on 127.0.0.1, as a user would put it in ``OLLAMA_HOST``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("127.0.0.1:9999", "http://127.0.0.1:9999"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("http://box.lan:8000/", "http://box.lan:8000"),
        ("https://ollama.example", "https://ollama.example:443"),
        ("[::1]:11435", "http://[::1]:11435"),
    ],
)
def test_ollama_host_is_read_as_ollama_reads_it(monkeypatch, value: str | None, url: str) -> None:
    if value is None:
        monkeypatch.delenv("OLLAMA_HOST", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_HOST", value)
    assert ollama_url() == url


@pytest.mark.parametrize("value", ["127.0.0.1:notaport", "ftp://host:1"])
def test_a_bad_ollama_host_is_a_config_error(monkeypatch, value: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    with pytest.raises(ConfigError, match="OLLAMA_HOST"):
        ollama_url()


def test_ollama_spec_chats_through_the_ollama_host(monkeypatch, fake_ollama: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama)
    model = parse_model_spec("ollama:qwen2.5:0.5b")

    async def chat() -> str:
        try:
            return (await model.chat([{"role": "user", "content": "hi"}])).text
        finally:
            await model.aclose()

    assert trio.run(chat) == "qwen2.5:0.5b says: hi"


def test_ollama_spec_needs_a_model_name() -> None:
    with pytest.raises(ConfigError, match="ollama:MODEL"):
        parse_model_spec("ollama: ")


def test_probe_accepts_a_pulled_model_by_name_or_latest(monkeypatch, fake_ollama: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama)
    probe_model_server("ollama:qwen2.5:0.5b")
    probe_ollama("smollm2")  # Ollama resolves a bare name to NAME:latest


def test_probe_names_the_pull_for_a_missing_model(monkeypatch, fake_ollama: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama)
    with pytest.raises(ConfigError, match=r"qwen2\.5:0\.5b.*ollama pull llama3"):
        probe_model_server("ollama:llama3")


def test_probe_says_to_start_ollama_when_nothing_listens(monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="ollama serve"):
        probe_model_server("ollama:qwen2.5:0.5b")


def symphony(*args: str, ollama_host: str) -> Result:
    """Run the ``symphony`` CLI in-process with ``OLLAMA_HOST`` set."""
    return CliRunner().invoke(app, list(args), env={"OLLAMA_HOST": ollama_host})


def test_models_lists_ollama_and_openai_servers(fake_ollama: str) -> None:
    listed = symphony("models", "--json", ollama_host=fake_ollama)
    assert listed.exit_code == 0, listed.output
    assert [row["spec"] for row in json.loads(listed.stdout)] == ["ollama:qwen2.5:0.5b", "ollama:smollm2:latest"]
    table = symphony("models", ollama_host=fake_ollama)
    assert "ollama:qwen2.5:0.5b" in table.stdout and "0.4 GB" in table.stdout
    openai = symphony("models", "--openai", f"http://{fake_ollama}/v1", "--json", ollama_host="unused")
    assert openai.exit_code == 0, openai.output
    assert json.loads(openai.stdout)[0]["spec"] == f"openai:http://{fake_ollama}/v1#qwen2.5:0.5b"


def test_models_without_ollama_says_how_to_start_it() -> None:
    down = symphony("models", ollama_host=f"127.0.0.1:{free_port()}")
    assert down.exit_code == 1 and "ollama serve" in down.output
