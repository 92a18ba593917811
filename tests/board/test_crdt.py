"""The board's CRDT: merge laws (hypothesis), signed and owner-checked entries, claims, leases, artifacts, gaps."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphony.board import Artifact, Beat, Board, Claim, Gap, Subtask, TaskGraph, backoff_s, decode_entry, merged
from symphony.errors import BadSignature, ConfigError, MalformedMessage
from symphony.protocol import Identity

A, B, C = (Identity.generate() for _ in range(3))
GRAPH = TaskGraph((Subtask("s1"), Subtask("s2", depends_on=("s1",)), Subtask("s3", depends_on=("s1",))))
LEASE = 1000


def board() -> Board:
    return Board("task-1", GRAPH, stuck_ms=5000)


def claim(who: Identity, subtask: str, start: int, *, hedge: bool = False, attempt: int = 1) -> Claim:
    return Claim(board="task-1", subtask=subtask, claimant=who.agent_id, lease_start_ms=start, lease_ms=LEASE,
                 attempt=attempt, hedge=hedge).signed_by(who)


def beat(who: Identity, subtask: str, ts: int, *, released: bool = False) -> Beat:
    return Beat(board="task-1", subtask=subtask, agent=who.agent_id, ts_ms=ts, released=released).signed_by(who)


def artifact(who: Identity, subtask: str, ts: int, content: str = "x") -> Artifact:
    return Artifact(board="task-1", subtask=subtask, producer=who.agent_id,
                    digest=hashlib.sha256(content.encode()).hexdigest(), ts_ms=ts).signed_by(who)


def gap(who: Identity, subtask: str, blocks: str, ts: int, depends_on: tuple[str, ...] = ()) -> Gap:
    return Gap(board="task-1", subtask=subtask, poster=who.agent_id, need="regex", blocks=blocks,
               depends_on=list(depends_on), ts_ms=ts).signed_by(who)


# A pool of entries from which hypothesis draws replicas' states.
POOL = [claim(A, "s1", 0), claim(B, "s1", 5), beat(A, "s1", 400), beat(A, "s1", 900), beat(B, "s1", 300),
        artifact(A, "s1", 950), artifact(B, "s1", 800), artifact(C, "s1", 10), claim(C, "s2", 1000, hedge=True),
        gap(B, "g1", "s2", 20), gap(C, "g2", "g1", 30, ("s2",)), claim(A, "s3", 2000, attempt=2)]
subsets = st.lists(st.sampled_from(POOL), max_size=len(POOL))


def of(entries: list) -> Board:
    out = board()
    for e in entries:
        out.add(e)
    return out


@settings(max_examples=60, deadline=None)
@given(subsets, subsets, subsets)
def test_merge_is_commutative_associative_idempotent(x: list, y: list, z: list) -> None:
    """Any grouping and order of merges gives the same state, and merging twice changes nothing."""
    assert merged([of(x), of(y)]).state() == merged([of(y), of(x)]).state()
    assert merged([merged([of(x), of(y)]), of(z)]).state() == merged([of(x), merged([of(y), of(z)])]).state()
    twice = of(x)
    twice.merge(of(x))
    assert twice.state() == of(x).state()


@settings(max_examples=60, deadline=None)
@given(st.permutations(POOL))
def test_views_do_not_depend_on_arrival_order(order: list) -> None:
    """Holder, result, graph and conflicts are functions of the set of entries alone."""
    one, other = of(POOL), of(order)
    for now in (0, 500, 1500):
        assert [one.holder(s, now) for s in GRAPH.ids] == [other.holder(s, now) for s in GRAPH.ids]
    assert [one.result(s) for s in GRAPH.ids] == [other.result(s) for s in GRAPH.ids]
    assert one.current_graph() == other.current_graph()
    assert one.conflicts() == other.conflicts()


def test_entries_round_trip_signed_and_a_forged_author_fails() -> None:
    """An entry decodes from its bytes; one whose sig is another agent's fails with BadSignature."""
    c = claim(A, "s1", 0)
    assert decode_entry(c.to_bytes()) == c
    forged = c.model_copy(update={"claimant": B.agent_id})
    with pytest.raises(BadSignature):
        decode_entry(forged.to_bytes())
    with pytest.raises(MalformedMessage, match="kind"):
        decode_entry(b'{"kind": "vote"}')


def test_a_forged_entry_is_counted_not_merged() -> None:
    """add_checked drops a bad signature and counts it under the error's reason."""
    b = board()
    assert not b.add_checked(claim(A, "s1", 0).model_copy(update={"claimant": B.agent_id}))
    assert b.rejected["bad_signature"] == 1 and not b.entries


def test_an_entry_for_another_board_is_refused_and_counted() -> None:
    """Replaying a claim from another task's board changes nothing here."""
    other = Claim(board="task-2", subtask="s1", claimant=A.agent_id, lease_start_ms=0, lease_ms=LEASE).signed_by(A)
    b = board()
    assert not b.add(other)
    assert b.rejected["other_board"] == 1


def test_the_earliest_claim_wins_and_the_loser_overlap_is_measured() -> None:
    """Two claims on one sub-task: the lower (start, claimant) holds; it lasts until the loser's lease ends."""
    b = of([claim(B, "s1", 5), claim(A, "s1", 0), beat(B, "s1", 300), beat(A, "s1", 900)])
    assert b.holder("s1", 100).claimant == A.agent_id
    [conflict] = b.conflicts()
    assert (conflict.winner, conflict.loser, conflict.overlap_ms) == (A.agent_id, B.agent_id, 300 + LEASE - 5)


def test_an_expired_lease_frees_the_subtask_and_a_beat_extends_it() -> None:
    """Without heartbeats the claim ends after lease_ms; a heartbeat moves the end."""
    b = of([claim(A, "s1", 0)])
    assert b.holder("s1", LEASE - 1) is not None and b.holder("s1", LEASE) is None
    assert b.ready(LEASE) == ["s1"]
    b.add(beat(A, "s1", 800))
    assert b.holder("s1", LEASE + 500) is not None


def test_a_heartbeat_from_the_future_holds_no_lease() -> None:
    """A beat dated past now + MAX_SKEW_MS is ignored until now reaches it."""
    b = of([claim(A, "s1", 0), beat(A, "s1", 10_000_000)])
    assert b.holder("s1", LEASE) is None
    assert b.holder("s1", 10_000_000) is not None


def test_a_released_claim_ends_at_once_and_bounds_the_conflict() -> None:
    """The loser releases 50 ms after its claim: the conflict lasted 50 ms; a released holder frees the sub-task."""
    b = of([claim(A, "s1", 0), claim(B, "s1", 10), beat(B, "s1", 60, released=True)])
    [conflict] = b.conflicts()
    assert (conflict.loser, conflict.overlap_ms) == (B.agent_id, 50)
    b.add(beat(A, "s1", 100, released=True))
    assert b.holder("s1", 99) is not None and b.holder("s1", 100) is None


def test_the_first_claimant_artifact_wins_and_a_stranger_artifact_is_marked() -> None:
    """C posts first without claiming: kept, marked, not chosen; B's earlier artifact beats A's later one."""
    b = of([claim(A, "s1", 0), claim(B, "s1", 5), artifact(C, "s1", 10), artifact(A, "s1", 950),
            artifact(B, "s1", 800)])
    assert b.result("s1").producer == B.agent_id
    assert [a.producer for a in b.unclaimed_artifacts()] == [C.agent_id]
    assert b.done() == {"s1"}
    assert b.ready(0) == ["s2", "s3"]


def test_a_hedge_claim_never_holds_but_its_artifact_counts() -> None:
    """Hedged re-execution: the hedger does not displace the holder; its result may still win."""
    b = of([claim(A, "s1", 0), claim(C, "s1", 100, hedge=True)])
    assert b.holder("s1", 200).claimant == A.agent_id
    b.add(artifact(C, "s1", 300))
    assert b.result("s1").producer == C.agent_id
    assert b.conflicts() == []


def test_a_cyclic_plan_is_refused() -> None:
    """The waits-for check names the cycle."""
    with pytest.raises(ConfigError, match=r"cycle: a -> b -> a"):
        TaskGraph((Subtask("a", depends_on=("b",)), Subtask("b", depends_on=("a",))))


def test_a_gap_becomes_a_subtask_and_one_closing_a_cycle_is_refused() -> None:
    """g1 blocks s2 and is ready at once; g2 (depends on s2, blocks g1) would close a cycle: refused."""
    b = of([gap(B, "g1", "s2", 20), gap(C, "g2", "g1", 30, ("s2",))])
    graph = b.current_graph()
    assert "g1" in graph and graph["s2"].depends_on == ("s1", "g1")
    assert [g.subtask for g in b.refused_gaps()] == ["g2"]
    assert b.ready(0) == ["s1", "g1"]


def test_a_claim_held_too_long_without_result_is_stuck() -> None:
    """A claimant that keeps beating but never finishes shows up in stuck()."""
    b = of([claim(A, "s1", 0), *[beat(A, "s1", t) for t in (4000, 5500)]])
    assert b.stuck(4999) == [] and [c.claimant for c in b.stuck(5000)] == [A.agent_id]


def test_backoff_is_jittered_and_capped() -> None:
    """Full jitter: within [0, min(cap, base*2^n)], and two seeds differ."""
    draws = [backoff_s(3, random.Random(s)) for s in range(20)]
    assert all(0 <= d <= 0.4 for d in draws) and len(set(draws)) > 1
    assert backoff_s(30, random.Random(0)) <= 2.0


def test_a_gap_that_arrives_after_the_graph_was_read_changes_the_graph() -> None:
    """The gap-applied graph is cached per set of gaps: a new gap must still show (the cache is cleared)."""
    b = board()
    assert b.current_graph() is b.current_graph()  # computed once while no gap arrives
    b.add(claim(A, "s1", 0))
    assert b.current_graph().ids == ["s1", "s2", "s3"]
    b.add(gap(B, "g1", "s2", 20))
    assert b.current_graph().ids == ["s1", "s2", "s3", "g1"] and "g1" in b.current_graph()["s2"].depends_on
    b.add(gap(C, "g9", "nope", 30))
    assert [g.subtask for g in b.refused_gaps()] == ["g9"]
