"""The answering side of a beacon: scores from the private vector, remembered per requirement until it changes."""

from __future__ import annotations

from symphony.beacon.responder import MAX_CACHED_SCORES, BeaconResponder
from symphony.capability.vector import phi
from symphony.protocol.envelope import ReplayGuard
from symphony.protocol.messages import Beacon, encode_sparse
from tests.conftest import identity

NONCE = "00" * 16


def responder(vector: list[list[float]]) -> BeaconResponder:
    return BeaconResponder(identity=identity(0), private_vector=lambda: vector[0], qos=lambda: (0, 1000.0),
                           clock=lambda: 0.0, guard=ReplayGuard())


def beacon(*requirements: list[float]) -> Beacon:
    return Beacon(requirements=[encode_sparse(r) for r in requirements], deadline_ms=1)


def test_a_repeated_requirement_is_answered_from_the_cache_until_the_private_vector_changes() -> None:
    vector = [[1.0, 0.0, 0.5]]
    answering = responder(vector)
    asked = beacon([1.0, 0.0, 0.0], [0.0, 1.0, 1.0])
    first = answering.score(asked, NONCE).scores
    assert first == [round(phi(vector[0], r), 4) for r in asked.vectors]
    assert answering.score(asked, NONCE).scores == first and answering.score_hits == 2
    vector[0] = [0.0, 1.0, 0.0]  # the agent's skills changed: no stale score
    assert answering.score(asked, NONCE).scores == [round(phi(vector[0], r), 4) for r in asked.vectors]
    assert answering.score_hits == 2


def test_the_score_cache_is_bounded_whatever_requirements_peers_send() -> None:
    answering = responder([[1.0, 1.0]])
    for n in range(MAX_CACHED_SCORES + 50):
        answering.score(beacon([1.0, float(n + 1)]), NONCE)
    assert len(answering._scores) == MAX_CACHED_SCORES
