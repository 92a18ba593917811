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
- **Shard summaries** (architecture §9): a node keeps full records of its own shard only
  (``Ledger(keeps=keeps_shard(...))``) and one signed ``ShardSummary`` per other shard, so its
  state is N/L records + L summaries instead of N records. ``summarize`` clusters a shard's unit
  capability vectors (spherical k-means) and sends each cluster as a cone and a box;
  ``summary_bound`` turns a summary into an upper bound on the cosine score any member can reach
  for a requirement, per cluster the smaller of two: for a cone of centroid c and angular radius
  theta, angle(r, u) >= angle(r, c) - theta for every member u in it (the triangle inequality on
  the sphere), so phi(u, r) <= cos(max(0, angle(r, c) - theta)); for the box, the Lagrangian dual
  of max r.u over box and unit ball (``box_bound``). The initiator asks the most promising shards'
  gateways and stops when no remaining shard's bound beats what it already found
  (``beacon.gateway``). ``SummaryBook`` keeps the latest valid summary per shard and counts every
  rejection.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from symphony.errors import PeerError, ReplayedMessage, StaleMessage
from symphony.protocol.identity import Identity
from symphony.protocol.messages import AgentId, LedgerRecord
from symphony.protocol.sharding import (
    MAX_ADDRS,
    MAX_CONES,
    MAX_STANDBY,
    Q8,
    Cone,
    Contact,
    ShardSummary,
    decode_q8,
    encode_q8,
)

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


# ---- shard summaries (architecture §9) ---------------------------------------------------------

DEFAULT_CONES = 2
BOUND_MARGIN = 1e-9  # float rounding between the issuer's and the reader's arithmetic
_KMEANS_ROUNDS = 8
_DUAL_STEPS = 40


class NotGateway(PeerError):
    """A summary signed by a node that is not (or no longer) the gateway of its shard."""

    reason = "not_gateway"


class ShardMismatch(PeerError):
    """A summary for a different number of shards than this network uses."""

    reason = "wrong_shards"


def keeps_shard(shard: int, shards: int) -> Callable[[str], bool]:
    """``Ledger(keeps=...)`` predicate: hold full records of ``shard``'s members only."""
    return lambda agent_id: shard_of(agent_id, shards) == shard


def _unit(vector: Sequence[float]) -> np.ndarray | None:
    """``vector`` scaled to length 1, rescaled first so tiny or huge entries neither underflow nor
    overflow (as ``store.unit_vector`` does with ``math.hypot``); None for the zero vector."""
    v = np.asarray(vector, dtype=np.float64)
    peak = float(np.abs(v).max()) if len(v) else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return None
    v = v / peak
    return v / float(np.linalg.norm(v))


def _quantized(centroid: np.ndarray) -> tuple[str, np.ndarray]:
    """The centroid as it travels (int8 levels of its unit vector) and the vector every reader decodes."""
    levels = np.clip(np.rint(centroid / np.abs(centroid).max() * Q8), -Q8, Q8).astype(int)
    encoded = encode_q8(levels.tolist())
    return encoded, np.asarray(decode_q8(encoded))


def _kmeans(units: np.ndarray, k: int) -> np.ndarray:
    """Spherical k-means labels of the rows of ``units`` (deterministic: farthest-first seeds)."""
    seeds = [0]
    closest = units @ units[0]
    while len(seeds) < min(k, len(units)):
        seeds.append(int(np.argmin(closest)))
        closest = np.maximum(closest, units @ units[seeds[-1]])
    centroids = units[seeds]
    labels = np.zeros(len(units), dtype=int)
    for _ in range(_KMEANS_ROUNDS):
        labels = np.argmax(units @ centroids.T, axis=1)
        for c in range(len(centroids)):
            mean = units[labels == c].sum(axis=0)
            norm = np.linalg.norm(mean)
            if norm > 0:
                centroids[c] = mean / norm
    return labels


def _outward(values: np.ndarray, *, up: bool) -> str:
    """``values`` as int8 levels, each rounded away from the inside of the box (so the box stays sound)."""
    scaled = values * Q8
    levels = np.ceil(scaled + 1e-9) if up else np.floor(scaled - 1e-9)
    return encode_q8(np.clip(levels, -Q8, Q8).astype(int).tolist())


def summarize(vectors: Sequence[Sequence[float]], *, cones: int = DEFAULT_CONES) -> list[Cone]:
    """Cover every non-zero vector with at most ``cones`` clusters (spherical k-means), each sent as
    a cone (centroid, cos radius) and a box (per-dimension max and min of its unit vectors).

    The radius is measured against the *quantized* centroid and the box is rounded outward, so
    the bound every reader derives from the int8 summary is sound; zero vectors (score 0 for any
    requirement) are left out.
    """
    if not 1 <= cones <= MAX_CONES:
        raise ValueError(f"cones must lie in [1, {MAX_CONES}], not {cones!r}")
    rows = [u for u in map(_unit, vectors) if u is not None]
    if not rows:
        return []
    units = np.vstack(rows)
    labels = _kmeans(units, cones)
    result = []
    for c in sorted(set(labels.tolist())):
        members = units[labels == c]
        mean = members.sum(axis=0)
        encoded, centre = _quantized(mean if np.abs(mean).max() > 1e-6 else members[0])  # antipodes cancel out
        cos_radius = float(np.min(members @ centre)) / float(np.linalg.norm(centre)) - BOUND_MARGIN
        result.append(Cone(centroid=encoded, cos_radius=max(-1.0, min(1.0, cos_radius)), members=len(members),
                           high=_outward(members.max(axis=0), up=True), low=_outward(members.min(axis=0), up=False)))
    return result


def cone_bound(requirement_unit: np.ndarray, centre: np.ndarray, cos_radius: float) -> float:
    """Upper bound of phi(u, r) over unit u with cos(u, centre) >= cos_radius."""
    gap = math.acos(max(-1.0, min(1.0, float(requirement_unit @ centre)))) - math.acos(max(-1.0, min(1.0, cos_radius)))
    return 1.0 if gap <= 0.0 else min(1.0, math.cos(gap) + BOUND_MARGIN)


def _box_dual(r: np.ndarray, high: np.ndarray, low: np.ndarray, mu: float) -> float:
    """g(mu) = max over the box of r.u - mu (|u|^2 - 1): the Lagrangian dual of max r.u over
    box and unit ball. Separable: each coordinate's concave quadratic peaks at r_i / 2mu, clipped."""
    if mu == 0.0:
        return float(np.maximum(r * high, r * low).sum())
    u = np.clip(r / (2.0 * mu), low, high)
    return float((r * u - mu * u * u).sum()) + mu


def box_bound(requirement_unit: np.ndarray, cone: Cone) -> float:
    """Upper bound of r.u over unit u inside the box.

    By weak duality *every* mu >= 0 gives g(mu) >= the maximum, so the bound is sound whatever
    the search below finds; a golden-section search over log mu makes it tight. The unit-ball
    constraint matters: it stops the bound from taking each dimension's best member at once.
    """
    high, low = np.asarray(decode_q8(cone.high)), np.asarray(decode_q8(cone.low))
    if len(high) != len(requirement_unit):
        return 0.0
    best = _box_dual(requirement_unit, high, low, 0.0)
    lo_log, hi_log = math.log(1e-4), math.log(1e4)
    for _ in range(_DUAL_STEPS):
        a, b = lo_log + (hi_log - lo_log) * 0.382, lo_log + (hi_log - lo_log) * 0.618
        ga, gb = (_box_dual(requirement_unit, high, low, math.exp(x)) for x in (a, b))
        best = min(best, ga, gb)
        lo_log, hi_log = (lo_log, b) if ga < gb else (a, hi_log)
    return min(1.0, best + BOUND_MARGIN)


def summary_bound(summary: ShardSummary, requirement: Sequence[float]) -> float:
    """An upper bound on phi(published c_j, r) over every member j of the summarized shard: the
    best cluster's bound, each the smaller of its cone's and its box's (a member lies in both)."""
    r = _unit(requirement)
    floor = 0.0 if r is None or summary.members > sum(c.members for c in summary.cones) else -1.0
    if r is None:
        return floor
    best = floor
    for cone in summary.cones:
        centre = _unit(decode_q8(cone.centroid))
        if centre is None or len(centre) != len(r):
            return max(floor, 0.0)  # phi is 0 when dimensions disagree
        best = max(best, min(cone_bound(r, centre, cone.cos_radius), box_bound(r, cone)))
    return best


def summary_estimate(summary: ShardSummary, requirement: Sequence[float]) -> float:
    """The best cluster centroid's cosine to ``requirement``: *not* a bound, a guess of how well the
    shard matches, used with the bound to order shards (the bound alone ranks shards poorly when
    it is loose; pruning still uses only the bound)."""
    r = _unit(requirement)
    centres = [_unit(decode_q8(c.centroid)) for c in summary.cones]
    return max((float(r @ c) for c in centres if r is not None and c is not None and len(c) == len(r)), default=0.0)


def standby_for(shard: int, shards: int, available: Iterable[str], gateway_id: str) -> list[str]:
    """The rendezvous runners-up of ``shard`` after ``gateway_id`` (who takes over if it dies)."""
    members = [a for a in available if a != gateway_id and shard_of(a, shards) == shard]
    return sorted(members, key=lambda a: (gateway_weight(shard, a), a), reverse=True)[:MAX_STANDBY]


def _addrs(records: dict[str, LedgerRecord], agent_id: str) -> list[str]:
    record = records.get(agent_id)
    return [] if record is None else record.addrs[:MAX_ADDRS]


def issue_summary(
    identity: Identity,
    records: Iterable[LedgerRecord],
    *,
    shard: int,
    shards: int,
    now_ms: int,
    available: Iterable[str] | None = None,
    cones: int = DEFAULT_CONES,
) -> ShardSummary:
    """The signed summary ``identity`` (a member of ``shard``) publishes of the shard's records.

    Raises:
        ValueError: ``identity`` is not a member of ``shard``, or no record belongs to it.
    """
    if shard_of(identity.agent_id, shards) != shard:
        raise ValueError(f"{identity.agent_id} is not a member of shard {shard}")
    members = {r.agent_id: r for r in records if shard_of(r.agent_id, shards) == shard}
    if not members:
        raise ValueError(f"shard {shard} has no records to summarize")
    standby = standby_for(shard, shards, members if available is None else available, identity.agent_id)
    return ShardSummary(
        shard=shard, shards=shards, gateway=identity.agent_id, addrs=_addrs(members, identity.agent_id),
        members=len(members), cones=summarize([r.vector for r in members.values()], cones=cones),
        standby=[Contact(agent_id=a, addrs=_addrs(members, a)) for a in standby], issued_at=now_ms,
    ).signed_by(identity)


@dataclass
class SummaryBook:
    """The latest valid summary of every other shard, as one node holds them.

    A summary is accepted when it verifies, is for this network's shard count, comes from a member
    of its shard, is no older than ``max_age_s`` (and no more than ``future_skew_s`` ahead), and
    is newer than the one held. A different member may replace the held summary's gateway only
    with a higher rendezvous weight, or once the held summary is older than ``takeover_s`` (its
    gateway died and the runner-up took over). ``max_age_s`` is generous (10 min) because a node
    that just joined pulls summaries by anti-entropy, possibly a full re-issue interval old.
    """

    shards: int
    max_age_s: float = 600.0
    future_skew_s: float = 30.0
    takeover_s: float = 300.0
    summaries: dict[int, ShardSummary] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)

    def offer(self, raw: bytes, *, now: float) -> ShardSummary | PeerError:
        """Parse, verify and ``accept`` untrusted bytes; count and return any rejection."""
        try:
            summary = ShardSummary.parse(raw)
            self.accept(summary, now=now)
        except PeerError as exc:
            self.rejected[exc.reason] += 1
            return exc
        return summary

    def accept(self, summary: ShardSummary, *, now: float) -> None:
        """Hold a verified summary. Raises the ``PeerError`` that says why it is refused."""
        if summary.shards != self.shards:
            raise ShardMismatch(f"summary for {summary.shards} shards, this network has {self.shards}")
        if any(shard_of(a, self.shards) != summary.shard
               for a in [summary.gateway, *(c.agent_id for c in summary.standby)]):
            raise NotGateway(f"{summary.gateway} or its standby are not members of shard {summary.shard}")
        age = now - summary.issued_at / 1000
        if age > self.max_age_s or -age > self.future_skew_s:
            raise StaleMessage(f"summary issued {age:.0f} s ago is outside the accepted window")
        held = self.summaries.get(summary.shard)
        if held is not None:
            self._check_replaces(held, summary, now=now)
        self.summaries[summary.shard] = summary

    def _check_replaces(self, held: ShardSummary, new: ShardSummary, *, now: float) -> None:
        if new.gateway == held.gateway:
            if new.issued_at == held.issued_at:
                raise ReplayedMessage(f"summary of shard {new.shard} at {new.issued_at} already held")
            if new.issued_at < held.issued_at:
                raise StaleMessage(f"summary at {new.issued_at} is older than the held {held.issued_at}")
            return
        outranks = gateway_weight(new.shard, new.gateway) > gateway_weight(held.shard, held.gateway)
        if not outranks and now - held.issued_at / 1000 <= self.takeover_s:
            raise NotGateway(f"{new.gateway} is not the gateway of shard {new.shard} while {held.gateway} is live")

    def fresh(self, *, now: float) -> list[ShardSummary]:
        """The summaries young enough to route by, in shard order."""
        return [s for _, s in sorted(self.summaries.items()) if now - s.issued_at / 1000 <= self.max_age_s]

    def nbytes(self) -> int:
        """Wire bytes of the summaries held (this node's summary state)."""
        return sum(len(s.to_bytes()) for s in self.summaries.values())


__all__ = ["DEFAULT_CONES", "MAX_DELTA_IDS", "SHARD_THRESHOLD", "NotGateway", "ShardLiveness", "ShardMismatch",
           "SummaryBook", "box_bound", "cone_bound", "gateway", "gateway_weight", "gateways", "issue_summary", "keeps_shard",
           "liveness_delta", "shard_of", "shards_for", "standby_for", "summarize", "summary_bound",
           "summary_estimate"]
