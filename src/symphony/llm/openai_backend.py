"""Chat models served over the OpenAI-compatible HTTP API (vLLM, Ollama, llama.cpp server, SGLang, ...).

Uses the official ``openai`` package's ``AsyncOpenAI`` client, which runs on anyio and so under
trio as well as asyncio. Errors are translated at this boundary: connection failures, timeouts and
HTTP errors become ``ModelError`` / ``ModelTimeout`` naming the model and the URL.

JSON output. Servers differ in what they accept, so a ``json_schema=`` request walks a ladder and
remembers, per model object, the first rung the server accepted:

1. ``response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}``
   (OpenAI, vLLM, llama.cpp server, SGLang, recent Ollama): constrained decoding;
2. ``{"type": "json_object"}`` with the schema appended to the system prompt;
3. no ``response_format``, schema in the prompt only.

A server that refuses a rung answers 400 or 422; only those step down the ladder.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final, Literal

from symphony.llm.base import Completion, ModelError, ModelSpecError, ModelTimeout, approx_tokens, check_chat_args

_JsonMode = Literal["json_schema", "json_object", "prompt"]
_LADDER: Final[tuple[_JsonMode, ...]] = ("json_schema", "json_object", "prompt")
DEFAULT_TIMEOUT_S: Final = 300.0


class OpenAIModel:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name the server expects.
        api_key: sent as a bearer token (local servers ignore it).
        timeout_s: deadline of one HTTP request; past it ``chat`` raises ``ModelTimeout``.
        max_retries: the client's retries on connection errors, 429 and 5xx (0: fail at once and
            let Symphony's own fallbacks, such as backup executors, take over).

    Raises ``ModelSpecError`` when the ``openai`` package is not installed.
    """

    supports_json_schema = True

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "symphony",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 0,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise ModelSpecError("the openai backend needs the openai package: pip install 'openai>=1.40'") from None
        self._openai = openai
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{self.base_url}#{model}"
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout_s,
                                          max_retries=max_retries)
        self._json_mode: _JsonMode = "json_schema"
        self._closed = False

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        check_chat_args(messages, max_tokens=max_tokens, temperature=temperature)
        if self._closed:
            raise ModelError(f"model {self.name!r} is closed", model=self.name)
        if json_schema is None:
            return await self._create(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
        for mode in _LADDER[_LADDER.index(self._json_mode):]:
            hinted, response_format = _json_request(messages, json_schema, mode)
            try:
                completion = await self._create(hinted, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                                response_format=response_format)
            except _Refused:
                if mode == _LADDER[-1]:
                    raise
                continue
            self._json_mode = mode
            return completion
        raise AssertionError("unreachable")  # pragma: no cover

    async def _create(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        extra: dict[str, Any] = {}
        if seed is not None:
            extra["seed"] = seed
        if response_format is not None:
            extra["response_format"] = response_format
        openai = self._openai
        started = time.perf_counter()
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens, temperature=temperature, **extra)
        except openai.APITimeoutError as exc:
            raise ModelTimeout(f"model {self.name!r}: no reply from {self.base_url} within the timeout",
                               model=self.name) from exc
        except openai.APIConnectionError as exc:
            raise ModelError(
                f"model {self.name!r}: cannot reach the server at {self.base_url} ({exc.__cause__ or exc}); "
                f"check that it is running: curl {self.base_url}/models", model=self.name) from exc
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise _Refused(f"model {self.name!r}: the server at {self.base_url} refused the request "
                           f"(HTTP {exc.status_code}): {_detail(exc)}", model=self.name) from exc
        except openai.AuthenticationError as exc:
            raise ModelError(f"model {self.name!r}: the server at {self.base_url} refused the API key "
                             "(HTTP 401); set OPENAI_API_KEY", model=self.name) from exc
        except openai.NotFoundError as exc:
            raise ModelError(f"model {self.name!r}: HTTP 404 from {self.base_url}: {_detail(exc)}; check the model "
                             f"name (curl {self.base_url}/models) and that the URL ends in /v1",
                             model=self.name) from exc
        except openai.APIStatusError as exc:
            raise ModelError(f"model {self.name!r}: HTTP {exc.status_code} from {self.base_url}: {_detail(exc)}",
                             model=self.name) from exc
        except openai.OpenAIError as exc:
            raise ModelError(f"model {self.name!r}: bad reply from {self.base_url}: {exc}", model=self.name) from exc
        latency = time.perf_counter() - started
        if not response.choices:
            raise ModelError(f"model {self.name!r}: the server at {self.base_url} returned no choices",
                             model=self.name)
        text = response.choices[0].message.content or ""
        usage = response.usage
        if usage is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:  # some servers omit usage; an estimate beats none
            prompt_tokens = sum(approx_tokens(m["content"]) for m in messages)
            completion_tokens = approx_tokens(text)
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_s=latency, model=response.model or self.model,
                          truncated=response.choices[0].finish_reason == "length")

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()


class _Refused(ModelError):
    """HTTP 400/422: the server refused this request's shape (for JSON output: step down the ladder)."""


def _detail(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body
        return str(message)[:300]
    return str(exc)[:300]


def _json_request(
    messages: list[dict[str, str]], schema: dict[str, Any], mode: _JsonMode
) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """The messages and ``response_format`` asking for JSON matching ``schema`` on ladder rung ``mode``."""
    if mode == "json_schema":
        return messages, {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    note = f"Reply with one JSON object that matches this JSON Schema:\n{json.dumps(schema)}"
    if messages[0]["role"] == "system":
        hinted = [{"role": "system", "content": f"{messages[0]['content']}\n\n{note}"}, *messages[1:]]
    else:
        hinted = [{"role": "system", "content": note}, *messages]
    return hinted, ({"type": "json_object"} if mode == "json_object" else None)


__all__ = ["DEFAULT_TIMEOUT_S", "OpenAIModel"]
