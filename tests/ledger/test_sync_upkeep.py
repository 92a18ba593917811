"""The pure decisions of anti-entropy (``ledger.sync``) and connection upkeep (``ledger.upkeep``)."""

from __future__ import annotations

from symphony.ledger.store import Ledger, LedgerConfig
from symphony.ledger.sync import answer, records_wanted
from symphony.ledger.upkeep import dial_candidates, probe_candidates
from symphony.protocol.messages import LedgerRecord, SyncRequest
from tests.conftest import identity

NOW = 1_700_000_000.0
ADDR = ["/memory/1"]


def record(n: int, lamport: int = 1, **fields) -> LedgerRecord:
    ident = identity(n)
    return LedgerRecord(agent_id=ident.agent_id, lamport=lamport, issued_at=int(NOW * 1000), **fields).signed_by(ident)


def ledger_of(*records: LedgerRecord, now: float = NOW) -> Ledger:
    ledger = Ledger(LedgerConfig(heartbeat_interval_s=1.0, ttl_heartbeats=3))
    for r in records:
        ledger.merge(r, now=now)
    return ledger


def agent(n: int) -> str:
    return identity(n).agent_id


# ---- anti-entropy -------------------------------------------------------------------------------


def test_step_one_says_whether_the_digest_hashes_agree() -> None:
    """Equal hashes (or none, a bare push) end the exchange; different ones ask for step two."""
    ledger = ledger_of(record(1))
    assert answer(ledger, SyncRequest(digest_hash=ledger.digest_hash()), limit=10).in_sync
    assert answer(ledger, SyncRequest(), limit=10).in_sync
    assert not answer(ledger, SyncRequest(digest_hash=ledger_of().digest_hash()), limit=10).in_sync


def test_step_two_sends_what_the_peer_lacks_up_to_the_limit_and_names_what_we_lack() -> None:
    ours = ledger_of(record(1), record(2), record(3, lamport=1))
    theirs = ledger_of(record(3, lamport=2), record(4))
    reply = answer(ours, SyncRequest(digest=theirs.digest()), limit=1)
    assert len(reply.records) == 1 and reply.records[0]["agent_id"] in {agent(1), agent(2)}
    assert sorted(reply.want) == sorted([agent(3), agent(4)])


def test_step_three_pushes_only_records_we_hold_up_to_the_limit() -> None:
    ledger = ledger_of(record(1), record(2))
    assert [r["agent_id"] for r in records_wanted(ledger, [agent(1), agent(9)], limit=5)] == [agent(1)]
    assert len(records_wanted(ledger, [agent(1), agent(2)], limit=1)) == 1


# ---- connection upkeep ---------------------------------------------------------------------------


def test_dial_candidates_are_available_unconnected_agents_with_an_address() -> None:
    ledger = ledger_of(record(0, addrs=ADDR), record(1, addrs=ADDR), record(2, addrs=ADDR), record(3),
                       record(4, addrs=ADDR))
    ledger.suspect(agent(4), now=NOW)
    assert dial_candidates(ledger, me=agent(0), connected={agent(2)}, now=NOW) == [agent(1)]


def test_probe_candidates_are_unavailable_agents_not_leaving() -> None:
    """After a partition heals only a probe crosses the old cut; an agent that said goodbye is not probed."""
    ledger = ledger_of(record(0, addrs=ADDR), record(1, addrs=ADDR), record(2, addrs=ADDR),
                       record(3, addrs=ADDR, availability="leaving"))
    for n in (1, 3):
        ledger.suspect(agent(n), now=NOW)
    assert probe_candidates(ledger, me=agent(0), connected=set(), now=NOW) == [agent(1)]
    assert probe_candidates(ledger, me=agent(0), connected={agent(1)}, now=NOW) == []
