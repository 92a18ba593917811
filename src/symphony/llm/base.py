"""The one async interface every model backend implements, and its errors.

A backend is anything with the ``ChatModel`` shape: a ``name``, whether it can constrain its
output to a JSON Schema, ``chat(...) -> Completion`` and ``aclose()``. Token usage is always
reported, so every answer in Symphony can be priced.

Errors (added to the tree of ``symphony.errors``)::

    SymphonyError
    ├── ModelError              the backend failed: server down, HTTP error, bad output, crash
    │   └── ModelTimeout        no completion before the backend's deadline (also a TimeoutError)
    └── LocalError
        └── ConfigError
            └── ModelSpecError  a bad ``--model`` spec or a missing package; the message says the fix

The backends (``openai_backend``, ``llama_backend``, ``scripted``, ``timed``) import this module;
``llm.spec`` turns a ``--model`` spec into one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from symphony.errors import ConfigError, SymphonyError

#: One chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``.
ChatMessage: TypeAlias = dict[str, str]

_ROLES: Final = frozenset({"system", "user", "assistant"})


class ModelError(SymphonyError):
    """A model backend failed or timed out. The message names the model and says why.

    ``model`` is the backend's name when known (empty otherwise). ``prompt_tokens`` and
    ``completion_tokens`` are what the failed call spent as far as the backend can tell (0 when the
    server refused it; for an abandoned call, an estimate that errs high: a full answer), so usage never leaves failures out.
    """

    def __init__(self, message: str, *, model: str = "", prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        super().__init__(message)
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class ModelTimeout(ModelError, TimeoutError):
    """The backend gave no completion before its deadline."""


class ModelSpecError(ConfigError):
    """A model spec is malformed or needs a package that is not installed; the message says the fix."""


@dataclass(frozen=True)
class Completion:
    """One chat completion.

    ``latency_s`` is the time the backend spent producing it (an HTTP round trip, or llama.cpp
    generation without the wait for the model's lock and without loading). ``model`` is the name
    the backend reports. ``stand_in`` is True for replies not written by a language model
    (``scripted:``, ``timed:``): benchmarks must not report those as model results. ``truncated``
    is True when generation stopped at ``max_tokens`` (finish reason "length"), not at the model's
    own end: the text may end mid-sentence, and callers must not read its last line as a conclusion.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    stand_in: bool = False
    truncated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class ChatModel(Protocol):
    """A chat model. ``chat`` may be called concurrently; backends queue calls as they need.

    ``supports_json_schema`` is True when ``json_schema=`` really constrains the output; other
    backends ignore the schema (callers must still parse and validate the text).
    """

    name: str
    supports_json_schema: bool

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """Complete ``messages``; raises ``ModelError`` (``ModelTimeout``) when the backend fails."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources. Idempotent."""
        ...


def check_chat_args(messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> None:
    """Raise ``ValueError`` for arguments no backend accepts (a local bug, not a model failure)."""
    if not messages:
        raise ValueError("messages must not be empty")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"each message must be {{'role': system|user|assistant, 'content': str}}, not {m!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, not {max_tokens!r}")
    if not 0.0 <= temperature <= 2.0:
        raise ValueError(f"temperature must be in [0, 2], not {temperature!r}")


def approx_tokens(text: str) -> int:
    """A deterministic token estimate (whitespace-separated words) for backends with no tokenizer."""
    return len(text.split())


def last_user_message(messages: list[dict[str, str]]) -> str:
    """The content of the last ``user`` message ("" when there is none)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content", "")
    return ""


__all__ = [
    "ChatMessage",
    "ChatModel",
    "Completion",
    "ModelError",
    "ModelSpecError",
    "ModelTimeout",
    "approx_tokens",
    "check_chat_args",
    "last_user_message",
]
