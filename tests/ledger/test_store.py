"""The ledger's pure core: LWW merge laws, owner-only writes, liveness, GC, QUERY."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphony.errors import BadSignature, MalformedMessage, StaleMessage, TooLarge, WrongVersion
from symphony.ledger.store import Ledger, LedgerConfig, Merge, QueryFilter
from symphony.protocol.messages import Hardware, Heartbeat, LedgerRecord, encode_vector
from tests.conftest import identity

NOW = 1_700_000_000.0


def make_record(n: int, lamport: int, *, issued_at: float = NOW, **fields) -> LedgerRecord:
    ident = identity(n)
    record = LedgerRecord(agent_id=ident.agent_id, lamport=lamport, issued_at=int(issued_at * 1000), **fields)
    return record.signed_by(ident)


def heartbeat(n: int, ts: float, lamport: int = 1) -> Heartbeat:
    return Heartbeat(agent_id=identity(n).agent_id, lamport=lamport, ts=int(ts * 1000)).signed_by(identity(n))


def state(ledger: Ledger) -> dict[str, str]:
    return {a: r.sig for a, r in ledger.records.items()}


def merged(records, now: float = NOW) -> Ledger:
    ledger = Ledger()
    for r in records:
        ledger.merge(r, now=now)
    return ledger


# ---- merge laws (hypothesis) -------------------------------------------------------------

records_strategy = st.lists(
    st.builds(
        make_record,
        st.integers(0, 3),
        st.integers(0, 5),
        name=st.sampled_from(["a", "b", "c"]),
        tags=st.lists(st.sampled_from(["math", "code", "logic"]), max_size=2),
    ),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(records_strategy, st.randoms())
def test_merge_is_order_independent(records, rnd) -> None:
    """Any delivery order gives the same replica (commutativity + associativity)."""
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert state(merged(records)) == state(merged(shuffled))


@settings(max_examples=60, deadline=None)
@given(records_strategy)
def test_merge_is_idempotent(records) -> None:
    """Merging every record twice changes nothing."""
    assert state(merged(records + records)) == state(merged(records))


@settings(max_examples=40, deadline=None)
@given(records_strategy, records_strategy, records_strategy)
def test_state_merge_is_associative(a, b, c) -> None:
    """(A ⊔ B) ⊔ C == A ⊔ (B ⊔ C) for whole replicas."""
    left = merged(list(merged(list(merged(a).records.values()) + b).records.values()) + c)
    bc = merged(b + c)
    right = merged(a + list(bc.records.values()))
    assert state(left) == state(right)


@settings(max_examples=40, deadline=None)
@given(records_strategy)
def test_winner_has_the_highest_lamport(records) -> None:
    """For every agent the surviving record carries its highest lamport."""
    ledger = merged(records)
    for agent_id, record in ledger.records.items():
        assert record.lamport == max(r.lamport for r in records if r.agent_id == agent_id)


# ---- merge outcomes --------------------------------------------------------------------------


def test_newer_replaces_older_and_older_is_ignored() -> None:
    ledger = Ledger()
    assert ledger.merge(make_record(0, 1, name="old"), now=NOW) is Merge.ADDED
    assert ledger.merge(make_record(0, 2, name="new"), now=NOW) is Merge.UPDATED
    assert ledger.merge(make_record(0, 1, name="old"), now=NOW) is Merge.OLDER
    assert ledger.records[identity(0).agent_id].name == "new"


def test_duplicate_is_reported() -> None:
    ledger = Ledger()
    record = make_record(0, 1)
    ledger.merge(record, now=NOW)
    assert ledger.merge(record, now=NOW) is Merge.DUPLICATE


def test_equivocation_resolves_identically_everywhere() -> None:
    """Two different records with the same lamport: every replica keeps the same one."""
    x, y = make_record(0, 3, name="x"), make_record(0, 3, name="y")
    assert state(merged([x, y])) == state(merged([y, x]))


def test_merge_advances_the_lamport_clock() -> None:
    """Seeing lamport 41 makes our next own record use at least 42 (Lamport clocks)."""
    ledger = merged([make_record(1, 41)])
    assert ledger.issue(make_record(0, 0)).lamport == 42


# ---- owner-only and hostile records -------------------------------------------------------------


def test_record_signed_by_a_claiming_to_be_b_is_never_merged() -> None:
    """A forges B's record with its own key: rejected, counted, B's entry untouched."""
    forged = LedgerRecord(agent_id=identity(1).agent_id, lamport=99, issued_at=0)
    forged = forged.model_copy(update={"sig": make_record(0, 99).sig})
    ledger = merged([make_record(1, 1)])
    outcome = ledger.merge_wire(forged.model_dump(mode="json"), now=NOW)
    assert isinstance(outcome, BadSignature)
    assert ledger.records[identity(1).agent_id].lamport == 1
    assert ledger.rejected["bad_signature"] == 1


def test_tampered_relayed_record_is_rejected() -> None:
    """A relay that edits a signed record (e.g. bumps its lamport) is caught."""
    data = make_record(0, 1).model_dump(mode="json")
    data["lamport"] = 50
    ledger = Ledger()
    assert isinstance(ledger.merge_wire(data, now=NOW), BadSignature)
    assert not ledger.records


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d.update(v=2), WrongVersion),
        (lambda d: d.update(lamport=-1), MalformedMessage),
        (lambda d: d.update(tags=["t"] * 100), MalformedMessage),
        (lambda d: d.update(capability="%%%"), MalformedMessage),
        (lambda d: d.update(reputation={identity(1).agent_id: 7.0}), MalformedMessage),
        (lambda d: d.update(unexpected="field"), MalformedMessage),
        (lambda d: d.update(agent_id="not-a-peer-id"), MalformedMessage),
    ],
)
def test_malformed_records_are_rejected_and_counted(mutate, error) -> None:
    data = make_record(0, 1).model_dump(mode="json")
    mutate(data)
    ledger = Ledger()
    assert isinstance(ledger.merge_wire(data, now=NOW), error)
    assert sum(ledger.rejected.values()) == 1 and not ledger.records


def test_oversized_record_bytes_are_rejected() -> None:
    with pytest.raises(TooLarge):
        LedgerRecord.parse(json.dumps({"pad": "x" * 20_000}).encode())


# ---- liveness ---------------------------------------------------------------------------------


def test_heartbeats_keep_a_record_available_until_ttl() -> None:
    cfg = LedgerConfig(heartbeat_interval_s=1.0, ttl_heartbeats=3)
    ledger = Ledger(cfg)
    ledger.merge(make_record(0, 1, issued_at=NOW - 100), now=NOW)
    agent = identity(0).agent_id
    assert not ledger.is_available(agent, now=NOW), "an old record is no sign of life"
    ledger.observe_heartbeat(heartbeat(0, NOW), now=NOW)
    assert ledger.is_available(agent, now=NOW + 2.9)
    assert not ledger.is_available(agent, now=NOW + 3.1)


def test_replayed_heartbeat_cannot_revive_a_node() -> None:
    ledger = merged([make_record(0, 1)])
    hb = heartbeat(0, NOW)
    ledger.observe_heartbeat(hb, now=NOW)
    with pytest.raises(StaleMessage):
        ledger.observe_heartbeat(hb, now=NOW + 1)


def test_heartbeat_from_a_skewed_clock_is_rejected() -> None:
    with pytest.raises(StaleMessage):
        Ledger().observe_heartbeat(heartbeat(0, NOW + 120), now=NOW)


def test_heartbeat_with_newer_lamport_asks_for_a_pull() -> None:
    ledger = merged([make_record(0, 1)])
    assert ledger.observe_heartbeat(heartbeat(0, NOW, lamport=2), now=NOW) is True
    assert ledger.observe_heartbeat(heartbeat(0, NOW + 1, lamport=1), now=NOW + 1) is False


def test_leaving_record_is_unavailable_at_once() -> None:
    ledger = merged([make_record(0, 1, availability="leaving")])
    ledger.observe_heartbeat(heartbeat(0, NOW), now=NOW)
    assert not ledger.is_available(identity(0).agent_id, now=NOW)


# ---- garbage collection -----------------------------------------------------------------------


def test_gc_drops_silent_records_and_tombstones_block_resurrection() -> None:
    cfg = LedgerConfig(heartbeat_interval_s=1, gc_after_s=60)
    ledger = Ledger(cfg)
    old = make_record(0, 4)
    ledger.merge(old, now=NOW)
    assert ledger.collect_garbage(now=NOW + 30) == []
    assert ledger.collect_garbage(now=NOW + 61) == [identity(0).agent_id]
    assert ledger.merge(old, now=NOW + 62) is Merge.OLDER, "anti-entropy must not resurrect it"
    assert ledger.diff({identity(0).agent_id: 4}) == ([], [])
    assert ledger.merge(make_record(0, 5), now=NOW + 63) is Merge.ADDED


def test_gc_keeps_protected_agents() -> None:
    ledger = Ledger(LedgerConfig(gc_after_s=1))
    ledger.merge(make_record(0, 1), now=NOW)
    assert ledger.collect_garbage(now=NOW + 10, keep=[identity(0).agent_id]) == []


# ---- anti-entropy -------------------------------------------------------------------------------


def test_diff_exchange_converges_two_replicas() -> None:
    a = merged([make_record(0, 2), make_record(1, 1)])
    b = merged([make_record(0, 1), make_record(2, 1)])
    assert a.digest_hash() != b.digest_hash()
    b_lacks, a_wants = a.diff(b.digest())
    for r in b_lacks:
        b.merge(r, now=NOW)
    for agent_id in a_wants:
        a.merge(b.records[agent_id], now=NOW)
    assert state(a) == state(b) and a.digest_hash() == b.digest_hash()


# ---- QUERY ----------------------------------------------------------------------------------------


def _query_ledger() -> Ledger:
    ledger = merged([
        make_record(0, 1, tags=["math"], capability=encode_vector([1.0, 0.0]), hardware=Hardware(memory_gb=8)),
        make_record(1, 1, tags=["code"], capability=encode_vector([0.0, 1.0]), hardware=Hardware(memory_gb=2)),
        make_record(2, 1, tags=["math", "logic"], capability=encode_vector([0.7, 0.7]),
                    hardware=Hardware(memory_gb=16, accelerator="cuda")),
    ])
    for n in range(3):
        ledger.observe_heartbeat(heartbeat(n, NOW), now=NOW)
    return ledger


def test_query_ranks_by_cosine_and_cuts_to_top_l() -> None:
    rows = _query_ledger().query(requirement=[1.0, 0.0], limit=2, now=NOW)
    assert [r.agent_id for r, _ in rows] == [identity(0).agent_id, identity(2).agent_id]
    assert rows[0][1] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (QueryFilter(tags_any=frozenset({"logic"})), {2}),
        (QueryFilter(min_memory_gb=4), {0, 2}),
        (QueryFilter(accelerator="cuda"), {2}),
        (QueryFilter(exclude=frozenset({identity(0).agent_id})), {1, 2}),
        (QueryFilter(min_reputation=0.9), set()),
    ],
)
def test_query_filters(flt: QueryFilter, expected: set[int]) -> None:
    rows = _query_ledger().query(flt, now=NOW)
    assert {r.agent_id for r, _ in rows} == {identity(n).agent_id for n in expected}


def test_query_skips_unavailable_unless_asked() -> None:
    ledger = _query_ledger()
    later = NOW + 1000
    assert ledger.query(now=later) == []
    assert len(ledger.query(QueryFilter(available_only=False), now=later)) == 3


def test_reputation_is_the_mean_of_what_others_published() -> None:
    target = identity(0).agent_id
    ledger = merged([
        make_record(0, 1, reputation={target: 1.0}),  # self-assessment is ignored
        make_record(1, 1, reputation={target: 0.2}),
        make_record(2, 1, reputation={target: 0.4}),
    ])
    assert ledger.reputation(target) == pytest.approx(0.3)
    assert ledger.reputation(identity(3).agent_id) == 0.5


def test_query_ties_are_broken_by_agent_id() -> None:
    ledger = merged([make_record(n, 1, capability=encode_vector([1.0])) for n in range(4)])
    for n in range(4):
        ledger.observe_heartbeat(heartbeat(n, NOW), now=NOW)
    ids = [r.agent_id for r, _ in ledger.query(requirement=[1.0], now=NOW)]
    assert ids == sorted(ids)


def test_dropped_connection_suspends_availability_until_heard_from() -> None:
    """A neighbour's lost connection makes it unavailable at once; a later heartbeat clears it."""
    ledger = merged([make_record(0, 1)])
    agent = identity(0).agent_id
    ledger.observe_heartbeat(heartbeat(0, NOW), now=NOW)
    ledger.suspect(agent, now=NOW + 1)
    assert not ledger.is_available(agent, now=NOW + 1)
    ledger.observe_heartbeat(heartbeat(0, NOW + 2), now=NOW + 2)
    assert ledger.is_available(agent, now=NOW + 2)


def test_reconnection_counts_as_a_sign_of_life() -> None:
    ledger = merged([make_record(0, 1, issued_at=NOW - 100)])
    agent = identity(0).agent_id
    ledger.observe_heartbeat(heartbeat(0, NOW), now=NOW)
    ledger.suspect(agent, now=NOW + 1)
    ledger.observe_contact(agent, now=NOW + 2)
    assert ledger.is_available(agent, now=NOW + 2)
