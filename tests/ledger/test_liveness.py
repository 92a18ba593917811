"""The pure core of sharded liveness (``ledger.liveness``): the gateway's state and the replica's
decisions, driven directly with ``now`` and views, no network."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphony.errors import MalformedMessage
from symphony.ledger.liveness import (
    GatewayState,
    LivenessDelta,
    check_delta,
    check_member_heartbeat,
    may_withdraw,
    snapshot,
    vouched,
    withdrawn,
)
from symphony.ledger.shard import ShardLiveness, gateway, shard_of
from symphony.protocol.messages import Heartbeat
from tests.conftest import identity

SHARDS = 3
TTL = 3.0


def ids(n: int) -> list[str]:
    """n distinct agent-ID-like strings (the shard hash only sees the text)."""
    return ["12D3KooW" + hashlib.sha256(str(i).encode()).hexdigest()[:44] for i in range(n)]


def shard_members(shard: int, n: int) -> list[str]:
    """The first ``n`` IDs of ``ids`` that fall in ``shard``."""
    return [a for a in ids(200) if shard_of(a, SHARDS) == shard][:n]


ME, A, B, C = shard_members(0, 4)
OTHER = shard_members(1, 1)[0]


def state() -> GatewayState:
    return GatewayState(ME, shard=0, ttl_s=TTL)


# ---- the gateway --------------------------------------------------------------------------------


def test_a_new_gateway_affirms_itself_and_believes_everyone_up() -> None:
    """Taking the role, the gateway publishes only itself: every member may be believed up."""
    gw = state()
    assert gw.tick(now=0.0, members=[ME, A, B], fresh=[]) == LivenessDelta(shard=0, came=(ME,), went=())
    assert gw.believed_up == {ME, A, B}


def test_no_change_no_delta() -> None:
    """A tick that changes nobody's availability publishes nothing."""
    gw = state()
    gw.tick(now=0.0, members=[ME, A], fresh=[A])
    assert gw.tick(now=1.0, members=[ME, A], fresh=[A]) is None


def test_no_one_is_withdrawn_within_one_ttl_of_taking_the_role() -> None:
    """Silent members are withdrawn only once every live member had a TTL to find the new gateway."""
    gw = state()
    gw.tick(now=0.0, members=[ME, A, B], fresh=[])
    assert gw.tick(now=TTL - 0.001, members=[ME, A, B], fresh=[]) is None
    assert gw.tick(now=TTL, members=[ME, A, B], fresh=[A]) == LivenessDelta(shard=0, came=(), went=(B,))


def test_a_member_whose_heartbeat_returns_comes_back_up() -> None:
    """A withdrawn member with a fresh heartbeat is published up again."""
    gw = state()
    gw.tick(now=0.0, members=[ME, A], fresh=[])
    gw.tick(now=TTL, members=[ME, A], fresh=[])
    assert gw.tick(now=TTL + 1, members=[ME, A], fresh=[A]) == LivenessDelta(shard=0, came=(A,), went=())


def test_resigning_then_returning_starts_afresh() -> None:
    """A node that lost the role and regains it starts a new grace period from the members it sees."""
    gw = state()
    gw.tick(now=0.0, members=[ME, A], fresh=[])
    gw.tick(now=TTL, members=[ME, A], fresh=[])  # A withdrawn
    gw.resign()
    assert gw.since is None
    assert gw.tick(now=2 * TTL, members=[ME, A, B], fresh=[]) == LivenessDelta(shard=0, came=(ME,), went=())
    assert (gw.since, gw.believed_up) == (2 * TTL, {ME, A, B})


def test_a_delta_travels_with_the_gateway_reaffirmed() -> None:
    """``body`` lists the gateway among the ups, sorted, whether or not it came up just now."""
    body = LivenessDelta(shard=2, came=(B, A), went=(C,)).body(shards=SHARDS, gateway=ME)
    assert body == ShardLiveness(shard=2, shards=SHARDS, up=sorted({A, B, ME}), down=[C])


ticks = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0),  # time since the previous tick
        st.booleans(),  # whether this node is the gateway in its own view
        st.sets(st.sampled_from([A, B, C])),  # the members this replica holds (ME always)
        st.sets(st.sampled_from([A, B, C])),  # those with a fresh heartbeat
    ),
    max_size=30,
)


@settings(max_examples=300)
@given(ticks)
def test_replicas_applying_every_delta_believe_what_the_gateway_believes(steps) -> None:
    """Laws: applying each delta (up, then down) to the gateway's starting view tracks its ``believed_up``;
    no fresh member and never the gateway is withdrawn; no one is withdrawn within a TTL of taking the role."""
    gw, now, replica = state(), 0.0, set()
    for gap, is_gateway, held, fresh in steps:
        now += gap
        if not is_gateway:
            gw.resign()
            continue
        if gw.since is None:
            replica = set(held)  # what the new gateway assumes the network believes
        fresh &= held  # a replica knows heartbeats only of the members it holds
        delta = gw.tick(now=now, members=[ME, *sorted(held)], fresh=fresh)
        if delta is not None:
            replica = (replica | set(delta.came)) - set(delta.went)
            assert not set(delta.went) & (fresh | {ME})
            assert not delta.went or now - gw.since >= TTL
        assert replica == gw.believed_up


# ---- the replica --------------------------------------------------------------------------------


def test_a_replica_vouches_for_its_shards_ups_but_never_itself() -> None:
    delta = ShardLiveness(shard=0, shards=SHARDS, up=[ME, A, OTHER], down=[ME, B, OTHER])
    assert vouched(delta, me=ME) == [A]
    assert withdrawn(delta, me=ME) == [B]


def test_only_the_gateway_in_our_view_may_withdraw() -> None:
    """A member other than the shard's gateway over our available view may not withdraw anyone."""
    available = [ME, A, B, C]
    gw = gateway(0, SHARDS, available)
    liar = next(a for a in available if a != gw)
    victim = next(a for a in available if a not in (gw, liar))
    assert may_withdraw(ShardLiveness(shard=0, shards=SHARDS, down=[victim]), source=gw, available=available)
    assert not may_withdraw(ShardLiveness(shard=0, shards=SHARDS, down=[victim]), source=liar, available=available)
    assert may_withdraw(ShardLiveness(shard=0, shards=SHARDS, up=[liar]), source=liar, available=available)


def test_the_heir_of_a_failed_gateway_may_withdraw_it() -> None:
    """The gateway is judged over our view less the withdrawn: the runner-up may withdraw its predecessor."""
    available = [ME, A, B, C]
    gw = gateway(0, SHARDS, available)
    heir = gateway(0, SHARDS, [a for a in available if a != gw])
    assert may_withdraw(ShardLiveness(shard=0, shards=SHARDS, down=[gw]), source=heir, available=available)


def test_a_delta_must_come_from_a_member_of_its_shard_in_our_network() -> None:
    check_delta(ShardLiveness(shard=0, shards=SHARDS), source=A, shards=SHARDS)
    for delta, source in ((ShardLiveness(shard=0, shards=SHARDS), OTHER), (ShardLiveness(shard=0, shards=4), A)):
        with pytest.raises(MalformedMessage, match=r"^shard liveness from an agent outside that shard$"):
            check_delta(delta, source=source, shards=SHARDS)


def test_a_gateway_takes_heartbeats_only_from_their_authors_in_its_shard() -> None:
    member, outsider, gw = identity(1), identity(2), identity(3)
    shards = 1  # one shard: only the author check can fail
    own = Heartbeat(agent_id=member.agent_id, lamport=1, ts=1).signed_by(member)
    check_member_heartbeat(own, peer=member.agent_id, me=gw.agent_id, shards=shards)
    with pytest.raises(MalformedMessage, match=r"^a heartbeat must come from its author"):
        check_member_heartbeat(own, peer=outsider.agent_id, me=gw.agent_id, shards=shards)
    with pytest.raises(MalformedMessage, match=r"^a heartbeat must come from its author"):
        check_member_heartbeat(own, peer=member.agent_id, me=gw.agent_id,
                               shards=next(s for s in range(2, 50)
                                           if shard_of(member.agent_id, s) != shard_of(gw.agent_id, s)))


def test_a_snapshot_lists_who_is_up_sorted() -> None:
    assert snapshot([C, A, B], shards=SHARDS) == ShardLiveness(shard=0, shards=SHARDS, up=sorted([A, B, C]))
