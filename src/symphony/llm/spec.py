"""``--model`` specs: the one place that knows every backend (base knows none of them).

Specs (``parse_model_spec``)::

    openai:http://HOST:PORT/v1#MODEL     any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)
    ollama:qwen2.5:0.5b                  a model of the local Ollama (OLLAMA_HOST, default 127.0.0.1:11434)
    llama:qwen2.5-coder-0.5b             embedded llama.cpp, model from PyPI packages (see llama_backend)
    llama:qwen2.5-coder-1.5b | llama:smollm2-135m | llama:/path/to/file.gguf
    scripted:arith                       canned replies for protocol tests (a test double)
    timed:20                             stand-in that takes 20 tokens/s, for systems benchmarks

Backend modules are imported only when a spec names them, so parsing a ``scripted:`` spec needs
neither ``openai`` nor ``llama_cpp``.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import urlsplit

from symphony.llm.base import ChatModel, ModelSpecError

_SPEC_HELP: Final = (
    "use openai:http://HOST:PORT/v1#MODEL, llama:qwen2.5-coder-0.5b, llama:qwen2.5-coder-1.5b, "
    "llama:smollm2-135m, llama:/path/to/file.gguf, ollama:MODEL, scripted:arith or timed:TOKENS_PER_S"
)


def parse_model_spec(spec: str) -> ChatModel:
    """The backend a ``--model`` spec names (see the module docstring for the forms).

    Checks what can be checked without loading a model or opening a connection: the spec's
    shape, and that the needed packages (and model files) are installed.

    Raises ``ModelSpecError`` whose message names the fix (the right form, or a pip command).
    """
    kind, sep, rest = spec.strip().partition(":")
    if not sep or not rest:
        raise ModelSpecError(f"bad model spec {spec!r}: {_SPEC_HELP}")
    kind = kind.lower()
    if kind == "openai":
        return _openai_from_spec(spec, rest)
    if kind == "ollama":
        from symphony.llm.ollama import ollama_model

        return ollama_model(rest)
    if kind == "llama":
        from symphony.llm.llama_backend import LlamaModel

        return LlamaModel.from_spec(rest)
    if kind == "scripted":
        from symphony.llm.scripted import named_script

        return named_script(rest)
    if kind == "timed":
        from symphony.llm.timed import TimedModel

        try:
            rate = float(rest)
        except ValueError:
            rate = float("nan")
        if not rate > 0 or rate == float("inf"):
            raise ModelSpecError(f"bad model spec {spec!r}: timed: needs a positive number of tokens per second, "
                                 "e.g. timed:20")
        return TimedModel(rate)
    raise ModelSpecError(f"unknown model kind {kind!r} in {spec!r}: {_SPEC_HELP}")


def _openai_from_spec(spec: str, rest: str) -> ChatModel:
    url, sep, model = rest.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelSpecError(f"bad model spec {spec!r}: the server URL must look like http://HOST:PORT/v1, "
                             "e.g. openai:http://127.0.0.1:8080/v1#qwen2.5-coder")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ModelSpecError(f"bad model spec {spec!r}: bad port in {url!r}") from None
    if not sep or not model.strip():
        raise ModelSpecError(f"bad model spec {spec!r}: add the model name after '#', "
                             f"e.g. openai:{url}#qwen2.5-coder")
    from symphony.llm.openai_backend import OpenAIModel

    return OpenAIModel(base_url=url, model=model.strip(), api_key=os.environ.get("OPENAI_API_KEY") or "symphony")


__all__ = ["parse_model_spec"]
