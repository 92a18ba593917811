"""The benchmark's numbers: percentiles, traffic totals by channel, result rows, upkeep figures."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from symphony.bench.ledger.config import CHANNELS, KINDS, MB, TARGET_ROUNDS_PER_LOG2N, Totals


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _dist(values: Iterable[float]) -> dict[str, Any]:
    """p50/p95/max (linear interpolation) of ``values``, or Nones for no values."""
    vals = [float(v) for v in values]
    if not vals:
        return {"p50": None, "p95": None, "min": None, "max": None, "samples": 0}
    return {
        "p50": _quantile(vals, 0.5),
        "p95": _quantile(vals, 0.95),
        "min": min(vals),
        "max": max(vals),
        "samples": len(vals),
    }


def _empty_totals() -> Totals:
    return {kind: {name: 0 for name in CHANNELS.values()} for kind in KINDS}


def _add_snapshot(totals: Totals, snapshot: dict[str, dict[str, int]]) -> None:
    for kind in KINDS:
        for key, value in snapshot.get(kind, {}).items():
            name = CHANNELS.get(key, key)
            totals[kind][name] = totals[kind].get(name, 0) + value


def _minus(after: Totals, before: Totals) -> Totals:
    return {kind: {c: after[kind].get(c, 0) - before[kind].get(c, 0) for c in after[kind]} for kind in KINDS}


def _row(engine: str, n: int, setup: str) -> dict[str, Any]:
    return {
        "engine": engine,
        "n": n,
        "setup": setup,
        "settings": {},
        "propagation": None,
        "rounds": None,
        "join": None,
        "failure": None,
        "upkeep": None,
        "cpu": None,
        "wall_s": None,
        "errors": [],
        "skipped": [],
        "notes": [],
    }


def _upkeep(
    *,
    kind: str,
    heartbeat_s: float,
    anti_entropy_s: float,
    per_agent_hour: dict[str, dict[str, float]],
    wire: dict[str, float],
    wire_definition: str,
    how: str,
) -> dict[str, Any]:
    """One upkeep figure: bytes per agent per hour by channel, in MB, and the wire total."""
    return {
        "kind": kind,
        "settings": {"heartbeat_s": heartbeat_s, "anti_entropy_s": anti_entropy_s},
        "per_agent_hour_mb": {c: {k: v / MB for k, v in d.items()} for c, d in per_agent_hour.items()},
        "wire_by_channel_mb": {c: v / MB for c, v in wire.items()},
        "wire_mb": sum(wire.values()) / MB,
        "wire_definition": wire_definition,
        "how": how,
    }


def _rounds(hops: list[int], n: int) -> dict[str, Any]:
    limit = TARGET_ROUNDS_PER_LOG2N * math.log2(n)
    return {**_dist(hops), "limit": limit, "log2_n": math.log2(n)}
