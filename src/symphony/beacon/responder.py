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
from symphony.protocol.messages import Beacon, BeaconResponse

BEACON_PROTOCOL = "/symphony/beacon/2.0.0"
MAX_BEACON_BYTES = 8 * 1024


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

    def score(self, beacon: Beacon, nonce: str) -> BeaconResponse:
        """phi(c_j, r_i) (eq. 1) for every requirement of ``beacon``, in order, and this agent's QoS."""
        mine = tuple(self.private_vector())
        if mine != self._unit[0]:  # normalised once per change of our vector, not per beacon
            self._unit = (mine, unit_vector(list(mine)))
        # 4 decimals rank as well as 17 and take a third of the bytes on the wire
        scores = [round(unit_cosine(self._unit[1], unit_vector(r)), 4) for r in beacon.vectors]
        queue, latency_ms = self.qos()
        return BeaconResponse(nonce=nonce, scores=scores, queue_length=queue, expected_latency_ms=round(latency_ms, 1))

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``BEACON_PROTOCOL``. Raises PeerError on a bad beacon."""
        env, beacon = open_body(payload, Beacon, sender=peer, kind="beacon", guard=self.guard,
                                now_ms=int(self.clock() * 1000), limit=MAX_BEACON_BYTES)
        reply = self.score(beacon, env.nonce)
        return seal(self.identity, "beacon.reply", reply.wire(),
                    now_ms=int(self.clock() * 1000)).to_bytes()

__all__ = ["BEACON_PROTOCOL", "MAX_BEACON_BYTES", "BeaconResponder"]
