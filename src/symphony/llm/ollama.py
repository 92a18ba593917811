"""Ollama as a model server: the ``ollama:MODEL`` spec, the start-up probe and the model listing.

The model itself is ``OpenAIModel`` on Ollama's OpenAI-compatible ``/v1`` endpoint (constrained
JSON output included); this module only knows where Ollama is and what it offers (its native
``GET /api/tags``). Ollama's own clients find the server through ``OLLAMA_HOST`` (``HOST``,
``HOST:PORT`` or a URL; ``0.0.0.0``, a bind-everything address, is reached on loopback), and so
does Symphony: default ``http://127.0.0.1:11434``.
"""

from __future__ import annotations

import os
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from symphony.errors import ConfigError
from symphony.llm.base import ChatModel

DEFAULT_HOST: Final = "http://127.0.0.1:11434"
DEFAULT_PORT: Final = 11434
_WILDCARDS: Final = frozenset({"0.0.0.0", "::"})


def ollama_url(host: str | None = None) -> str:
    """The Ollama server's root URL from ``host`` (default: ``OLLAMA_HOST``, else 127.0.0.1:11434).

    Raises ``ConfigError`` for a value that is no host."""
    text = (host if host is not None else os.environ.get("OLLAMA_HOST", "")).strip()
    if not text:
        return DEFAULT_HOST
    parts = urlsplit(text if "://" in text else "http://" + text)
    try:
        port = parts.port or (443 if parts.scheme == "https" else DEFAULT_PORT)
    except ValueError:
        raise ConfigError(f"OLLAMA_HOST={text!r} has a bad port: use HOST:PORT, e.g. 127.0.0.1:11434") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"OLLAMA_HOST={text!r} is not a host: use HOST:PORT or a URL, e.g. 127.0.0.1:11434")
    hostname = "127.0.0.1" if parts.hostname in _WILDCARDS else parts.hostname
    hostname = f"[{hostname}]" if ":" in hostname else hostname
    return f"{parts.scheme}://{hostname}:{port}{parts.path.rstrip('/')}"


def ollama_model(model: str) -> ChatModel:
    """The ``ollama:MODEL`` backend: ``MODEL`` on the Ollama server, through its OpenAI-compatible API."""
    from symphony.llm.openai_backend import OpenAIModel

    return OpenAIModel(base_url=ollama_url() + "/v1", model=model.strip(), api_key="ollama")


def list_ollama_models(url: str, *, timeout: float = 3.0) -> list[dict[str, Any]]:
    """What the Ollama server at ``url`` offers (``GET /api/tags``'s ``models``).

    Raises ``ConfigError`` naming the fix when nothing answers there or the answer is not Ollama's."""
    try:
        response = httpx.get(url + "/api/tags", timeout=timeout)
        response.raise_for_status()
        models = response.json()["models"]
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach Ollama at {url} ({type(exc).__name__}: {exc}): is it running? "
                          "Start it with `ollama serve`, or set OLLAMA_HOST to where it listens") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the server at {url} does not answer GET /api/tags as Ollama does ({exc!r}): "
                          "is OLLAMA_HOST right?") from exc
    if not isinstance(models, list):
        raise ConfigError(f"the server at {url} does not answer GET /api/tags as Ollama does: is OLLAMA_HOST right?")
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("name", m.get("model")), str)]


def probe_ollama(model: str, *, timeout: float = 3.0) -> None:
    """Check, before a node joins, that Ollama runs and has ``model``; ``ConfigError`` with the fix if not."""
    url = ollama_url()
    names = {m.get("name", m.get("model")) for m in list_ollama_models(url, timeout=timeout)}
    wanted = model.strip()
    if wanted not in names and f"{wanted}:latest" not in names:
        have = ", ".join(sorted(str(n) for n in names)) or "none"
        raise ConfigError(f"Ollama at {url} has no model {wanted!r} (it has: {have}): "
                          f"run `ollama pull {wanted}`, or pick one of those")
