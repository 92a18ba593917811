"""A peer contract net for one sub-task: announce, bid, award by a deadline, or fall back to claiming.

Theory of operation
-------------------
Whoever finds a ready sub-task whose best agent is not obvious announces it with a deadline;
agents that could do it bid their estimated cost (tokens), quality (0..1, e.g. phi of their
capability against the requirement), latency and standing (reputation, 0..1). At the deadline
the announcer awards the sub-task to the best bid by ``utility``; ties go to the lower bidder id,
so every party that saw the same bids names the same winner. As with the Beacon's replies
(DESIGN §4), a bid that arrives after the deadline is ignored and counted, never awarded: an
announcer that waited for stragglers would let the slowest bidder set everyone's pace. An
announcement with no valid bid awards nothing and the sub-task goes back to plain claiming on the
board, so the contract net can only add a choice, never a stall. The award is carried out by the
winner claiming the sub-task on the board (``crdt``), so leases, heartbeats and takeover work the
same for awarded and self-claimed work; the manager role ends with the award.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from symphony.errors import ConfigError


@dataclass(frozen=True)
class Bid:
    """An agent's offer for one announced sub-task."""

    subtask: str
    bidder: str
    cost: float  # estimated tokens
    quality: float  # expected quality in [0, 1]
    latency_s: float  # estimated time to deliver
    standing: float = 0.5  # the bidder's reputation in [0, 1] as the announcer sees it

    def is_sane(self) -> bool:
        values = (self.cost, self.quality, self.latency_s, self.standing)
        return (all(math.isfinite(v) for v in values) and self.cost >= 0 and self.latency_s >= 0
                and 0 <= self.quality <= 1 and 0 <= self.standing <= 1)


@dataclass(frozen=True)
class Weights:
    """How ``utility`` trades quality and standing against cost and latency."""

    quality: float = 1.0
    standing: float = 0.5
    per_1k_tokens: float = 0.1
    per_s: float = 0.02


def utility(bid: Bid, weights: Weights = Weights()) -> float:
    """Higher is better: weighted quality and standing, minus weighted cost and latency."""
    return (weights.quality * bid.quality + weights.standing * bid.standing
            - weights.per_1k_tokens * bid.cost / 1000 - weights.per_s * bid.latency_s)


@dataclass
class Announcement:
    """One open call for bids on ``subtask``, closing at ``deadline_s`` (announcer's clock)."""

    subtask: str
    announcer: str
    deadline_s: float
    bids: dict[str, Bid] = field(default_factory=dict)
    ignored: Counter[str] = field(default_factory=Counter)

    def offer(self, bid: Bid, now_s: float) -> bool:
        """Record ``bid`` if it is on time, for this sub-task and sane; otherwise count why not.

        A bidder's later bid replaces its earlier one (a re-estimate), before the deadline only.
        """
        reason = ("late" if now_s > self.deadline_s else "wrong_subtask" if bid.subtask != self.subtask
                  else "insane" if not bid.is_sane() else None)
        if reason:
            self.ignored[reason] += 1
            return False
        self.bids[bid.bidder] = bid
        return True

    def award(self, now_s: float, weights: Weights = Weights(), *,
              load_s: Mapping[str, float] | None = None) -> Bid | None:
        """The winning bid, or None: no bid came (fall back to plain claiming).

        ``load_s`` adds seconds to a bidder's latency: the work it was awarded earlier in the same round.
        Bidders estimate each call alone, so without it every call of a round goes to the same best bidder.

        Raises:
            ConfigError: called before the deadline (the caller's bug: it would cut bidders off).
        """
        if now_s < self.deadline_s:
            raise ConfigError(f"award at {now_s} is before the deadline {self.deadline_s}")
        if not self.bids:
            return None
        load_s = load_s or {}

        def rank(b: Bid) -> tuple[float, tuple[int, ...]]:
            loaded = replace(b, latency_s=b.latency_s + load_s.get(b.bidder, 0.0))
            return utility(loaded, weights), _reverse(b.bidder)

        return max(self.bids.values(), key=rank)


def _reverse(text: str) -> tuple[int, ...]:
    """A key that sorts strings in reverse, so ``max`` picks the lowest bidder id among equal utilities."""
    return tuple(-ord(ch) for ch in text) + (1,)


__all__ = ["Announcement", "Bid", "Weights", "utility"]
