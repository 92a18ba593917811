"""The local reputation table, rate limiter, backoff and cross-voting (pure cores)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.ledger.reputation import Offence, ReputationConfig, ReputationTable
from symphony.pipeline.crossvote import cross_vote
from symphony.protocol.limits import RateLimit, RateLimiter, backoff_delay

OFFENCES = st.sampled_from(list(Offence))


def test_stranger_is_neutral() -> None:
    table = ReputationTable()
    assert table.score("x", now=0) == 0.5 and table.weight("x", now=0) == 1.0
    assert not table.is_blacklisted("x", now=0)


def test_three_outvotes_blacklist_and_record_detection_time() -> None:
    table = ReputationTable()
    assert not table.penalize("x", Offence.OUTVOTED, now=10)
    assert not table.penalize("x", Offence.OUTVOTED, now=11)
    assert table.penalize("x", Offence.OUTVOTED, now=12)
    standing = table.standing("x")
    assert standing is not None and standing.first_offence == 10 and standing.first_blacklisted == 12
    assert table.blacklisted(now=12) == frozenset({"x"}) and table.score("x", now=12) == 0.0


def test_one_forgery_is_enough() -> None:
    table = ReputationTable()
    assert table.penalize("x", Offence.INVALID, now=0)


def test_agreement_protects_an_honest_agent_from_an_occasional_outvote() -> None:
    table = ReputationTable()
    for t in range(10):
        table.reward("h", now=t)
    for t in range(3):
        table.penalize("h", Offence.OUTVOTED, now=10 + t)
    assert not table.is_blacklisted("h", now=13) and table.score("h", now=13) > 0.5


def test_blacklist_expires_into_probation() -> None:
    config = ReputationConfig(blacklist_s=100)
    table = ReputationTable(config)
    table.penalize("x", Offence.INVALID, now=0)
    assert table.is_blacklisted("x", now=99)
    assert not table.is_blacklisted("x", now=100)
    assert table.penalize("x", Offence.OUTVOTED, now=101), "one more offence on probation re-lists"


def test_evidence_decays_by_half_life() -> None:
    table = ReputationTable(ReputationConfig(half_life_s=10))
    table.penalize("x", Offence.OUTVOTED, now=0)
    table.penalize("x", Offence.OUTVOTED, now=0)
    assert table.score("x", now=0) == pytest.approx(1 / 4)
    assert table.score("x", now=10) == pytest.approx(1 / 3)


def test_capacity_bounds_memory() -> None:
    table = ReputationTable(ReputationConfig(capacity=5))
    for n in range(50):
        table.reward(f"a{n}", now=n)
    assert len(table) == 5


@given(st.lists(st.tuples(st.booleans(), OFFENCES, st.floats(0, 1000)), max_size=60))
def test_score_stays_in_unit_interval(events: list[tuple[bool, Offence, float]]) -> None:
    table = ReputationTable()
    now = 0.0
    for good, offence, dt in events:
        now += dt
        if good:
            table.reward("x", now=now)
        else:
            table.penalize("x", offence, now=now)
        assert 0.0 <= table.score("x", now=now) <= 1.0
        assert 0.0 <= table.weight("x", now=now) <= 1.0


@given(st.integers(0, 20), st.integers(1, 10))
def test_only_bad_evidence_blacklists(goods: int, bads: int) -> None:
    """A peer with no offence is never listed; enough offences with no merit always are."""
    table = ReputationTable()
    for _ in range(goods):
        table.reward("x", now=0)
    assert not table.is_blacklisted("x", now=0)
    for _ in range(bads + 3 * goods + 3):
        table.penalize("x", Offence.OUTVOTED, now=0)
    assert table.is_blacklisted("x", now=0)


def test_rate_limiter_drops_and_counts_past_burst_then_refills() -> None:
    limiter = RateLimiter(RateLimit(rate_per_s=1, burst=3))
    assert [limiter.allow("p", "task", now=0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.dropped["task"] == 2
    assert limiter.allow("p", "task", now=1.0)
    assert limiter.allow("q", "task", now=1.0), "buckets are per peer"


@given(st.lists(st.tuples(st.integers(0, 300), st.floats(0, 5)), max_size=200))
def test_rate_limiter_memory_is_bounded(calls: list[tuple[int, float]]) -> None:
    limiter = RateLimiter(RateLimit(max_peers=16))
    now = 0.0
    for peer, dt in calls:
        now += dt
        limiter.allow(f"p{peer}", "x", now=now)
    assert len(limiter) <= 16


@given(st.integers(0, 100), st.integers(0, 2**32))
def test_backoff_is_full_jitter_below_the_cap(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, random.Random(seed), base_s=0.1, cap_s=5.0)
    assert 0.0 <= delay <= min(5.0, 0.1 * 2**attempt)


def _chain(planner: str, answer: str, steps: list[tuple[str, str, str]], ok: bool = True) -> dict:
    return {"ok": ok, "planner": planner, "answer": answer,
            "trace": {"steps": [{"question": q, "answer": a, "executor": e, "ok": True} for q, a, e in steps]}}


def test_cross_vote_blames_the_minority_executor_and_planner() -> None:
    chains = [
        _chain("p1", "10", [("Compute 3*4.", "12", "e1"), ("Final?", "10", "e2")]),
        _chain("p2", "10", [("Compute 3*4.", "12", "e3"), ("Final?", "10", "e4")]),
        _chain("p3", "99", [("Compute 3*4.", "13", "bad"), ("Final?", "99", "bad2")]),
    ]
    verdicts = {(v.agent_id, v.role): v.agreed for v in cross_vote(chains, "10", "number")}
    assert verdicts[("p3", "plan")] is False and verdicts[("bad", "execute")] is False
    assert verdicts[("bad2", "execute")] is False
    assert all(verdicts[(a, r)] for a, r in [("p1", "plan"), ("e1", "execute"), ("e4", "execute")])


def test_cross_vote_judges_no_one_against_a_winner_without_a_majority() -> None:
    """Three honest chains, three answers (normal with small models): the weighted vote's pick is
    no evidence against the others; only sub-questions where a majority agrees still judge."""
    chains = [
        _chain("p1", "10", [("Compute 3*4.", "12", "e1"), ("Final?", "10", "e2")]),
        _chain("p2", "11", [("Compute 3*4.", "12", "e3"), ("Final?", "11", "e4")]),
        _chain("p3", "99", [("Compute 3*4.", "13", "e5"), ("Final?", "99", "e6")]),
    ]
    verdicts = {(v.agent_id, v.role): v.agreed for v in cross_vote(chains, "10", "number")}
    assert verdicts == {("e1", "execute"): True, ("e3", "execute"): True, ("e5", "execute"): False}


def test_cross_vote_needs_two_chains_and_tolerates_garbage_traces() -> None:
    assert cross_vote([_chain("p1", "1", [])], "1", "number") == []
    junk = [{"ok": True, "planner": "p1", "answer": "1", "trace": {"steps": [1, {"ok": True}, None]}},
            {"ok": True, "planner": "p2", "answer": "1", "trace": "nope"}]
    assert {v.agent_id for v in cross_vote(junk, "1", "number")} == {"p1", "p2"}
