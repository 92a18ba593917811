"""A node's counters, in a Prometheus registry of its own (the API renders it as ``GET /metrics``).

Each node owns its own ``CollectorRegistry`` (never prometheus_client's global one), so
several nodes in one process, as in tests, do not mix their numbers. Two kinds of series:

- **counted as they happen**: tasks by outcome and their latency, the kinds of degradation they
  ran with (``symphony_degraded_total{kind}``: ``pipeline.trace.Degraded``, from the ``task_finished``
  and ``task_failed`` events), BEACONSELECT rounds by role (planning / execution), network messages
  rejected by reason and channel (ledger gossip and sync, beacons, tasks: the node's ``rejected``
  events), model calls, tokens (failed calls' included) and latency (``MeteredModel`` wraps the
  node's backend);
- **read at scrape time** from the live objects (``NodeStateCollector``): payload bytes and
  messages per protocol/topic in both directions (``TransportStats``), ledger size and
  available agents, connected peers, the event bus's subscribers, the event log's health
  (lines lost to a failing disk, whether it writes now, rotations), Tasks in progress for
  peers, task records kept, task progress events not kept for late viewers (``TaskProgress``), and
  how the model's server gives JSON output (``symphony_model_json_output{mode}``: probed once, see
  ``llm.openai_backend``).

- **the process** (prometheus_client's ``ProcessCollector`` and ``PlatformCollector``): CPU seconds,
  resident memory, open file descriptors, start time, the Python version.

Names follow Prometheus' conventions: the unit before ``_total`` (``symphony_transport_sent_bytes_total``),
and no ``*_created`` series (a node is one process: its start time is ``process_start_time_seconds``).

Requests the node's defences refuse (blacklisted, rate-limited, not admitted: ``node.defences``)
are ``rejected`` events too, so they count in ``symphony_rejected_messages`` by reason and channel.
The HTTP API adds its own series to the same registry (``api.metrics``, ``api.guard``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sized
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from symphony.llm.base import ChatModel, Completion, ModelError
from symphony.node.bus import EventBus
from symphony.node.eventlog import EventLog
from symphony.node.hardware import ThroughputMeter
from symphony.node.runtime import AgentRuntime
from symphony.node.snapshots import TaskProgress

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
#: ``TransportStats`` key, series name (``_total`` is added on export: the unit comes before it), help
_TRANSPORT_SERIES = (
    ("bytes_sent", "symphony_transport_sent_bytes", "Payload bytes sent"),
    ("bytes_received", "symphony_transport_received_bytes", "Payload bytes received"),
    ("messages_sent", "symphony_transport_sent_messages", "Messages sent"),
    ("messages_received", "symphony_transport_received_messages", "Messages received"),
)


class NodeMetrics:
    """The event-driven series of one node, in a registry of its own."""

    def __init__(self) -> None:
        # prometheus_client has no per-registry switch for the ``*_created`` series of counters and
        # histograms (metrics.py reads one module flag at scrape time): turn them off process-wide.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.tasks = Counter("symphony_tasks", "Questions this node initiated, by outcome", ["outcome"], registry=r)
        self.task_latency = Histogram("symphony_task_latency_seconds", "Time from a question's arrival to its answer",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.beacon_rounds = Counter("symphony_beacon_rounds", "BEACONSELECT rounds run by this node", ["role"],
                                     registry=r)
        self.model_calls = Counter("symphony_model_calls", "Calls to this node's model, by outcome", ["outcome"],
                                   registry=r)
        self.model_tokens = Counter("symphony_model_tokens", "Tokens used by this node's model", ["kind"], registry=r)
        self.model_latency = Histogram("symphony_model_latency_seconds", "Time of one model call",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("symphony_rejected_messages", "Network messages rejected, by reason and protocol/topic",
                                ["reason", "channel"], registry=r)
        self.degraded = Counter("symphony_degraded", "Questions this node initiated that ran degraded, by kind "
                                "(pipeline.trace.Degraded)", ["kind"], registry=r)
        self.dial_failures = Counter("symphony_dial_failures", "Dials to a peer that failed, by where its address "
                                     "came from (bootstrap list, ledger)", ["source"], registry=r)
        self.declined = Counter("symphony_declined_steps", "Steps this node declined as executor because every "
                                "model slot was taken (the planner tried a backup)", registry=r)
        self.stopped = Counter("symphony_stopped_tasks", "Tasks (chains, steps) this node stopped because their "
                               "sender stopped waiting for them (it answered with what they spent)", registry=r)

    def observe(self, kind: str, fields: dict[str, Any]) -> None:
        """Count a protocol event (the node's ``on_event`` sink)."""
        if kind == "beacon_round":
            self.beacon_rounds.labels(role=str(fields.get("role", ""))).inc()
        elif kind == "rejected":
            self.rejected.labels(reason=str(fields.get("reason", "")), channel=str(fields.get("channel", ""))).inc()
        elif kind == "task_declined":
            self.declined.inc()
        elif kind == "task_stopped":
            self.stopped.inc()
        elif kind == "dial_failed" and "source" in fields:
            self.dial_failures.labels(source=str(fields["source"])).inc()
        elif kind in ("task_finished", "task_failed"):  # each kind of degradation the question ran with, once
            for degraded in sorted({str(k) for k in fields.get("degraded", ())}):
                self.degraded.labels(kind=degraded).inc()

    def task_done(self, outcome: str, elapsed_s: float) -> None:
        self.tasks.labels(outcome=outcome).inc()
        self.task_latency.observe(elapsed_s)


class MeteredModel:
    """A ``ChatModel`` that counts the calls, tokens and latency of the model it wraps, and measures
    its tokens/s (``throughput``: the runtime republishes the hardware block when it moves)."""

    def __init__(self, inner: ChatModel, metrics: NodeMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.throughput = ThroughputMeter()
        self.name = inner.name
        self.supports_json_schema = inner.supports_json_schema
        if hasattr(inner, "speed"):  # backends whose timeouts follow the measured speed (openai_backend)
            inner.speed = lambda: self.throughput.tokens_per_s

    def features(self) -> dict[str, str]:
        """What the wrapped backend found its server supports ({} for backends that do not probe)."""
        features = getattr(self.inner, "features", None)
        return dict(features()) if callable(features) else {}

    async def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        started = time.perf_counter()
        try:
            completion = await self.inner.chat(messages, **kwargs)
        except ModelError as exc:  # what the failed call spent counts too
            self.metrics.model_calls.labels(outcome="error").inc()
            self.metrics.model_tokens.labels(kind="prompt").inc(exc.prompt_tokens)
            self.metrics.model_tokens.labels(kind="completion").inc(exc.completion_tokens)
            raise
        self.metrics.model_calls.labels(outcome="ok").inc()
        self.metrics.model_tokens.labels(kind="prompt").inc(completion.prompt_tokens)
        self.metrics.model_tokens.labels(kind="completion").inc(completion.completion_tokens)
        elapsed = time.perf_counter() - started
        self.metrics.model_latency.observe(elapsed)
        self.throughput.observe(completion.completion_tokens, elapsed)
        return completion

    async def load(self) -> float | None:
        """Load the wrapped model now (embedded models load lazily); its seconds, or None when the
        backend has nothing to load."""
        load = getattr(self.inner, "load", None)
        return None if load is None else float(await load())

    async def aclose(self) -> None:
        await self.inner.aclose()


class Observed(Protocol):
    """What ``NodeStateCollector`` reads of a node (``node.daemon.Node``) at scrape time."""

    @property
    def runtime(self) -> AgentRuntime | None: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def task_records(self) -> Sized: ...
    @property
    def task_progress(self) -> TaskProgress: ...
    @property
    def model(self) -> MeteredModel | None: ...

    def now(self) -> float: ...


class NodeStateCollector(Collector):
    """Series read from the running node at scrape time (nothing to keep in sync)."""

    def __init__(self, node: Observed) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        if node.runtime is None:  # not started yet
            return
        stats = node.runtime.transport.stats.snapshot()
        for key, name, help_text in _TRANSPORT_SERIES:
            family = CounterMetricFamily(name, f"{help_text}, by protocol or topic", labels=["channel"])
            for channel, value in sorted(stats[key].items()):
                family.add_metric([channel], value)
            yield family
        ledger = node.runtime.ledger
        now = node.now()
        yield GaugeMetricFamily("symphony_ledger_records", "Records in this replica of the ledger",
                                value=len(ledger.records))
        yield GaugeMetricFamily("symphony_ledger_available_agents", "Agents whose record is available here",
                                value=sum(ledger.is_available(a, now=now) for a in ledger.records))
        yield GaugeMetricFamily("symphony_connected_peers", "Direct connections",
                                value=len(node.runtime.transport.peers()))
        yield GaugeMetricFamily("symphony_event_subscribers", "Clients on GET /v1/events",
                                value=node.bus.subscribers)
        yield CounterMetricFamily("symphony_event_disconnected_subscribers",
                                  "Event clients cut off for falling behind", value=node.bus.disconnected)
        log = node.events
        yield CounterMetricFamily("symphony_event_log_lost_lines", "Event log lines lost to failed writes (disk full)",
                                  value=log.lost)
        yield GaugeMetricFamily("symphony_event_log_ok", "1 if the event log's last write succeeded, else 0",
                                value=int(log.ok))
        yield CounterMetricFamily("symphony_event_log_rotations", "Event log rotations", value=log.rotations)
        yield GaugeMetricFamily("symphony_peer_tasks_active", "Tasks in progress here for other peers",
                                value=sum(node.runtime.defences.active.values()))
        yield GaugeMetricFamily("symphony_task_records", "Task records kept in memory", value=len(node.task_records))
        yield CounterMetricFamily("symphony_progress_dropped_events",
                                  "Task progress events not kept for viewers that connect mid-question (over the cap)",
                                  value=node.task_progress.dropped)
        features = node.model.features() if node.model is not None else {}
        if "json_output" in features:  # a backend that probes its server (llm.openai_backend)
            family = GaugeMetricFamily("symphony_model_json_output", "How the model server gives JSON: 1 for the "
                                       "mode in use (json_schema, json_object, prompt: unconstrained; unprobed)",
                                       labels=["mode"])
            family.add_metric([features["json_output"]], 1)
            yield family
