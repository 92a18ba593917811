"""Shared reputation: accusations published in ledger records, absorbed with care."""

from __future__ import annotations

import pytest

from symphony.errors import BadSignature, StaleMessage, WrongVersion
from symphony.ledger.reputation import Offence
from symphony.node.defences import Defences
from symphony.protocol.messages import LedgerRecord
from symphony.transport.base import TransportOffence
from tests.conftest import identity

ME, BAD, HONEST = identity(0).agent_id, identity(1).agent_id, identity(2).agent_id


def record(n: int, reputation: dict[str, float]) -> LedgerRecord:
    return LedgerRecord(agent_id=identity(n).agent_id, lamport=1, issued_at=0, reputation=reputation)


def test_three_independent_accusations_blacklist() -> None:
    defences = Defences(clock=lambda: 0.0)
    defences.absorb([record(3, {BAD: 0.0}), record(4, {BAD: 0.0})], me=ME)
    assert not defences.reputation.is_blacklisted(BAD, now=0)
    defences.absorb([record(5, {BAD: 0.0})], me=ME)
    assert defences.reputation.is_blacklisted(BAD, now=0)


def test_the_same_accusation_counts_once_and_only_its_growth_later() -> None:
    defences = Defences(clock=lambda: 0.0)
    for _ in range(5):
        defences.absorb([record(3, {BAD: 0.3})], me=ME)
    standing = defences.reputation.standing(BAD)
    assert standing is not None and standing.offences[Offence.ACCUSED.value] == 1
    defences.absorb([record(3, {BAD: 0.0})], me=ME)
    assert standing.bad == 1.0 and standing.offences[Offence.ACCUSED.value] == 2


def test_distrusted_accusers_and_accusations_of_ourselves_are_ignored() -> None:
    defences = Defences(clock=lambda: 0.0)
    defences.penalize(identity(3).agent_id, Offence.INVALID)
    defences.absorb([record(3, {HONEST: 0.0}), record(4, {ME: 0.0})], me=ME)
    assert HONEST not in defences.reputation and ME not in defences.reputation


def test_merits_outweigh_a_few_slanderers() -> None:
    defences = Defences(clock=lambda: 0.0)
    for _ in range(5):
        defences.reputation.reward(HONEST, now=0)
    defences.absorb([record(n, {HONEST: 0.0}) for n in range(3, 7)], me=ME)
    assert not defences.reputation.is_blacklisted(HONEST, now=0)


def test_we_publish_suspects_worst_first_and_capped() -> None:
    defences = Defences(clock=lambda: 0.0)
    defences.penalize(BAD, Offence.INVALID)
    defences.penalize(HONEST, Offence.OUTVOTED)
    assert defences.accusations(now=0) == {BAD: 0.0, HONEST: 0.35}
    assert list(defences.accusations(now=0, limit=1)) == [BAD]


async def test_honest_mistakes_are_counted_but_forgeries_blacklist() -> None:
    """A newer protocol version or a skewed clock is no evidence of malice; a bad signature is."""
    defences = Defences(clock=lambda: 0.0)

    def failing(exc: Exception):  # type: ignore[no-untyped-def]
        async def handler(peer: str, payload: bytes) -> bytes:
            raise exc
        return defences.guard("/test/1", handler)

    for exc in (WrongVersion("v9"), StaleMessage("old")):
        with pytest.raises(type(exc)):
            await failing(exc)(HONEST, b"{}")
    assert not defences.reputation.is_blacklisted(HONEST, now=0)
    assert defences.rejected["wrong_version"] == 1 and defences.rejected["stale"] == 1
    with pytest.raises(BadSignature):
        await failing(BadSignature("forged"))(BAD, b"{}")
    assert defences.reputation.is_blacklisted(BAD, now=0)


def test_transport_offences_reach_the_reputation_table() -> None:
    """Unparseable bytes blacklist at once; a held stream or a cut-off request only counts like a flood."""
    defences = Defences(clock=lambda: 1000.0)
    defences.on_transport_offence(TransportOffence("slow", "/symphony/task/1", "too_many_streams"))
    defences.on_transport_offence(TransportOffence("slow", "/symphony/task/1", "truncated_request"))
    defences.on_transport_offence(TransportOffence("bad", "/meshsub/1.1.0", "protocol_error"))
    assert defences.reputation.is_blacklisted("bad", now=1000.0)
    assert not defences.reputation.is_blacklisted("slow", now=1000.0)
    assert defences.rejected == {"too_many_streams": 1, "truncated_request": 1, "protocol_error": 1}
