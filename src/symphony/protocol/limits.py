"""Flow-control guards: per-peer rate limits on incoming requests and randomised backoff.

Both are pure (time and randomness are arguments), so the simulator and unit tests drive them.

- ``RateLimiter``: one token bucket per (peer, protocol). A peer may burst ``burst`` requests
  and then ``rate_per_s`` on average; past that its requests are dropped before they are parsed
  (no signature check, no model call) and counted in ``dropped``. A protocol may have a limit of
  its own (``per_channel``): a Task costs model calls, a beacon reply microseconds, so the task
  protocol's bucket is far tighter than the default one. Memory is bounded: at most
  ``max_peers`` buckets, the least recently used forgotten first (a forgotten peer starts with a
  full bucket again, which costs at most one burst).
- ``backoff_delay``: "full jitter" exponential backoff (delay drawn uniformly from
  [0, min(cap, base * 2**attempt)]), so retries that fail together do not retry in lockstep and
  claims or retries cannot cycle in phase (DESIGN, seed 004).
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    rate_per_s: float = 50.0
    burst: float = 100.0
    max_peers: int = 10_000

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and self.burst >= 1 and self.max_peers > 0):
            raise ValueError("rate_per_s must be > 0, burst >= 1 and max_peers > 0")


class RateLimiter:
    """Token buckets keyed by (peer, channel); ``allow`` says whether to serve a request.

    ``limit`` applies to every channel not named in ``per_channel``."""

    def __init__(self, limit: RateLimit = RateLimit(), *, per_channel: Mapping[str, RateLimit] | None = None) -> None:
        self.limit = limit
        self.per_channel = dict(per_channel or {})
        self.dropped: Counter[str] = Counter()
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, peer: str, channel: str, *, now: float) -> bool:
        """Take one token from ``peer``'s bucket for ``channel``; False (and counted) if empty."""
        key = (peer, channel)
        limit = self.per_channel.get(channel, self.limit)
        tokens, last = self._buckets.pop(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + max(0.0, now - last) * limit.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.limit.max_peers:
            self._buckets.popitem(last=False)
        if not allowed:
            self.dropped[channel] += 1
        return allowed


def backoff_delay(attempt: int, rng: random.Random, *, base_s: float = 0.1, cap_s: float = 5.0) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): uniform in [0, min(cap, base * 2**attempt)]."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt!r}")
    return rng.uniform(0.0, min(cap_s, base_s * 2.0 ** min(attempt, 62)))


__all__ = ["RateLimit", "RateLimiter", "backoff_delay"]
