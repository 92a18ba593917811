"""Model backends behind one async interface (DESIGN §1, ``llm`` layer).

``ChatModel`` is the interface; ``parse_model_spec`` turns a ``--model`` spec into a backend:
``openai:`` (any OpenAI-compatible server), ``llama:`` (embedded llama.cpp), ``scripted:`` (test
double) and ``timed:`` (stand-in with a fixed speed, for systems benchmarks). Backend modules are
imported lazily, so ``import symphony.llm`` needs neither ``openai`` nor ``llama_cpp``.
"""

from symphony.llm.base import (
    ChatMessage,
    ChatModel,
    Completion,
    ModelError,
    ModelSpecError,
    ModelTimeout,
    parse_model_spec,
)
from symphony.llm.scripted import ScriptedModel
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
    "parse_model_spec",
]
