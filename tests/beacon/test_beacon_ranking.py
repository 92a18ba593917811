import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.beacon import BeaconRound, Candidate, CosineStrategy, RandomStrategy, Selection, select
from symphony.beacon.ranking import LOAD_WEIGHT, load_discount, merge_by_rank, rank_key

candidates = st.lists(
    st.builds(
        Candidate,
        agent_id=st.sampled_from("abcdefgh"),
        score=st.sampled_from([-0.5, 0.0, 0.3, 0.9, 1.0]),
        queue_length=st.integers(0, 3),
        expected_latency_ms=st.sampled_from([0.0, 10.0, 250.5]),
    ),
    max_size=12,
)


def _ids(cs: tuple[Candidate, ...]) -> list[str]:
    return [c.agent_id for c in cs]


def test_highest_score_comes_first() -> None:
    """The paper's rule: the best match score is the primary."""
    sel = select([Candidate("a", 0.2), Candidate("b", 0.9), Candidate("c", 0.5)])
    assert _ids(sel.primaries) == ["b"] and _ids(sel.backups) == ["c", "a"]


def test_equal_scores_prefer_the_shorter_queue() -> None:
    """On a score tie the less loaded agent wins."""
    sel = select([Candidate("a", 0.8, queue_length=3), Candidate("b", 0.8, queue_length=1)])
    assert _ids(sel.ordered) == ["b", "a"]


def test_equal_score_and_queue_prefer_lower_latency() -> None:
    """On a score and queue tie the faster agent wins."""
    sel = select([Candidate("a", 0.8, 1, 900.0), Candidate("b", 0.8, 1, 100.0)])
    assert _ids(sel.ordered) == ["b", "a"]


def test_full_ties_break_by_agent_id() -> None:
    """Identical replies are ordered by agent id, so every node agrees."""
    sel = select([Candidate("z", 0.8), Candidate("m", 0.8), Candidate("a", 0.8)])
    assert _ids(sel.ordered) == ["a", "m", "z"]


@given(candidates, st.randoms(use_true_random=False), st.sampled_from([1, 2]))
def test_selection_ignores_reply_arrival_order(cs: list[Candidate], rnd: random.Random, m: int) -> None:
    """Any permutation of the same replies gives the same selection."""
    shuffled = list(cs)
    rnd.shuffle(shuffled)
    assert select(shuffled, m=m) == select(cs, m=m)


def test_redundancy_two_gives_two_primaries() -> None:
    """m = 2 runs the two best; the rest stay ordered backups."""
    sel = select([Candidate(x, s) for x, s in [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", 0.7)]], m=2)
    assert _ids(sel.primaries) == ["b", "d"] and _ids(sel.backups) == ["c", "a"]


def test_m_outside_one_or_two_is_rejected() -> None:
    """Only single or double execution is supported."""
    with pytest.raises(ValueError, match=r"^m must be 1 or 2, not 3$"):
        select([Candidate("a", 0.5)], m=3)


def test_a_repeated_agent_keeps_its_best_reply() -> None:
    """An agent listed twice appears once, with its better-ranked entry."""
    sel = select([Candidate("a", 0.2), Candidate("b", 0.5), Candidate("a", 0.9)])
    assert sel.ordered == (Candidate("a", 0.9), Candidate("b", 0.5))


def test_excluded_agents_are_not_selected() -> None:
    """Blacklisted or already-tried agents are skipped."""
    sel = select([Candidate("a", 0.9), Candidate("b", 0.5)], exclude={"a"})
    assert _ids(sel.ordered) == ["b"]


def test_no_replies_give_an_empty_selection() -> None:
    """Nobody answered: no primaries, no backups."""
    assert select([]) == Selection((), ())


def test_cosine_strategy_is_the_default() -> None:
    """Passing CosineStrategy explicitly changes nothing."""
    cs = [Candidate("a", 0.2), Candidate("b", 0.9)]
    assert select(cs, strategy=CosineStrategy()) == select(cs)


def test_nan_score_is_rejected() -> None:
    """A non-finite score cannot be ranked."""
    with pytest.raises(ValueError, match=r"^score must be finite, not nan$"):
        Candidate("a", float("nan"))


# ---- random (ablation) ----------------------------------------------------------------------


def test_random_strategy_is_reproducible_from_its_seed() -> None:
    """The same seed gives the same order, whatever the reply order."""
    cs = [Candidate(x, 0.1 * i) for i, x in enumerate("abcdef")]
    first = select(cs, strategy=RandomStrategy(random.Random(4)))
    assert select(cs[::-1], strategy=RandomStrategy(random.Random(4))) == first


def test_random_strategy_ignores_scores() -> None:
    """Across seeds, the low-score agents get picked too."""
    cs = [Candidate(x, 0.1 * i) for i, x in enumerate("abcdef")]
    picks = {select(cs, strategy=RandomStrategy(random.Random(seed))).primaries[0].agent_id for seed in range(40)}
    assert len(picks) >= 4


# ---- beacon round (deadline) ----------------------------------------------------------------


def test_reply_after_the_deadline_is_dropped() -> None:
    """A late reply is not offered for selection."""
    rnd = BeaconRound(invited={"a", "b"}, deadline=100.0)
    assert rnd.offer(Candidate("a", 0.9), now=100.5) is False
    assert rnd.replies == ()


def test_uninvited_reply_is_dropped() -> None:
    """Only agents the beacon went to may answer it."""
    rnd = BeaconRound(invited={"a"}, deadline=100.0)
    assert rnd.offer(Candidate("x", 0.9), now=1.0) is False


def test_second_reply_from_an_agent_is_dropped() -> None:
    """The first reply counts; a later one cannot raise the score."""
    rnd = BeaconRound(invited={"a"}, deadline=100.0)
    rnd.offer(Candidate("a", 0.1), now=1.0)
    assert rnd.offer(Candidate("a", 0.9), now=2.0) is False
    assert rnd.replies == (Candidate("a", 0.1),)


def test_round_is_complete_when_everyone_replied() -> None:
    """No need to wait for the deadline once all invited agents answered."""
    rnd = BeaconRound(invited={"a", "b"}, deadline=100.0)
    rnd.offer(Candidate("a", 0.3), now=1.0)
    assert not rnd.is_complete(now=2.0)
    rnd.offer(Candidate("b", 0.4), now=3.0)
    assert rnd.is_complete(now=3.0)


def test_round_is_complete_after_the_deadline() -> None:
    """Past the deadline the round closes with whatever arrived."""
    rnd = BeaconRound(invited={"a", "b"}, deadline=100.0)
    rnd.offer(Candidate("a", 0.3), now=1.0)
    assert rnd.is_complete(now=100.1) and _ids(rnd.select().ordered) == ["a"]


def test_merge_by_rank_takes_every_requirements_best_first() -> None:
    """Round-robin over the rankings: each requirement's best, then the second bests; an agent once; at most cap."""
    ranked = [["a", "b", "c"], ["d", "a", "e"], ["a", "f"]]
    assert merge_by_rank(ranked, 10, key=str) == ["a", "d", "b", "f", "c", "e"]
    assert merge_by_rank(ranked, 3, key=str) == ["a", "d", "b"]
    assert merge_by_rank([], 3, key=str) == []


@given(st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=6, unique=True), max_size=4), st.integers(0, 10))
def test_merge_by_rank_keeps_each_requirements_top_share(ranked: list[list[str]], cap: int) -> None:
    """No duplicates, never more than cap, and every requirement's first cap // len(ranked) agents are in."""
    merged = merge_by_rank(ranked, cap, key=str)
    assert len(merged) == len(set(merged)) <= cap
    assert set(merged) <= {a for rows in ranked for a in rows}
    for rows in ranked:
        assert set(rows[: cap // len(ranked)]) <= set(merged)


# ---- load-aware ranking (issue 19: concurrent chains spread instead of queueing at one executor) ----

idle = st.lists(
    st.builds(Candidate, agent_id=st.sampled_from("abcdefgh"), score=st.floats(-1, 1),
              expected_latency_ms=st.sampled_from([0.0, 10.0, 250.5])),
    max_size=12,
)


@given(idle, st.sampled_from([1, 2]))
def test_an_idle_network_ranks_exactly_by_the_papers_rule(cs: list[Candidate], m: int) -> None:
    """With every queue empty the load discount is 0: the order is score, latency, agent id as before."""
    best: dict[str, Candidate] = {}
    for c in sorted(cs, key=rank_key):
        best.setdefault(c.agent_id, c)
    assert select(cs, m=m).ordered == tuple(sorted(best.values(), key=rank_key))


@given(st.floats(-1, 1), st.integers(0, 50), st.integers(0, 50))
def test_a_longer_queue_never_ranks_higher(score: float, q1: int, q2: int) -> None:
    """The discount grows with the queue and stays below LOAD_WEIGHT."""
    low, high = sorted((q1, q2))
    assert 0 <= load_discount(low) <= load_discount(high) < LOAD_WEIGHT
    rival = Candidate("b", score - load_discount(low))
    if low != high:
        assert _ids(select([Candidate("a", score, queue_length=high), rival]).ordered)[0] == "b"


def test_a_busy_best_match_yields_to_a_nearly_as_good_idle_agent() -> None:
    """Four calls queued at the best (0.80) cost it 0.25: the idle 0.75 goes first."""
    sel = select([Candidate("a", 0.80, queue_length=4), Candidate("b", 0.75)])
    assert _ids(sel.ordered) == ["b", "a"]


def test_a_busy_expert_still_beats_an_idle_poor_match() -> None:
    """Load spreads work among fit agents; it does not hand it to one that does not fit."""
    sel = select([Candidate("a", 0.9, queue_length=20), Candidate("b", 0.3)])
    assert _ids(sel.ordered) == ["a", "b"]


def test_concurrent_chains_spread_over_the_fit_agents() -> None:
    """Nine chains ranking one after another, each pick queueing at its executor (as the replies
    report): the picks spread over the three good agents, none goes to the poor one."""
    scores = {"a": 0.82, "b": 0.80, "c": 0.78, "d": 0.2}
    queue = dict.fromkeys(scores, 0)
    for _ in range(9):
        first = select([Candidate(x, s, queue_length=queue[x]) for x, s in scores.items()]).primaries[0]
        queue[first.agent_id] += 1
    assert queue == {"a": 3, "b": 3, "c": 3, "d": 0}
