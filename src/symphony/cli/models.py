"""``symphony models``: what the local Ollama or an OpenAI-compatible server offers, as ``--model`` specs."""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from symphony.cli.render import console, print_error
from symphony.errors import ConfigError
from symphony.llm import list_ollama_models, ollama_url


def _ollama_rows() -> list[dict[str, Any]]:
    url = ollama_url()
    return [{"spec": f"ollama:{m.get('name', m.get('model'))}", "name": m.get("name", m.get("model")),
             "size": m.get("size"), "parameters": (m.get("details") or {}).get("parameter_size"),
             "modified_at": m.get("modified_at"), "server": url} for m in list_ollama_models(url)]


def _openai_rows(url: str, *, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The models of an OpenAI-compatible server at ``url`` (``GET {url}/models``); ``ConfigError`` if it fails."""
    url = url.rstrip("/")
    key = os.environ.get("OPENAI_API_KEY") or "symphony"
    try:
        response = httpx.get(url + "/models", timeout=timeout, headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        data = response.json()["data"]
        ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot list the models at {url}/models ({type(exc).__name__}: {exc}): is the server "
                          "running, and is the URL its API root (e.g. http://127.0.0.1:8080/v1)?") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{url}/models did not answer as an OpenAI-compatible server does ({exc!r}): "
                          "is the URL its API root (e.g. http://127.0.0.1:8080/v1)?") from exc
    return [{"spec": f"openai:{url}#{model_id}", "name": model_id, "server": url} for model_id in ids]


def models(
    openai: Annotated[str | None, typer.Option("--openai", metavar="URL",
                                               help="List an OpenAI-compatible server's models "
                                                    "(its API root, e.g. http://127.0.0.1:8080/v1).")] = None,
    ollama: Annotated[bool, typer.Option("--ollama", help="List the local Ollama's models (OLLAMA_HOST, "
                                                          "default 127.0.0.1:11434); the default.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print raw JSON instead of a table.")] = False,
) -> None:
    """List the models a local model server offers, each with the --model spec that uses it."""
    if openai is not None and ollama:
        print_error("give --ollama or --openai URL, not both")
        raise typer.Exit(2)
    try:
        rows = _openai_rows(openai) if openai is not None else _ollama_rows()
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("--model spec", "size", "parameters")
    for row in rows:
        size = row.get("size")
        table.add_row(row["spec"], f"{size / 1e9:.1f} GB" if isinstance(size, int | float) else "",
                      row.get("parameters") or "")
    console.print(table)
    if not rows:
        console.print("no models: pull one (ollama pull qwen2.5:0.5b) or load one into the server")
