"""BEACONSELECT's pure core: collect beacon replies, rank them, pick primaries and backups.

Theory of operation (Symphony, arXiv:2508.20019, "Beacon-based selection"; DESIGN §4):

1. The shell takes the top-L ledger candidates for r(t) and sends each a Beacon with a deadline.
2. Each candidate scores itself, s_j = phi(c_j, r(t)) (eq. 1) with its exact private vector, and
   replies with that score and its QoS (queue length, expected latency).
3. ``BeaconRound`` keeps the first reply of each invited agent that arrives before the deadline;
   late, uninvited and repeated replies are dropped (the shell counts them).
4. A ``SelectionStrategy`` orders the replies. The paper picks the highest score; we discount a
   busy agent's score by its queue (``load_discount``: 0 for an idle agent, so an idle network
   ranks exactly by score) so that concurrent chains spread over comparably fit agents instead of
   all queueing at the single best one (issue 19: on real processes steps waited ~5 s per task
   for a model slot on a few executors while others idled). Ties then go to QoS (shorter queue,
   then lower latency) and finally to the agent id, so every node derives the same order from
   the same replies whatever order they arrived in.
5. The first m (1, or 2 for redundancy) are primaries; the rest are ordered backups, tried in turn
   when an executor times out or returns an invalid result.
6. A latency budget (issue 17) moves the candidates whose expected latency exceeds it behind all
   the others, keeping each group's order: over budget they are a last resort, not excluded, so a
   tight budget on a slow network still gets an answer (late rather than none).

Left out on purpose: checking a claimed score against the agent's ledger vector is the
reputation system's job; the wire layer already bounds and authenticates each reply.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """One beacon reply, plus what the local node knows of its author.

    ``score``/``queue_length``/``expected_latency_ms`` come from the reply; ``reputation`` and
    ``available`` from the local reputation table and the ledger (only LinUCB reads them).
    """

    agent_id: str
    score: float
    queue_length: int = 0
    expected_latency_ms: float = 0.0
    reputation: float = 1.0
    available: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.score):
            raise ValueError(f"score must be finite, not {self.score!r}")
        if self.queue_length < 0 or not (math.isfinite(self.expected_latency_ms) and self.expected_latency_ms >= 0):
            raise ValueError("queue_length and expected_latency_ms must be finite and >= 0")
        if not 0.0 <= self.reputation <= 1.0:
            raise ValueError(f"reputation must lie in [0, 1], not {self.reputation!r}")


def rank_key(c: Candidate) -> tuple[float, int, float, str]:
    """Sort key of the paper's rule: score desc, then shorter queue, lower latency, agent id."""
    return (-c.score, c.queue_length, c.expected_latency_ms, c.agent_id)


#: Score points a saturated agent loses (``load_discount``'s ceiling) and the queue length at which
#: it loses half of them (a node runs 4 model calls at once: ``pipeline.gate.PriorityGate``).
LOAD_WEIGHT = 0.5
LOAD_HALF = 4.0


def load_discount(queue_length: int, *, weight: float = LOAD_WEIGHT, half: float = LOAD_HALF) -> float:
    """What a queue of ``queue_length`` model calls costs a candidate's score: weight * q / (q + half).

    0 when idle, increasing, below ``weight``: one queued call (0.1) reorders near-equal matches,
    a long queue (0.33 at 8) still loses to nothing fitting much worse, so a busy expert beats an
    idle stranger."""
    return weight * queue_length / (queue_length + half)


def load_rank_key(c: Candidate) -> tuple[float, int, float, str]:
    """``rank_key`` on the load-discounted score: equal to it whenever every queue is empty."""
    return (-(c.score - load_discount(c.queue_length)), c.queue_length, c.expected_latency_ms, c.agent_id)


class SelectionStrategy(Protocol):
    """Orders deduplicated candidates, best first. Must not depend on the input order."""

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]: ...


class CosineStrategy:
    """The paper's rule, load-aware: highest self-reported match score, less ``load_discount``,
    first (``load_rank_key``)."""

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return sorted(candidates, key=load_rank_key)


class RandomStrategy:
    """Ablation: a uniformly random order drawn from ``rng`` (sorted first, so only rng decides)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        ranked = sorted(candidates, key=rank_key)
        self._rng.shuffle(ranked)
        return ranked


@dataclass(frozen=True)
class Selection:
    """Primaries run the sub-task; backups replace a failed primary, in order."""

    primaries: tuple[Candidate, ...]
    backups: tuple[Candidate, ...]

    @property
    def ordered(self) -> tuple[Candidate, ...]:
        return self.primaries + self.backups


def select(
    candidates: Iterable[Candidate],
    *,
    m: int = 1,
    strategy: SelectionStrategy | None = None,
    exclude: Iterable[str] = (),
    latency_budget_ms: float | None = None,
) -> Selection:
    """Pick ``m`` primaries and ordered backups from ``candidates``.

    A repeated agent id keeps only its best-ranked entry; ids in ``exclude`` (blacklisted, or
    already tried) are dropped. Fewer than ``m`` candidates gives fewer primaries, none gives an
    empty selection; the caller decides whether to widen the query or fail the sub-task.
    """
    if m not in (1, 2):
        raise ValueError(f"m must be 1 or 2, not {m!r}")
    skip = set(exclude)
    best: dict[str, Candidate] = {}
    for c in sorted(candidates, key=rank_key):
        if c.agent_id not in skip:
            best.setdefault(c.agent_id, c)
    ordered = (strategy or CosineStrategy()).order(list(best.values()))
    if latency_budget_ms is not None:  # a stable sort: within each group the strategy's order stands
        ordered = sorted(ordered, key=lambda c: c.expected_latency_ms > latency_budget_ms)
    return Selection(tuple(ordered[:m]), tuple(ordered[m:]))


class BeaconRound:
    """The replies to one beacon: the first from each invited agent before ``deadline``.

    ``now`` and ``deadline`` are on the caller's clock (any unit, same for both).
    """

    def __init__(self, *, invited: Iterable[str], deadline: float) -> None:
        self.invited = frozenset(invited)
        self.deadline = deadline
        self._replies: dict[str, Candidate] = {}

    def offer(self, candidate: Candidate, *, now: float) -> bool:
        """Record a reply; False (drop it) if late, uninvited or a repeat."""
        if now > self.deadline or candidate.agent_id not in self.invited or candidate.agent_id in self._replies:
            return False
        self._replies[candidate.agent_id] = candidate
        return True

    def is_complete(self, *, now: float) -> bool:
        """True once the deadline has passed or every invited agent has replied."""
        return now > self.deadline or len(self._replies) == len(self.invited)

    @property
    def replies(self) -> tuple[Candidate, ...]:
        return tuple(sorted(self._replies.values(), key=rank_key))

    def select(self, *, m: int = 1, strategy: SelectionStrategy | None = None) -> Selection:
        return select(self._replies.values(), m=m, strategy=strategy)


# ---- Symphony-Coord: LinUCB ------------------------------------------------------------------

Context = tuple[float, float, float, float, float, float]
CONTEXT_FEATURES = ("bias", "match", "load", "latency", "reputation", "available")


@dataclass(frozen=True)
class LinUCBConfig:
    """LinUCB (Li et al., WWW 2010, Alg. 1) knobs.

    ``alpha`` scales the exploration bonus; ``ridge`` is the prior precision (A starts as
    ridge * I); ``queue_scale`` and ``latency_scale_ms`` are the half-saturation points of the load
    and latency features; ``shared=True`` fits one model for all agents (it generalises to agents
    never seen, but cannot tell apart two agents with equal contexts), ``False`` one per agent.
    """

    alpha: float = 1.0
    ridge: float = 1.0
    queue_scale: float = 4.0
    latency_scale_ms: float = 2_000.0
    shared: bool = False

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and self.ridge > 0 and self.queue_scale > 0 and self.latency_scale_ms > 0):
            raise ValueError(f"invalid LinUCB config {self!r}")


def _saturate(x: float, half: float) -> float:
    return x / (x + half)  # [0, inf) -> [0, 1), equal to 0.5 at ``half``


def linucb_reward(*, success: bool, latency_ms: float, lam: float = 0.5, latency_scale_ms: float = 2_000.0) -> float:
    """r = success - lam * latency_norm, latency_norm = latency / (latency + scale) in [0, 1).

    So a fast success earns close to 1, a slow one 1 - lam, a failure at most 0.
    """
    return float(success) - lam * _saturate(max(0.0, latency_ms), latency_scale_ms)


class _Arm:
    """Ridge-regression state; keeps A^-1 directly (Sherman-Morrison), never inverts."""

    def __init__(self, ridge: float) -> None:
        d = len(CONTEXT_FEATURES)
        self.a_inv = [[(1.0 / ridge if i == j else 0.0) for j in range(d)] for i in range(d)]
        self.b = [0.0] * d

    def ucb(self, x: Sequence[float], alpha: float) -> float:
        ax = [math.fsum(r * v for r, v in zip(row, x, strict=True)) for row in self.a_inv]
        theta_x = math.fsum(bi * axi for bi, axi in zip(self.b, ax, strict=True))  # (A^-1 b)·x, A^-1 symmetric
        return theta_x + alpha * math.sqrt(max(0.0, math.fsum(v * w for v, w in zip(x, ax, strict=True))))

    def update(self, x: Sequence[float], reward: float) -> None:
        ax = [math.fsum(r * v for r, v in zip(row, x, strict=True)) for row in self.a_inv]
        denom = 1.0 + math.fsum(v * w for v, w in zip(x, ax, strict=True))
        self.a_inv = [[self.a_inv[i][j] - ax[i] * ax[j] / denom for j in range(len(x))] for i in range(len(x))]
        self.b = [bi + reward * v for bi, v in zip(self.b, x, strict=True)]


#: Arms a planner keeps (one per executor it learned about); past it the least recently updated goes.
MAX_ARMS = 4096


class LinUCBStrategy:
    """Symphony-Coord: order candidates by LinUCB's upper confidence bound on the reward.

    Context x = [1, match, load, latency, reputation, available], each in [0, 1]:
    match = (score + 1) / 2 (cosine to [0, 1]); load = q / (q + queue_scale);
    latency = l / (l + latency_scale_ms); reputation as given; available = 1.0 or 0.0.
    p = theta·x + alpha * sqrt(x^T A^-1 x) with theta = A^-1 b; ties fall back to ``rank_key``.
    Feed outcomes back with ``update(agent_id, context(candidate), linucb_reward(...))``.
    """

    def __init__(self, config: LinUCBConfig | None = None) -> None:
        self.config = config or LinUCBConfig()
        self._arms: dict[str, _Arm] = {}

    def context(self, c: Candidate) -> Context:
        cfg = self.config
        return (
            1.0,
            min(1.0, max(0.0, (c.score + 1.0) / 2.0)),
            _saturate(c.queue_length, cfg.queue_scale),
            _saturate(c.expected_latency_ms, cfg.latency_scale_ms),
            c.reputation,
            1.0 if c.available else 0.0,
        )

    def ucb(self, c: Candidate) -> float:
        """The upper confidence bound p for ``c`` (an arm never updated scores with the prior)."""
        arm = self._arms.get("" if self.config.shared else c.agent_id) or _Arm(self.config.ridge)
        return arm.ucb(self.context(c), self.config.alpha)

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return sorted(candidates, key=lambda c: (-self.ucb(c), *rank_key(c)))

    def update(self, agent_id: str, context: Sequence[float], reward: float) -> None:
        """Fold one observed outcome into the arm's (or the shared) A and b."""
        if len(context) != len(CONTEXT_FEATURES) or not all(math.isfinite(v) for v in (*context, reward)):
            raise ValueError(f"context must be {len(CONTEXT_FEATURES)} finite floats and reward finite")
        key = "" if self.config.shared else agent_id
        arm = self._arms.pop(key, None) or _Arm(self.config.ridge)
        self._arms[key] = arm  # most recently updated last: the oldest arm goes first past MAX_ARMS
        if len(self._arms) > MAX_ARMS:
            del self._arms[next(iter(self._arms))]
        arm.update(context, reward)

    def state(self) -> dict[str, Any]:
        """The learned A^-1 and b of every arm, JSON-ready (kept in the node's data dir)."""
        return {"features": list(CONTEXT_FEATURES), "shared": self.config.shared,
                "arms": {key: {"a_inv": arm.a_inv, "b": arm.b} for key, arm in self._arms.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace the arms with ``state`` (from ``state()``); ValueError, changing nothing, when it does
        not fit this model (other features or sharing, a malformed or non-finite matrix)."""
        d = len(CONTEXT_FEATURES)
        if state.get("features") != list(CONTEXT_FEATURES) or state.get("shared") != self.config.shared:
            raise ValueError("LinUCB state was learned with other features or sharing")
        arms: dict[str, _Arm] = {}
        for key, saved in list(dict(state.get("arms", {})).items())[-MAX_ARMS:]:
            saved = saved if isinstance(saved, dict) else {}
            a_inv, b = saved.get("a_inv"), saved.get("b")
            rows = a_inv if isinstance(a_inv, list) and len(a_inv) == d else []
            values = [*(v for row in rows if isinstance(row, list) and len(row) == d for v in row),
                      *(b if isinstance(b, list) and len(b) == d else [])]
            if len(values) != d * d + d or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                raise ValueError(f"LinUCB arm {str(key)[:64]!r} is malformed")
            arm = arms[str(key)] = _Arm(self.config.ridge)
            arm.a_inv, arm.b = [[float(v) for v in row] for row in rows], [float(v) for v in b]
        self._arms = arms


def merge_by_rank(ranked: Sequence[Sequence[T]], cap: int, key: Callable[[T], str]) -> list[T]:
    """Merge one ranking per requirement of a chain beacon into one invitation list: every
    requirement's best first, then every second best, ...; each agent (``key``) once, at most ``cap``.

    So when a chain's sub-tasks want different agents, each requirement still reaches its best few."""
    chosen: dict[str, T] = {}
    for rank in range(max((len(rows) for rows in ranked), default=0)):
        for rows in ranked:
            if rank < len(rows) and len(chosen) < cap:
                chosen.setdefault(key(rows[rank]), rows[rank])
    return list(chosen.values())
