"""Gateway sharding of the ledger's liveness (paper §3.3: the beacon contacts at most L gateways,
each responsible for O(N/L) agents). Pure functions, no I/O.

- **Shard of an agent**: ``shard_of(agent_id, L)``: the first 8 bytes of SHA-256(agent ID), mod L.
  Uniform and fixed for an ID, so every replica computes the same shards with no coordination.
- **How many shards**: ``shards_for(N)``: 1 below ``SHARD_THRESHOLD`` agents (small networks keep
  the plain flooded heartbeats), else ceil(sqrt(N)), so a shard's size N/L and the number of
  shards L grow alike.
- **Gateway of a shard**: rendezvous (highest-random-weight) hashing over the shard's *available*
  members: the member maximising SHA-256(shard, agent ID). Every replica with the same view picks
  the same gateway; when the gateway fails only its shard's role moves (to the runner-up) and no
  other shard's gateway changes; when another member leaves nothing moves.
- **Shard liveness delta**: what a gateway publishes when its shard's availability changes
  (``ShardLiveness``: members up / down since its last delta). Members send their heartbeats
  to the gateway only, so steady-state liveness costs one small request per agent per interval
  instead of a flood to N (or N/L) nodes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from symphony.protocol.messages import AgentId

SHARD_THRESHOLD = 256
MAX_DELTA_IDS = 20_000


def _hash64(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "big")


def shard_of(agent_id: str, shards: int) -> int:
    """The shard (0 .. shards-1) ``agent_id`` belongs to."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, not {shards!r}")
    return _hash64("shard", agent_id) % shards


def shards_for(n: int, *, threshold: int = SHARD_THRESHOLD) -> int:
    """L for a network of ``n`` agents: 1 (no sharding) below ``threshold``, else ceil(sqrt(n))."""
    return 1 if n < threshold else math.isqrt(n - 1) + 1


def gateway_weight(shard: int, agent_id: str) -> int:
    return _hash64("gateway", str(shard), agent_id)


def gateway(shard: int, shards: int, available: Iterable[str]) -> str | None:
    """The gateway of ``shard``: its available member of highest rendezvous weight (None if none)."""
    members = [a for a in available if shard_of(a, shards) == shard]
    return max(members, key=lambda a: (gateway_weight(shard, a), a), default=None)


def gateways(shards: int, available: Iterable[str]) -> dict[int, str]:
    """Every shard's gateway over ``available`` (shards with no available member are absent), O(N)."""
    best: dict[int, tuple[int, str]] = {}
    for agent_id in available:
        shard = shard_of(agent_id, shards)
        key = (gateway_weight(shard, agent_id), agent_id)
        if shard not in best or key > best[shard]:
            best[shard] = key
    return {shard: agent_id for shard, (_, agent_id) in best.items()}


class ShardLiveness(BaseModel):
    """A gateway's signed delta of its shard's availability (body of a ``ledger.shard`` envelope)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard: int = Field(ge=0)
    shards: int = Field(ge=2)
    up: list[AgentId] = Field(default_factory=list, max_length=MAX_DELTA_IDS)
    down: list[AgentId] = Field(default_factory=list, max_length=MAX_DELTA_IDS)


def liveness_delta(before: set[str], after: set[str]) -> tuple[list[str], list[str]]:
    """(members now up that were not, members no longer up), each sorted."""
    return sorted(after - before), sorted(before - after)


__all__ = ["MAX_DELTA_IDS", "SHARD_THRESHOLD", "ShardLiveness", "gateway", "gateway_weight", "gateways",
           "liveness_delta", "shard_of", "shards_for"]
