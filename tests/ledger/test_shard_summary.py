"""Shard summaries: the score bound is sound (hypothesis), and SummaryBook counts every rejection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphony.ledger.shard import (
    SummaryBook,
    gateway_weight,
    issue_summary,
    keeps_shard,
    shard_of,
    summarize,
    summary_bound,
)
from symphony.ledger.store import Ledger, Merge, unit_cosine, unit_vector
from symphony.protocol.messages import LedgerRecord, decode_vector, encode_vector
from symphony.protocol.sharding import ShardSummary
from tests.conftest import identity

SHARDS = 2
NOW = 1_700_000_000.0

finite = st.floats(min_value=-4.0, max_value=4.0, allow_nan=False, allow_subnormal=False)


def vectors(dims: int) -> st.SearchStrategy[list[float]]:
    return st.lists(finite, min_size=dims, max_size=dims)


@st.composite
def shard_and_requirement(draw: st.DrawFn) -> tuple[list[list[float]], list[float], int]:
    dims = draw(st.integers(min_value=1, max_value=24))
    members = draw(st.lists(vectors(dims), min_size=1, max_size=30))
    return members, draw(vectors(dims)), draw(st.integers(min_value=1, max_value=8))


def as_published(vector: list[float]) -> list[float]:
    """What a record carries: the float16 round trip."""
    return decode_vector(encode_vector(vector))


def unsigned_summary(members: list[list[float]], cones: int) -> ShardSummary:
    return ShardSummary(
        shard=0, shards=SHARDS, gateway="g", members=len(members), cones=summarize(members, cones=cones), issued_at=0
    )


@settings(max_examples=300, deadline=None)
@given(shard_and_requirement())
def test_bound_is_at_least_every_members_true_score(case: tuple[list[list[float]], list[float], int]) -> None:
    """summary_bound >= phi(c_j, r) for every member j, whatever the vectors and the cone count."""
    raw, requirement, cones = case
    members = [as_published(v) for v in raw]
    bound = summary_bound(unsigned_summary(members, cones), requirement)
    unit_r = unit_vector(requirement)
    for vector in members:
        assert bound >= unit_cosine(unit_vector(vector), unit_r) - 1e-12


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=8),
)
def test_bound_is_sound_in_the_real_224_dims(seed: int, count: int, cones: int) -> None:
    """The same law in the capability space's 224 dims (where float16 rounding matters most), on
    clustered members around a few random centres and a non-negative requirement."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 224))
    members = [as_published(list(centres[i % 3] + rng.normal(scale=0.2, size=224))) for i in range(count)]
    requirement = list(np.abs(rng.normal(size=224)) * (rng.uniform(size=224) < 0.2))
    bound = summary_bound(unsigned_summary(members, cones), requirement)
    assert all(bound >= unit_cosine(unit_vector(v), unit_vector(requirement)) - 1e-12 for v in members)


def test_bound_separates_a_far_shard() -> None:
    """Members all pointing away from r give a bound well below 1 (the bound is not trivial)."""
    rng = np.random.default_rng(0)
    members = [as_published([1.0, *rng.uniform(0, 0.1, 7)]) for _ in range(20)]
    assert summary_bound(unsigned_summary(members, 2), [0.0, 1.0, 0, 0, 0, 0, 0, 0]) < 0.3


def test_zero_vector_members_keep_the_bound_at_least_zero() -> None:
    """A member with a zero vector scores 0, so the bound never falls below 0 for it."""
    s = unsigned_summary([[0.0, 0.0], [1.0, 0.0]], 1)
    assert s.members == 2 and sum(c.members for c in s.cones) == 1
    assert summary_bound(s, [-1.0, 0.0]) >= 0.0


def member(shard: int, skip: int = 0) -> int:
    return [n for n in range(200) if shard_of(identity(n).agent_id, SHARDS) == shard][skip]


def records() -> list[LedgerRecord]:
    return [
        LedgerRecord(
            agent_id=identity(n).agent_id,
            lamport=1,
            capability=encode_vector([1.0, n / 10, 0.2]),
            addrs=[f"/memory/{n}/p2p/{identity(n).agent_id}"],
            issued_at=0,
        ).signed_by(identity(n))
        for n in range(16)
    ]


def issued(n: int, *, at: float = NOW, shard: int = 0) -> ShardSummary:
    return issue_summary(identity(n), records(), shard=shard, shards=SHARDS, now_ms=int(at * 1000))


def test_issue_summary_refuses_a_non_member() -> None:
    """Only a member of the shard may summarize it."""
    with pytest.raises(ValueError, match="not a member"):
        issued(member(1), shard=0)


def test_summary_names_standbys_by_rendezvous_weight() -> None:
    """Standbys are the shard's next members by rendezvous weight, with their addresses."""
    ids = [identity(n).agent_id for n in range(16) if shard_of(identity(n).agent_id, SHARDS) == 0]
    top = sorted(ids, key=lambda a: gateway_weight(0, a), reverse=True)
    s = issue_summary(
        identity(next(n for n in range(16) if identity(n).agent_id == top[0])),
        records(),
        shard=0,
        shards=SHARDS,
        now_ms=0,
    )
    assert [c.agent_id for c in s.standby] == top[1:3] and all(c.addrs for c in s.standby)


def test_book_keeps_a_valid_summary() -> None:
    """A fresh summary from a member of its shard is held and counted in the node's state."""
    book = SummaryBook(shards=SHARDS)
    assert isinstance(book.offer(issued(member(0)).to_bytes(), now=NOW), ShardSummary)
    assert [s.shard for s in book.fresh(now=NOW)] == [0] and book.nbytes() > 0 and not book.rejected


def test_node_that_just_joined_accepts_a_five_minute_old_summary() -> None:
    """The window is generous: a summary re-issued every few minutes is still accepted on join."""
    book = SummaryBook(shards=SHARDS)
    assert isinstance(book.offer(issued(member(0), at=NOW - 300).to_bytes(), now=NOW), ShardSummary)


@pytest.mark.parametrize(("age_s", "reason"), [(601.0, "stale"), (-31.0, "stale")])
def test_too_old_or_future_summary_is_rejected(age_s: float, reason: str) -> None:
    """Older than max_age (10 min) or too far in the future: rejected and counted as stale."""
    book = SummaryBook(shards=SHARDS)
    book.offer(issued(member(0), at=NOW - age_s).to_bytes(), now=NOW)
    assert book.rejected == {reason: 1} and not book.summaries


def test_bad_signature_oversized_and_wrong_shard_count_are_counted() -> None:
    """Tampered bytes, oversized bytes and another network's shard count are each counted."""
    book = SummaryBook(shards=SHARDS)
    data = json.loads(issued(member(0)).to_bytes())
    data["issued_at"] += 1
    book.offer(json.dumps(data).encode(), now=NOW)
    book.offer(b"x" * 20_000, now=NOW)
    other = SummaryBook(shards=3)
    other.offer(issued(member(0)).to_bytes(), now=NOW)
    assert book.rejected == {"bad_signature": 1, "too_large": 1} and other.rejected == {"wrong_shards": 1}


def test_summary_from_another_shards_member_is_not_the_gateways() -> None:
    """A node of shard 1 cannot publish shard 0's summary."""
    s = ShardSummary.model_validate(
        json.loads(issued(member(0)).to_bytes()) | {"gateway": identity(member(1)).agent_id, "sig": ""}
    ).signed_by(identity(member(1)))
    book = SummaryBook(shards=SHARDS)
    book.offer(s.to_bytes(), now=NOW)
    assert book.rejected == {"not_gateway": 1}


def test_replayed_and_older_summaries_are_rejected() -> None:
    """The same summary twice is a replay; an older one from the same gateway is stale."""
    book = SummaryBook(shards=SHARDS)
    book.offer(issued(member(0)).to_bytes(), now=NOW)
    book.offer(issued(member(0)).to_bytes(), now=NOW)
    book.offer(issued(member(0), at=NOW - 10).to_bytes(), now=NOW)
    assert book.rejected == {"replayed": 1, "stale": 1}


def test_lower_weight_member_takes_over_only_after_the_gateway_went_quiet() -> None:
    """While the gateway's summary is fresh a lower-weight member is refused; after takeover_s it wins."""
    a, b = member(0), member(0, skip=1)
    high, low = sorted((a, b), key=lambda n: gateway_weight(0, identity(n).agent_id), reverse=True)
    book = SummaryBook(shards=SHARDS, takeover_s=300)
    book.offer(issued(high).to_bytes(), now=NOW)
    book.offer(issued(low, at=NOW + 60).to_bytes(), now=NOW + 60)
    assert book.rejected == {"not_gateway": 1}
    assert isinstance(book.offer(issued(low, at=NOW + 400).to_bytes(), now=NOW + 400), ShardSummary)
    assert book.summaries[0].gateway == identity(low).agent_id


def test_sharded_ledger_keeps_only_its_shard() -> None:
    """Ledger(keeps=...) stores its shard's records, counts the others, and never pulls them."""
    ledger = Ledger(keeps=keeps_shard(0, SHARDS))
    outcomes = [ledger.merge(r, now=NOW) for r in records()]
    ours = [r for r in records() if shard_of(r.agent_id, SHARDS) == 0]
    assert set(ledger.records) == {r.agent_id for r in ours}
    assert ledger.foreign == outcomes.count(Merge.FOREIGN) == 16 - len(ours)
    _, want = ledger.diff({r.agent_id: 5 for r in records()})
    assert set(want) == {r.agent_id for r in ours}
