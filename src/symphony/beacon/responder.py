"""The answering side of BEACONSELECT (paper Alg. 1, step 3 "local scoring"): an agent scores a
beacon's requirements with its *private, exact* capability vector and replies with its QoS.

The ledger copy of an agent's vector may be coarsened or noised; the reply carries the exact
score, one per requirement, in the agent's own signed envelope echoing the beacon's nonce (so it
is bound to that beacon and cannot be replayed). The asking side (``beacon.service``) and a shard
gateway relaying a beacon (``beacon.gateway``) both use this module; neither imports the other's.
"""

from __future__ import annotations

from collections.abc import Callable

from symphony.ledger.store import unit_cosine, unit_vector
from symphony.protocol.envelope import ReplayGuard, open_body, seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Beacon, BeaconResponse, decode_sparse

BEACON_PROTOCOL = "/symphony/beacon/2.0.0"
MAX_BEACON_BYTES = 8 * 1024
#: Requirements whose score a responder remembers (oldest forgotten first).
MAX_CACHED_SCORES = 1024


class BeaconResponder:
    """Answers beacons with this agent's private score and its current QoS."""

    def __init__(
        self,
        *,
        identity: Identity,
        private_vector: Callable[[], list[float]],
        qos: Callable[[], tuple[int, float]],
        clock: Callable[[], float],
        guard: ReplayGuard,
    ) -> None:
        self.identity = identity
        self.private_vector = private_vector
        self.qos = qos
        self.clock = clock
        self.guard = guard
        self._unit: tuple[tuple[float, ...], list[float] | None] = ((), None)  # (c_j, c_j / |c_j|)
        self._scores: dict[str, float] = {}  # requirement as sent -> our score, for the vector in _unit
        self.score_hits = 0  # requirements answered from ``_scores``

    def score(self, beacon: Beacon, nonce: str) -> BeaconResponse:
        """phi(c_j, r_i) (eq. 1) for every requirement of ``beacon``, in order, and this agent's QoS."""
        mine = tuple(self.private_vector())
        if mine != self._unit[0]:  # normalised once per change of our vector, not per beacon
            self._unit = (mine, unit_vector(list(mine)))
            self._scores.clear()
        scores = [self._score(r) for r in beacon.requirements]
        queue, latency_ms = self.qos()
        return BeaconResponse(nonce=nonce, scores=scores, queue_length=queue, expected_latency_ms=round(latency_ms, 1))

    def _score(self, requirement: str) -> float:
        """Our score for ``requirement`` (``encode_sparse``d, as the beacon carries it), remembered
        while our vector stays the same: the private vector changes rarely and planners beacon the
        same sub-task requirements again and again, so a hit skips decoding and scoring."""
        score = self._scores.get(requirement)
        if score is not None:
            self.score_hits += 1
            return score
        # 4 decimals rank as well as 17 and take a third of the bytes on the wire
        phi = unit_cosine(self._unit[1], unit_vector(decode_sparse(requirement)))
        score = self._scores[requirement] = round(phi, 4)
        if len(self._scores) > MAX_CACHED_SCORES:  # bounded whatever requirements peers send
            del self._scores[next(iter(self._scores))]
        return score

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``BEACON_PROTOCOL``. Raises PeerError on a bad beacon."""
        env, beacon = open_body(payload, Beacon, sender=peer, kind="beacon", guard=self.guard,
                                now_ms=int(self.clock() * 1000), limit=MAX_BEACON_BYTES)
        reply = self.score(beacon, env.nonce)
        return seal(self.identity, "beacon.reply", reply.wire(),
                    now_ms=int(self.clock() * 1000)).to_bytes()

__all__ = ["BEACON_PROTOCOL", "MAX_BEACON_BYTES", "BeaconResponder"]
