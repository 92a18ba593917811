"""Model backends behind one async interface (DESIGN §1, ``llm`` layer).

General layout: ``base`` holds the interface (``ChatModel``, ``Completion``) and its errors and
imports no backend; each backend imports ``base``: ``openai_backend`` (any OpenAI-compatible
server), ``llama_backend`` (embedded llama.cpp), ``scripted`` (test double), ``timed`` (stand-in
with a fixed speed, for systems benchmarks); ``ollama`` knows where the local Ollama is and
what it offers (the ``ollama:`` spec, its start-up probe, ``symphony models``). ``spec.parse_model_spec`` turns a ``--model`` spec
into one of them, importing the openai and llama backends only when named, so
``import symphony.llm`` needs neither ``openai`` nor ``llama_cpp``.
"""

from symphony.llm.base import (
    ChatMessage,
    ChatModel,
    Completion,
    ModelError,
    ModelSpecError,
    ModelTimeout,
)
from symphony.llm.ollama import list_ollama_models, ollama_url, probe_ollama
from symphony.llm.scripted import ScriptedModel
from symphony.llm.spec import parse_model_spec
from symphony.llm.timed import TimedModel

__all__ = [
    "ChatMessage",
    "ChatModel",
    "Completion",
    "ModelError",
    "ModelSpecError",
    "ModelTimeout",
    "ScriptedModel",
    "TimedModel",
    "list_ollama_models",
    "ollama_url",
    "parse_model_spec",
    "probe_ollama",
]
