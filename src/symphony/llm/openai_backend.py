"""Chat models served over the OpenAI-compatible HTTP API (vLLM, Ollama, llama.cpp server, SGLang, ...).

Uses the official ``openai`` package's ``AsyncOpenAI`` client, which runs on anyio and so under
trio as well as asyncio. Errors are translated at this boundary: connection failures, timeouts and
HTTP errors become ``ModelError`` / ``ModelTimeout`` naming the model and the URL.

JSON output. Servers differ in what they accept, so a ``json_schema=`` request walks a ladder:

1. ``response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}``
   (OpenAI, vLLM, SGLang, recent Ollama): constrained decoding;
2. ``{"type": "json_object", "schema": ...}`` with the schema also in the system prompt
   (llama-cpp-python's server constrains the output to ``schema``; others read the prompt);
3. no ``response_format``, schema in the prompt only (nothing constrains the output).

The first structured request to an endpoint probes it: a rung the server refuses is "not
supported" (HTTP 400/422, or a 5xx whose body names ``response_format`` / ``json_schema``:
llama-cpp-python's server answers json_schema with a 500 validation error); a plain 5xx is a
server failure, not a capability. The rung that worked is remembered for the process, per
endpoint (``base_url``), so later calls, on any ``OpenAIModel`` of that endpoint, make no failing
request; it is logged once and shown by ``features()``.

Timeouts follow the model's observed speed: ``max_tokens`` over the measured tokens/s (the node's
``ThroughputMeter`` EMA, wired in by ``node.metrics.MeteredModel`` through ``speed``), times a
slack, within a floor and the ``timeout_s`` cap. A failed call's ``ModelError`` carries the
tokens it spent: 0 when the server refused it; for a timed-out (abandoned) call an estimate that
errs high, the prompt (in words) plus ``max_tokens``: llama-cpp-python's server does not stop a non-streamed completion
when the client disconnects (``llama_cpp/server/app.py`` runs it in a thread pool and checks for
a disconnect only between streamed chunks), so the abandoned generation runs on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal

from symphony.llm.base import Completion, ModelError, ModelSpecError, ModelTimeout, approx_tokens, check_chat_args

_JsonMode = Literal["json_schema", "json_object", "prompt"]
_LADDER: Final[tuple[_JsonMode, ...]] = ("json_schema", "json_object", "prompt")
DEFAULT_TIMEOUT_S: Final = 300.0
#: the shortest per-call timeout once the speed is known, and the allowance for the prompt and the queue
MIN_TIMEOUT_S: Final = 30.0
TIMEOUT_SLACK: Final = 3.0
#: words in a 5xx body that say the server refused the request's shape, not that it failed
_SHAPE_WORDS: Final = ("response_format", "json_schema")

log = logging.getLogger(__name__)


class OpenAIModel:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name the server expects.
        api_key: sent as a bearer token (local servers ignore it).
        timeout_s: the longest deadline of one HTTP request (the cap of the speed-based one);
            past it ``chat`` raises ``ModelTimeout``.
        max_retries: the client's retries on connection errors, 429 and 5xx (0: fail at once and
            let Symphony's own fallbacks, such as backup executors, take over).
        http_client: an ``httpx.AsyncClient`` for the openai client to use (tests count requests with it).

    Raises ``ModelSpecError`` when the ``openai`` package is not installed.
    """

    supports_json_schema = True
    #: the JSON rung each endpoint accepted, learned once per process (see the module docstring)
    _learned: ClassVar[dict[str, _JsonMode]] = {}

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "symphony",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 0,
        http_client: Any = None,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise ModelSpecError("the openai backend needs the openai package: pip install 'openai>=1.40'") from None
        self._openai = openai
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{self.base_url}#{model}"
        self.timeout_s = timeout_s
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout_s,
                                          max_retries=max_retries, http_client=http_client)
        self._closed = False
        #: the model's measured tokens/s (0: not measured yet); ``MeteredModel`` points it at its EMA
        self.speed: Callable[[], float] = lambda: 0.0

    def features(self) -> dict[str, str]:
        """What this endpoint was found to support: ``json_output`` is the JSON rung it accepted
        (``json_schema``, ``json_object`` or ``prompt``; ``unprobed`` before the first JSON request)."""
        return {"json_output": self._learned.get(self.base_url, "unprobed")}

    def request_timeout(self, max_tokens: int) -> float:
        """This call's deadline: ``max_tokens`` at the observed speed times ``TIMEOUT_SLACK``, at least
        ``MIN_TIMEOUT_S`` and at most ``timeout_s`` (the cap until the speed is known)."""
        rate = self.speed()
        if not rate > 0:
            return self.timeout_s
        return min(self.timeout_s, max(MIN_TIMEOUT_S, TIMEOUT_SLACK * max_tokens / rate))

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
        learned = self._learned.get(self.base_url)
        for mode in _LADDER[_LADDER.index(learned or "json_schema"):]:
            hinted, response_format = _json_request(messages, json_schema, mode)
            try:
                completion = await self._create(hinted, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                                response_format=response_format)
            except _Refused as exc:
                if mode == _LADDER[-1]:
                    raise
                log.debug("%s: JSON output %s refused: %s", self.name, mode, exc)
                continue
            if learned != mode:
                self._learned[self.base_url] = mode
                log.warning("%s: structured output by %s (the server refused the rungs above it)", self.name, mode)
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
        timeout = self.request_timeout(max_tokens)
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens, temperature=temperature, timeout=timeout, **extra)
        except openai.APITimeoutError as exc:
            raise ModelTimeout(f"model {self.name!r}: no reply from {self.base_url} within {timeout:.0f} s",
                               model=self.name, prompt_tokens=sum(approx_tokens(m["content"]) for m in messages),
                               completion_tokens=max_tokens) from exc
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
            if response_format is not None and exc.status_code >= 500 and _names_shape(exc):
                raise _Refused(f"model {self.name!r}: the server at {self.base_url} failed on the request's "
                               f"response_format (HTTP {exc.status_code}): {_detail(exc)}", model=self.name) from exc
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
    """The server refused this request's shape: HTTP 400/422, or a 5xx naming the response_format
    (for JSON output: step down the ladder)."""


def _names_shape(exc: Exception) -> bool:
    """Whether an HTTP error's body names the response_format (a refused shape, not a server failure)."""
    text = f"{getattr(exc, 'body', '')} {exc}"
    return any(word in text for word in _SHAPE_WORDS)


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
    return hinted, ({"type": "json_object", "schema": schema} if mode == "json_object" else None)


__all__ = ["DEFAULT_TIMEOUT_S", "MIN_TIMEOUT_S", "TIMEOUT_SLACK", "OpenAIModel"]
