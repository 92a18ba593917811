"""Byzantine agents for the simulator: the attacks the robustness benchmark measures (issue 7).

A Byzantine agent runs the honest ``AgentRuntime`` (so it gossips, answers beacons and holds
its place in the ledger) with some of its behaviour replaced. ``corrupt(runtime, behaviours)``
swaps its request handlers for lying ones; ``attack(runtime, behaviours, rng)`` runs the active
attacks until cancelled. Behaviours, combinable:

- ``wrong``: every answer it returns (as executor or planner) is a wrong one. The wrong answer
  is a fixed function of the right one, so all Byzantine agents *collude* on the same wrong
  answer (the hardest case for a vote).
- ``inflate``: claims beacon score 1.0 for every requirement whatever its vector (to get picked more often).
- ``squat``: accepts tasks and never answers.
- ``replay``: re-sends its own signed beacons (same nonce).
- ``forge``: sends envelopes signed by a key that is not its own.
- ``records``: publishes ledger records of other agents, signed with its own key.
- ``flood``: sends valid, signed beacons at ``flood_rate`` per second to random peers.

What the honest side does about each is in ``node.defences`` and ``ledger.reputation``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from symphony.beacon import BEACON_PROTOCOL
from symphony.errors import PeerError, TransportError
from symphony.ledger import LEDGER_TOPIC
from symphony.node import AgentRuntime
from symphony.pipeline.service import TASK_PROTOCOL
from symphony.protocol import Beacon, Identity, b64, decode_envelope, encode_sparse, seal

BEHAVIOURS = frozenset({"wrong", "inflate", "squat", "replay", "forge", "records", "flood"})
ACTIVE = frozenset({"replay", "forge", "records", "flood"})


@dataclass(frozen=True)
class AttackConfig:
    interval_s: float = 1.0  # between rounds of an active attack
    flood_rate: float = 1000.0  # beacons per second while flooding
    flood_burst_s: float = 0.5  # each round floods one peer this long


@dataclass
class Misdeeds:
    """What one Byzantine agent did: how many bad acts, and when the first one was (seconds)."""

    acts: int = 0
    first: float | None = None

    def commit(self, now: float) -> None:
        self.acts += 1
        if self.first is None:
            self.first = now


def wrong_answer(answer: str) -> str:
    """The colluding wrong answer: the same for every Byzantine agent, never equal to ``answer``."""
    return f"{answer.strip()}7" if answer.strip() else "7"


def corrupt(runtime: AgentRuntime, behaviours: frozenset[str], misdeeds: Misdeeds | None = None) -> Misdeeds:
    """Replace ``runtime``'s beacon and task handlers according to ``behaviours``; count the lies told."""
    unknown = behaviours - BEHAVIOURS
    if unknown:
        raise ValueError(f"unknown behaviours {sorted(unknown)}; known: {sorted(BEHAVIOURS)}")
    misdeeds = misdeeds if misdeeds is not None else Misdeeds()
    clock = runtime.tasks.clock
    if "inflate" in behaviours:
        runtime.transport.set_handler(BEACON_PROTOCOL, _rewriting(runtime, runtime.responder.handle,
                                                                  _inflate, misdeeds))
    if "squat" in behaviours:
        async def squat(peer: str, payload: bytes) -> bytes:
            misdeeds.commit(clock())
            await anyio.sleep_forever()
            raise AssertionError("unreachable")
        runtime.transport.set_handler(TASK_PROTOCOL, squat)
    elif "wrong" in behaviours:
        runtime.transport.set_handler(TASK_PROTOCOL, _rewriting(runtime, runtime.tasks.handle, _lie, misdeeds))
    return misdeeds


def _inflate(body: dict[str, object]) -> dict[str, object]:
    """Claim a perfect match for every requirement of a (multi-requirement) beacon."""
    scores = body.get("scores")
    return {**body, "scores": [1.0] * len(scores)} if isinstance(scores, list) else body


def _lie(body: dict[str, object]) -> dict[str, object]:
    if not body.get("ok"):
        return body
    return {**body, "answer": wrong_answer(str(body.get("answer", ""))), "weight": 1.0}


def _rewriting(runtime: AgentRuntime, handler: Callable[[str, bytes], Awaitable[bytes]],
               rewrite: Callable[[dict[str, object]], dict[str, object]],
               misdeeds: Misdeeds) -> Callable[[str, bytes], Awaitable[bytes]]:
    """Run the honest handler, then change its reply body and sign it again (a well-formed lie)."""
    async def lying(peer: str, payload: bytes) -> bytes:
        honest = decode_envelope(await handler(peer, payload))
        body = rewrite(dict(honest.body))
        if body != honest.body:
            misdeeds.commit(runtime.tasks.clock())
        return seal(runtime.identity, honest.kind, body, now_ms=int(runtime.tasks.clock() * 1000)).to_bytes()
    return lying


async def attack(runtime: AgentRuntime, behaviours: frozenset[str], rng: random.Random,
                 misdeeds: Misdeeds | None = None, config: AttackConfig = AttackConfig()) -> None:
    """Run the active attacks in ``behaviours`` until cancelled."""
    active = sorted(behaviours & ACTIVE)
    if not active:
        return
    misdeeds = misdeeds if misdeeds is not None else Misdeeds()
    impostor = Identity(rng.randbytes(32))
    while True:
        peers = sorted(runtime.transport.peers())
        if peers:
            target = rng.choice(peers)
            for name in active:
                misdeeds.commit(runtime.tasks.clock())
                await _ATTACKS[name](runtime, target, impostor, config)
        await anyio.sleep(config.interval_s * rng.uniform(0.5, 1.5))


def _beacon(runtime: AgentRuntime, signer: Identity) -> bytes:
    now_ms = int(runtime.tasks.clock() * 1000)
    body = Beacon(requirements=[encode_sparse(runtime.vector)], deadline_ms=now_ms + 2000, task_type="probe")
    return seal(signer, "beacon", body.model_dump(mode="json"), now_ms=now_ms).to_bytes()


async def _send(runtime: AgentRuntime, target: str, protocol: str, payload: bytes) -> None:
    try:
        await runtime.transport.request(target, protocol, payload, timeout=2.0)
    except (TransportError, PeerError):
        pass  # refused, as it should be: the attacker does not care


async def _replay(runtime: AgentRuntime, target: str, impostor: Identity, config: AttackConfig) -> None:
    envelope = _beacon(runtime, runtime.identity)
    await _send(runtime, target, BEACON_PROTOCOL, envelope)
    await _send(runtime, target, BEACON_PROTOCOL, envelope)  # same nonce: a replay


async def _forge(runtime: AgentRuntime, target: str, impostor: Identity, config: AttackConfig) -> None:
    await _send(runtime, target, BEACON_PROTOCOL, _beacon(runtime, impostor))


async def _records(runtime: AgentRuntime, target: str, impostor: Identity, config: AttackConfig) -> None:
    victims = sorted(a for a in runtime.ledger.records if a != runtime.agent_id)
    if not victims:
        return
    record = runtime.ledger.records[target if target in victims else victims[0]]
    fake = record.model_copy(update={"lamport": record.lamport + 1, "availability": "leaving"})
    fake = fake.model_copy(update={"sig": b64(runtime.identity.sign(fake.signing_bytes()))})
    await runtime.transport.publish(LEDGER_TOPIC, json.dumps(fake.model_dump(mode="json")).encode())


async def _flood(runtime: AgentRuntime, target: str, impostor: Identity, config: AttackConfig) -> None:
    count = max(1, int(config.flood_rate * config.flood_burst_s))
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(_send, runtime, target, BEACON_PROTOCOL, _beacon(runtime, runtime.identity))
            await anyio.sleep(1.0 / config.flood_rate)


_ATTACKS: dict[str, Callable[[AgentRuntime, str, Identity, AttackConfig], Awaitable[None]]] = {
    "replay": _replay, "forge": _forge, "records": _records, "flood": _flood,
}

__all__ = ["ACTIVE", "BEHAVIOURS", "AttackConfig", "Misdeeds", "attack", "corrupt", "wrong_answer"]
