"""Contract net: the best bid wins by the deadline, late and insane bids are ignored and counted, none falls back."""

from __future__ import annotations

import math

import pytest

from symphony.board import Announcement, Bid
from symphony.errors import ConfigError


def bid(who: str, quality: float, *, cost: float = 100, latency: float = 5, subtask: str = "s1") -> Bid:
    return Bid(subtask=subtask, bidder=who, cost=cost, quality=quality, latency_s=latency)


def test_the_best_bid_wins_and_ties_go_to_the_lower_id() -> None:
    """Higher quality wins; equal utility picks the lower bidder id, so all parties agree."""
    call = Announcement("s1", "me", deadline_s=10)
    for b in (bid("b", 0.9), bid("a", 0.9), bid("c", 0.5)):
        assert call.offer(b, now_s=1)
    assert call.award(now_s=10).bidder == "a"


def test_a_late_bid_is_ignored_and_counted() -> None:
    """The Beacon's deadline discipline: a bid after the deadline never wins."""
    call = Announcement("s1", "me", deadline_s=10)
    call.offer(bid("slow", 0.2), now_s=1)
    assert not call.offer(bid("late", 1.0), now_s=10.5)
    assert call.award(now_s=11).bidder == "slow"
    assert call.ignored["late"] == 1


def test_insane_or_misaddressed_bids_are_ignored_and_counted() -> None:
    """A NaN cost or a quality over 1 is refused; so is a bid for another sub-task."""
    call = Announcement("s1", "me", deadline_s=10)
    assert not call.offer(bid("x", 2.0), now_s=0)
    assert not call.offer(bid("y", 0.5, cost=math.nan), now_s=0)
    assert not call.offer(bid("z", 0.5, subtask="s2"), now_s=0)
    assert call.ignored == {"insane": 2, "wrong_subtask": 1}


def test_no_bids_award_nothing_and_early_award_is_a_bug() -> None:
    """No bid: None (fall back to claiming). Awarding before the deadline raises ConfigError."""
    call = Announcement("s1", "me", deadline_s=10)
    with pytest.raises(ConfigError, match="before the deadline"):
        call.award(now_s=5)
    assert call.award(now_s=10) is None


def test_one_rounds_equal_bids_are_spread_by_the_load_already_awarded() -> None:
    """Two bidders that bid alike on 4 calls of one round: with the round's load counted each wins 2, not 4 to 0."""
    load: dict[str, float] = {}
    winners = []
    for s in ("f1", "f2", "f3", "f4"):
        call = Announcement(s, "me", deadline_s=1.0)
        for bidder in ("a", "b"):
            call.offer(Bid(s, bidder, cost=100, quality=1.0, latency_s=6.0), now_s=0.5)
        won = call.award(1.0, load_s=load)
        assert won is not None
        load[won.bidder] = load.get(won.bidder, 0.0) + won.latency_s
        winners.append(won.bidder)
    assert winners == ["a", "b", "a", "b"]
    call = Announcement("f5", "me", deadline_s=1.0)
    call.offer(Bid("f5", "b", cost=100, quality=1.0, latency_s=6.0), now_s=0.5)
    assert call.award(1.0, load_s={"b": 60.0}).bidder == "b"  # type: ignore[union-attr]  # load never drops a bid
