"""Gateway sharding math: balance, determinism, minimal movement when a gateway leaves."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphony.ledger.shard import SHARD_THRESHOLD, gateway, gateways, liveness_delta, shard_of, shards_for


def ids(n: int, salt: str = "") -> list[str]:
    """n distinct agent-ID-like strings (the hash only sees the text)."""
    return ["12D3KooW" + hashlib.sha256(f"{salt}{i}".encode()).hexdigest()[:44] for i in range(n)]


agent_sets = st.builds(ids, st.integers(min_value=1, max_value=400), st.text(max_size=4))


def test_small_networks_are_not_sharded_and_large_ones_get_sqrt_n_shards() -> None:
    assert shards_for(1) == shards_for(SHARD_THRESHOLD - 1) == 1
    assert shards_for(SHARD_THRESHOLD) == 16
    assert (shards_for(1000), shards_for(10_000), shards_for(10_001)) == (32, 100, 101)
    with pytest.raises(ValueError):
        shard_of("x", 0)


@given(agent_sets, st.integers(min_value=1, max_value=64))
def test_shard_is_deterministic_and_in_range(agents: list[str], shards: int) -> None:
    assert [shard_of(a, shards) for a in agents] == [shard_of(a, shards) for a in list(agents)]
    assert all(0 <= shard_of(a, shards) < shards for a in agents)


def test_shards_are_balanced() -> None:
    """10,000 agents in 100 shards: every shard holds 100 +- 40 (binomial sd ~10)."""
    sizes = [0] * 100
    for a in ids(10_000):
        sizes[shard_of(a, 100)] += 1
    assert 60 <= min(sizes) and max(sizes) <= 140


@given(agent_sets, st.integers(min_value=1, max_value=16), st.randoms(use_true_random=False))
@settings(max_examples=60)
def test_gateway_is_a_member_and_independent_of_order(agents: list[str], shards: int, rnd) -> None:
    shuffled = list(agents)
    rnd.shuffle(shuffled)
    table = gateways(shards, agents)
    assert table == gateways(shards, shuffled)
    for shard in range(shards):
        chosen = gateway(shard, shards, shuffled)
        assert chosen == table.get(shard)
        if chosen is not None:
            assert shard_of(chosen, shards) == shard


@given(agent_sets, st.integers(min_value=2, max_value=16))
@settings(max_examples=60)
def test_a_gateway_leaving_moves_only_its_own_shard_role(agents: list[str], shards: int) -> None:
    before = gateways(shards, agents)
    gone = before[min(before)]
    after = gateways(shards, [a for a in agents if a != gone])
    moved = {s for s in before if after.get(s) != before[s]}
    assert moved == {min(before)}  # only the failed gateway's shard changes hands
    if min(before) in after:  # to the runner-up of that shard
        rest = [a for a in agents if a != gone and shard_of(a, shards) == min(before)]
        assert after[min(before)] == gateway(min(before), shards, rest)


@given(agent_sets, st.integers(min_value=2, max_value=16))
@settings(max_examples=60)
def test_a_non_gateway_leaving_moves_nothing(agents: list[str], shards: int) -> None:
    before = gateways(shards, agents)
    others = [a for a in agents if a not in before.values()]
    if others:
        assert gateways(shards, [a for a in agents if a != others[0]]) == before


def test_liveness_delta() -> None:
    assert liveness_delta({"a", "b"}, {"b", "c"}) == (["c"], ["a"])
    assert liveness_delta(set(), set()) == ([], [])
