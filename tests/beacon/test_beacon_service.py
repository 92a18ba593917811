"""BEACONSELECT on the memory engine: attested replies, score-claim caps, dead candidates."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from symphony.beacon.service import BEACON_PROTOCOL
from symphony.capability.vector import HashingTagEncoder, classify_task_type, requirement_vector
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.protocol.envelope import ReplayGuard, open_envelope, seal
from symphony.protocol.messages import BeaconResponse
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
SKILLS = [("arithmetic", "math"), ("python", "code"), ("medicine",), ("law", "history")]


def clock() -> float:
    return EPOCH + trio.current_time()


@asynccontextmanager
async def agents(count: int) -> AsyncIterator[tuple[MemoryNetwork, list[AgentRuntime]]]:
    net = MemoryNetwork(link=LinkModel(latency_s=0.003), rng=random.Random(1))
    specs = [SimulatedAgent(identity(n), None, AgentProfile(name=f"n{n}", tags=SKILLS[n % len(SKILLS)]))
             for n in range(count)]
    async with open_simulated_agents(net, specs, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
                                     gossip_config=GossipConfig(anti_entropy_interval_s=1.0)) as runtimes:
        yield net, runtimes


def need(text: str) -> list[float]:
    return list(requirement_vector(text, classify_task_type(text), HashingTagEncoder()))


async def test_best_matching_agent_is_selected(autojump_clock) -> None:
    """A python sub-task goes to the agent that declared python, with the others as backups."""
    async with agents(4) as (_, nodes):
        outcome = await nodes[0].selector.select(need("write python code to sort a list"), m=1)
    assert outcome.contacted == 4 and outcome.replied == 4
    assert outcome.selection.primaries[0].agent_id == nodes[1].agent_id
    assert len(outcome.selection.backups) == 3


async def test_inflated_score_claim_is_capped_to_the_published_vector(autojump_clock) -> None:
    """An agent replying score 1.0 to everything is capped to phi(its published vector, r)."""
    async with agents(4) as (_, nodes):
        liar = nodes[3]

        async def inflate(peer: str, payload: bytes) -> bytes:
            env = open_envelope(payload, guard=ReplayGuard(), now_ms=int(clock() * 1000), kind="beacon")
            reply = BeaconResponse(nonce=env.nonce, score=1.0, queue_length=0, expected_latency_ms=0)
            return seal(liar.identity, "beacon.reply", reply.model_dump(mode="json"),
                        now_ms=int(clock() * 1000)).to_bytes()

        liar.transport.set_handler(BEACON_PROTOCOL, inflate)
        outcome = await nodes[0].selector.select(need("write python code to sort a list"), m=1)
    assert outcome.selection.primaries[0].agent_id == nodes[1].agent_id, "the liar did not win"
    capped = next(c for c in outcome.selection.ordered if c.agent_id == liar.agent_id)
    assert capped.score < 0.5


async def test_reply_with_a_foreign_nonce_is_rejected(autojump_clock) -> None:
    async with agents(3) as (_, nodes):
        async def replay_old(peer: str, payload: bytes) -> bytes:
            reply = BeaconResponse(nonce="0" * 24, score=0.9, queue_length=0, expected_latency_ms=0)
            return seal(nodes[2].identity, "beacon.reply", reply.model_dump(mode="json"),
                        now_ms=int(clock() * 1000)).to_bytes()

        nodes[2].transport.set_handler(BEACON_PROTOCOL, replay_old)
        outcome = await nodes[0].selector.select(need("medicine dosage question"), m=1)
    assert nodes[2].agent_id not in {c.agent_id for c in outcome.selection.ordered}
    assert outcome.rejected[nodes[2].agent_id] == "BadSignature"


async def test_dead_candidate_costs_only_its_slot(autojump_clock) -> None:
    """A candidate that died after the ledger listed it does not reply; selection still returns."""
    async with agents(4) as (net, nodes):
        net.kill(nodes[1].agent_id)
        outcome = await nodes[0].selector.select(need("write python code"), m=1, deadline_s=0.5)
    assert nodes[1].agent_id not in {c.agent_id for c in outcome.selection.ordered}
    assert outcome.replied >= 2
