"""Orchestration accounting: where a task's wall time and bytes go (issue #6; paper §5 systems claims).

*Overhead* is the fraction of a task's wall time not spent inside model inference. The three
chains run in parallel, so the wall time is the initiator's beacon, the slowest chain and the
vote. ``task_overhead`` walks that critical path through the spans the pipeline records with
its injected clock (``trace["spans"]``, chain ``rtt_ms``, the planner's ``spans``, each step's
``spans`` and each attempt's ``rtt_ms`` / ``model_ms`` / ``model_wall_ms``) and splits it into:

- ``model``: inference time the models report (``Completion.latency_s``: for the ``timed:``
  stand-in exactly its sleep);
- ``queue``: waiting for a busy model (inside ``chat`` but not inference);
- ``query``: local ledger QUERY (the beacon's pre-filter);
- ``beacon``: the rest of BEACONSELECT rounds (fan-out, replies, ranking);
- ``transfer``: request round trips minus the time the far side spent in the model
  (link latency, (de)serialization, signing and verifying envelopes);
- ``vote``: the weighted vote;
- ``other``: what is left (planning parse, scheduling, failed attempts).

*Bytes* are counted from the transports' ``TransportStats``: the payloads each node actually
serialized and sent, so a relayed message counts once per hop. ``KindMeter`` splits the same bytes
by envelope kind (beacon, beacon.reply, task, task.result, ...) from the requesting side of each
request: the request as sent and the reply as received, byte for byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from symphony.protocol import peek_kind
from symphony.transport import Transport, TransportStats

PARTS = ("model", "queue", "query", "beacon", "transfer", "vote", "other")


@dataclass(frozen=True)
class Overhead:
    """Milliseconds of one task's critical path, by part (see module docstring)."""

    wall: float
    model: float = 0.0
    queue: float = 0.0
    query: float = 0.0
    beacon: float = 0.0
    transfer: float = 0.0
    vote: float = 0.0
    other: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of the wall time not inside model inference."""
        return 1.0 - self.model / self.wall if self.wall > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "fraction": self.fraction}


def _chain_parts(entry: dict[str, Any]) -> dict[str, float]:
    """Split one planner attempt, as the initiator saw it, into parts."""
    parts = dict.fromkeys(PARTS, 0.0)
    spans = (entry.get("trace") or {}).get("spans") or {}
    rtt = float(entry.get("rtt_ms", 0.0))
    if "chain_ms" not in spans:  # the planner never answered with a trace: all of it is lost time
        parts["other"] = rtt
        return parts
    chain = float(spans["chain_ms"])
    parts["transfer"] = rtt - chain
    parts["model"] = float(spans.get("plan_model_ms", 0.0))
    inside = parts["model"]
    for step in entry["trace"].get("steps", []):
        step_spans = step.get("spans") or {}
        beacon, query = float(step_spans.get("beacon_ms", 0.0)), float(step_spans.get("query_ms", 0.0))
        parts["query"] += query
        parts["beacon"] += beacon - query
        inside += beacon
        for attempt in step.get("attempts", []):
            rtt_step, model = float(attempt.get("rtt_ms", 0.0)), float(attempt.get("model_ms", 0.0))
            model_wall = max(model, float(attempt.get("model_wall_ms", model)))
            parts["model"] += model
            parts["queue"] += model_wall - model
            parts["transfer"] += rtt_step - model_wall
            inside += rtt_step
    parts["other"] = chain - inside
    return parts


def task_overhead(trace: dict[str, Any]) -> Overhead:
    """The critical-path breakdown of one ``TaskService.ask`` trace."""
    spans = trace["spans"]
    per_index: dict[int, list[dict[str, Any]]] = {}
    for chain in trace["chains"]:
        per_index.setdefault(chain["index"], []).append(chain)
    slowest = max(per_index.values(), key=lambda entries: sum(e.get("rtt_ms", 0.0) for e in entries), default=[])
    parts = dict.fromkeys(PARTS, 0.0)
    for entry in slowest:
        for part, value in _chain_parts(entry).items():
            parts[part] += value
    parts["query"] += spans["query_ms"]
    parts["beacon"] += spans["beacon_ms"] - spans["query_ms"]
    parts["vote"] += spans["vote_ms"]
    path = spans["beacon_ms"] + sum(e.get("rtt_ms", 0.0) for e in slowest) + spans["vote_ms"]
    parts["other"] += spans["wall_ms"] - path
    return Overhead(wall=spans["wall_ms"], **parts)


def mean_overhead(items: Iterable[Overhead]) -> Overhead:
    """Part-wise mean over tasks (so ``fraction`` is the overhead of the mean task)."""
    items = list(items)
    if not items:
        return Overhead(wall=0.0)
    fields = ("wall", *PARTS)
    return Overhead(**{f: sum(getattr(o, f) for o in items) / len(items) for f in fields})


@dataclass(frozen=True)
class Traffic:
    """Payload bytes and messages sent, summed over nodes and channels."""

    bytes: int
    messages: int


def traffic(stats: Iterable[TransportStats], channels: Iterable[str] | None = None) -> Traffic:
    """Bytes and messages the given nodes sent on ``channels`` (all channels if ``None``).

    Counting the sending side only counts every transmission once: a request, its reply and
    each pubsub hop."""
    wanted = None if channels is None else set(channels)
    total_bytes = total_messages = 0
    for s in stats:
        for channel, size in s.bytes_sent.items():
            if wanted is None or channel in wanted:
                total_bytes += size
                total_messages += s.messages_sent[channel]
    return Traffic(total_bytes, total_messages)


def minus(after: Traffic, before: Traffic) -> Traffic:
    return Traffic(after.bytes - before.bytes, after.messages - before.messages)


@dataclass
class KindMeter:
    """Bytes and messages by envelope kind, on the request/response ``channels`` of tapped transports."""

    channels: frozenset[str]
    sizes: Counter[str] = field(default_factory=Counter)  # bytes by kind
    counts: Counter[str] = field(default_factory=Counter)  # messages by kind

    def count(self, raw: bytes) -> None:
        if not raw:  # an empty acknowledgement: nothing to send on a one-way wire
            return
        kind = peek_kind(raw)
        self.sizes[kind] += len(raw)
        self.counts[kind] += 1

    def tap(self, transport: Transport) -> None:
        """Count every request ``transport`` sends on ``channels`` and the reply it gets back."""
        send = transport.request

        async def request(peer: str, protocol: str, payload: bytes, *, timeout: float) -> bytes:
            if protocol not in self.channels:
                return await send(peer, protocol, payload, timeout=timeout)
            self.count(payload)
            reply = await send(peer, protocol, payload, timeout=timeout)
            self.count(reply)
            return reply

        transport.request = request  # type: ignore[method-assign]

    def reset(self) -> None:
        self.sizes.clear()
        self.counts.clear()

    def per_task(self, tasks: int) -> dict[str, dict[str, float]]:
        """``{kind: {"bytes": mean bytes per task, "messages": ..., "bytes_per_message": ...}}``, largest first."""
        return {kind: {"bytes": round(size / tasks), "messages": round(self.counts[kind] / tasks, 1),
                       "bytes_per_message": round(size / self.counts[kind])}
                for kind, size in self.sizes.most_common()}


__all__ = ["PARTS", "KindMeter", "Overhead", "Traffic", "mean_overhead", "minus", "task_overhead", "traffic"]
