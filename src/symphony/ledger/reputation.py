"""Local reputation: what this node has seen each peer do, and who it no longer trusts (DESIGN §2).

Theory of operation
-------------------
Each node keeps its own table; nothing here is taken on a peer's word. A peer's record is two
decaying evidence counters, *good* and *bad*, and its score is the mean of a Beta posterior
with a uniform prior::

    score = (good + 1) / (good + bad + 2)          # 0.5 for a stranger

Evidence halves every ``half_life_s`` (old sins fade, so do old merits), which bounds how long
an agent can live off a good past while misbehaving now. Offences carry weights by how sure we
are of malice: an invalid signature, a forged or replayed envelope cannot happen by accident
(weight 3: one is enough to blacklist); an outvoted answer or a capped score claim can
(weight 1: three with no merit blacklist); holding an accepted task past its hop limit weighs
1.5 (two blacklist: a squatter costs every requester a full hop timeout each time); a request
dropped by the rate limit weighs 0.02 (a burst of a hundred or so drops blacklists; an honest but
busy initiator that overruns a bucket now and then is only slowed down). Agreement with the winning vote earns 1.

A peer whose score falls below ``blacklist_below`` with at least ``min_bad`` units of bad
evidence is **blacklisted** for ``blacklist_s``: the beacon stops inviting it and its requests
are refused unread. When that expires it comes back on probation (bad evidence reset to the
threshold, merits cleared), so one more offence sends it back at once, while an honest peer wrongly
caught (say, outvoted twice by a colluding majority) recovers.

The table also remembers each peer's first offence and when it was first blacklisted, which is
what the robustness benchmark reports as detection time. Memory is bounded by ``capacity``
(the peer with the least evidence is forgotten first).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum


class Offence(str, Enum):
    """Misbehaviour a node can observe first-hand, and its evidence weight (see the module doc)."""

    INVALID = "invalid"  # bad signature, forged or replayed envelope, schema-invalid message
    FORGED_RECORD = "forged_record"  # a ledger record signed by someone other than its owner
    TIMEOUT = "timeout"  # accepted a task and did not answer before the hop deadline
    OUTVOTED = "outvoted"  # answer disagreed with the winning vote (cross-voting)
    INFLATED_CLAIM = "inflated_claim"  # beacon score above phi(published vector) + tolerance
    FLOOD = "flood"  # request dropped by the per-peer rate limit
    ACCUSED = "accused"  # a peer we do not distrust published that it blacklisted this agent

    @property
    def weight(self) -> float:
        return _WEIGHTS[self]


_WEIGHTS = {
    Offence.INVALID: 3.0,
    Offence.FORGED_RECORD: 3.0,
    Offence.TIMEOUT: 1.5,
    Offence.OUTVOTED: 1.0,
    Offence.INFLATED_CLAIM: 1.0,
    Offence.FLOOD: 0.02,
    Offence.ACCUSED: 1.0,
}


@dataclass(frozen=True)
class ReputationConfig:
    """Knobs of the table. Defaults: 3 outvotes with no agreement blacklist; 1 forgery does."""

    half_life_s: float = 600.0
    blacklist_below: float = 0.25
    min_bad: float = 2.0
    blacklist_s: float = 900.0
    capacity: int = 10_000

    def __post_init__(self) -> None:
        if not (self.half_life_s > 0 and self.blacklist_s > 0 and self.capacity > 0 and self.min_bad > 0):
            raise ValueError("half_life_s, blacklist_s, capacity and min_bad must be > 0")
        if not 0 < self.blacklist_below < 0.5:
            raise ValueError(f"blacklist_below must lie in (0, 0.5), not {self.blacklist_below!r}")


@dataclass
class PeerStanding:
    """One peer's evidence (decayed to ``updated``) and its history of detection."""

    good: float = 0.0
    bad: float = 0.0
    updated: float = 0.0
    first_offence: float | None = None
    blacklisted_until: float | None = None
    first_blacklisted: float | None = None
    offences: Counter[str] = field(default_factory=Counter)

    def score(self) -> float:
        return (self.good + 1.0) / (self.good + self.bad + 2.0)


class ReputationTable:
    """This node's reputation of its peers. Pure: every method takes ``now`` (seconds)."""

    def __init__(self, config: ReputationConfig = ReputationConfig()) -> None:
        self.config = config
        self._peers: dict[str, PeerStanding] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._peers

    # ---- evidence ------------------------------------------------------------------------

    def reward(self, agent_id: str, *, now: float, weight: float = 1.0) -> None:
        """Record good behaviour (e.g. an answer that agreed with the winning vote)."""
        standing = self._standing(agent_id, now)
        standing.good += max(0.0, weight)

    def penalize(self, agent_id: str, offence: Offence, *, now: float, weight: float = 1.0) -> bool:
        """Record ``offence`` (scaled by ``weight``); return True if it blacklisted the peer just now."""
        standing = self._standing(agent_id, now)
        standing.bad += offence.weight * max(0.0, weight)
        standing.offences[offence.value] += 1
        if standing.first_offence is None:
            standing.first_offence = now
        if self._listed(standing, now) or standing.bad < self.config.min_bad:
            return False
        if standing.score() >= self.config.blacklist_below:
            return False
        standing.blacklisted_until = now + self.config.blacklist_s
        if standing.first_blacklisted is None:
            standing.first_blacklisted = now
        return True

    # ---- queries -------------------------------------------------------------------------

    def score(self, agent_id: str, *, now: float) -> float:
        """Beta-posterior mean in [0, 1]; 0.5 for a peer never seen, 0 while blacklisted."""
        standing = self._peers.get(agent_id)
        if standing is None:
            return 0.5
        if self.is_blacklisted(agent_id, now=now):
            return 0.0
        self._decay(standing, now)
        return standing.score()

    def weight(self, agent_id: str, *, now: float) -> float:
        """Factor in [0, 1] applied to a peer's beacon score: 1 for neutral or better, less below."""
        return min(1.0, 2.0 * self.score(agent_id, now=now))

    def is_blacklisted(self, agent_id: str, *, now: float) -> bool:
        standing = self._peers.get(agent_id)
        return standing is not None and self._listed(standing, now)

    def suspects(self, *, now: float, below: float = 0.4) -> dict[str, float]:
        """Peers whose score is under ``below`` (blacklisted ones at 0), rounded to 0.05: what to publish."""
        out = {}
        for agent_id in self._peers:
            score = self.score(agent_id, now=now)
            if score < below:
                out[agent_id] = round(score * 20) / 20
        return out

    def blacklisted(self, *, now: float) -> frozenset[str]:
        """Peers to exclude from selection and whose requests to refuse, now."""
        return frozenset(a for a, s in self._peers.items() if self._listed(s, now))

    def standing(self, agent_id: str) -> PeerStanding | None:
        """The raw record (for reports); None for a peer never observed."""
        return self._peers.get(agent_id)

    # ---- internals -----------------------------------------------------------------------

    def _listed(self, standing: PeerStanding, now: float) -> bool:
        until = standing.blacklisted_until
        if until is None:
            return False
        if now < until:
            return True
        # expired: back on probation, one more offence away from the list
        standing.blacklisted_until = None
        self._decay(standing, now)
        standing.good = 0.0
        standing.bad = self.config.min_bad
        return False

    def _standing(self, agent_id: str, now: float) -> PeerStanding:
        standing = self._peers.get(agent_id)
        if standing is None:
            if len(self._peers) >= self.config.capacity:
                self._forget_one(now)
            standing = self._peers[agent_id] = PeerStanding(updated=now)
        self._decay(standing, now)
        return standing

    def _decay(self, standing: PeerStanding, now: float) -> None:
        elapsed = now - standing.updated
        if elapsed > 0:
            factor = math.pow(0.5, elapsed / self.config.half_life_s)
            standing.good *= factor
            standing.bad *= factor
            standing.updated = now

    def _forget_one(self, now: float) -> None:
        """Evict the peer with the least evidence that is not blacklisted (or the least overall)."""
        def key(item: tuple[str, PeerStanding]) -> tuple[bool, float]:
            return self._listed(item[1], now), item[1].good + item[1].bad
        victim, _ = min(self._peers.items(), key=key)
        del self._peers[victim]


__all__ = ["Offence", "PeerStanding", "ReputationConfig", "ReputationTable"]
