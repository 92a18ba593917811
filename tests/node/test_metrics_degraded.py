"""Degradation and cost in a node's /metrics: degraded questions counted by kind, failed model calls'
tokens counted, and the measured speed handed to a backend whose timeouts follow it."""

from __future__ import annotations

from typing import Any

import pytest

from symphony.llm.base import Completion, ModelError, ModelTimeout
from symphony.node.metrics import MeteredModel, NodeMetrics


def sample(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class Backend:
    """A stand-in backend: answers with 10 completion tokens, or raises ``fail`` (the edge of the unit)."""

    name = "stand-in"
    supports_json_schema = False

    def __init__(self, fail: ModelError | None = None) -> None:
        self.fail = fail
        self.speed = lambda: 0.0

    async def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        if self.fail is not None:
            raise self.fail
        return Completion(text="ok", prompt_tokens=5, completion_tokens=10, latency_s=0.5, model=self.name)

    async def aclose(self) -> None:
        return None


def test_a_declined_step_is_counted() -> None:
    metrics = NodeMetrics()
    metrics.observe("task_declined", {"task": "t/c0/s1", "queue": 4})
    assert sample(metrics, "symphony_declined_steps_total") == 1


def test_each_kind_of_degradation_counts_once_per_question() -> None:
    metrics = NodeMetrics()
    metrics.observe("task_finished", {"degraded": ["step_retried", "step_retried", "chains_collapsed"]})
    metrics.observe("task_failed", {"degraded": ["plan_fallback"]})
    metrics.observe("task_finished", {})
    assert sample(metrics, "symphony_degraded_total", kind="step_retried") == 1
    assert sample(metrics, "symphony_degraded_total", kind="chains_collapsed") == 1
    assert sample(metrics, "symphony_degraded_total", kind="plan_fallback") == 1


async def test_a_failed_calls_tokens_are_counted() -> None:
    metrics = NodeMetrics()
    model = MeteredModel(Backend(ModelTimeout("too slow", prompt_tokens=7, completion_tokens=64)), metrics)
    with pytest.raises(ModelTimeout):
        await model.chat([{"role": "user", "content": "hi"}])
    assert sample(metrics, "symphony_model_calls_total", outcome="error") == 1
    assert sample(metrics, "symphony_model_tokens_total", kind="prompt") == 7
    assert sample(metrics, "symphony_model_tokens_total", kind="completion") == 64


async def test_the_backend_reads_the_measured_speed() -> None:
    """A backend with a ``speed`` hook (``OpenAIModel``) sees the node's tokens/s EMA, not its own guess."""
    backend = Backend()
    model = MeteredModel(backend, NodeMetrics())
    assert backend.speed() == 0.0
    await model.chat([{"role": "user", "content": "hi"}])
    assert backend.speed() == model.throughput.tokens_per_s > 0
