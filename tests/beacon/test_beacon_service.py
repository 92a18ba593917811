"""BEACONSELECT on the memory engine: attested replies, score-claim caps, dead candidates."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from pydantic import ValidationError

from symphony.beacon.service import BEACON_PROTOCOL
from symphony.bench.byzantine import corrupt
from symphony.capability.vector import HashingTagEncoder, classify_task_type, requirement_vector
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.protocol.envelope import ReplayGuard, open_envelope, seal
from symphony.protocol.messages import MAX_BEACON_REQUIREMENTS, Beacon, BeaconResponse, encode_sparse
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
            reply = BeaconResponse(nonce=env.nonce, scores=[1.0], queue_length=0, expected_latency_ms=0)
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
            reply = BeaconResponse(nonce="0" * 24, scores=[0.9], queue_length=0, expected_latency_ms=0)
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


async def test_one_beacon_round_ranks_every_requirement_of_a_chain(autojump_clock) -> None:
    """select_many sends ONE beacon per candidate for three requirements and ranks each on its own."""
    async with agents(4) as (_, nodes):
        sent = [n.transport.stats.messages_sent[BEACON_PROTOCOL] for n in nodes]
        outcomes = await nodes[0].selector.select_many(
            [need("write python code to sort a list"), need("medicine dosage question"),
             need("compute the arithmetic sum of 12 and 30")], m=1)
        requests = nodes[0].transport.stats.messages_sent[BEACON_PROTOCOL] - sent[0]
    assert len(outcomes) == 3 and requests == 3  # three remote candidates, one beacon each, all requirements
    assert [o.selection.primaries[0].agent_id for o in outcomes] == [nodes[1].agent_id, nodes[2].agent_id,
                                                                     nodes[0].agent_id]
    assert all(o.contacted == 4 and o.replied == 4 for o in outcomes)


async def test_a_beacon_carries_at_most_twelve_requirements(autojump_clock) -> None:
    """Thirteen requirements are refused before anything is sent; none is refused too."""
    async with agents(2) as (_, nodes):
        for count in (0, MAX_BEACON_REQUIREMENTS + 1):
            with pytest.raises(ValueError, match=r"^a beacon carries 1 to 12 requirements"):
                await nodes[0].selector.select_many([need("python")] * count)
    with pytest.raises(ValidationError):
        Beacon(requirements=[encode_sparse([1.0])] * (MAX_BEACON_REQUIREMENTS + 1), deadline_ms=0)
    with pytest.raises(ValidationError):
        BeaconResponse(nonce="0" * 24, scores=[0.5] * (MAX_BEACON_REQUIREMENTS + 1), queue_length=0,
                       expected_latency_ms=0)


async def test_reply_with_the_wrong_number_of_scores_is_rejected(autojump_clock) -> None:
    """A reply must carry exactly one score per requirement; one short is malformed, and its author dropped."""
    async with agents(3) as (_, nodes):
        short = nodes[2]

        async def one_score(peer: str, payload: bytes) -> bytes:
            env = open_envelope(payload, guard=ReplayGuard(), now_ms=int(clock() * 1000), kind="beacon")
            reply = BeaconResponse(nonce=env.nonce, scores=[0.9], queue_length=0, expected_latency_ms=0)
            return seal(short.identity, "beacon.reply", reply.model_dump(mode="json"),
                        now_ms=int(clock() * 1000)).to_bytes()

        short.transport.set_handler(BEACON_PROTOCOL, one_score)
        outcomes = await nodes[0].selector.select_many([need("medicine dosage"), need("python code")])
    assert all(short.agent_id not in {c.agent_id for c in o.selection.ordered} for o in outcomes)
    assert outcomes[0].rejected[short.agent_id] == "MalformedMessage"


async def test_byzantine_inflater_claims_every_score_and_is_capped_on_each(autojump_clock) -> None:
    """The ``inflate`` behaviour lies on every requirement of a multi-score reply; each claim is capped."""
    async with agents(4) as (_, nodes):
        liar = nodes[3]
        misdeeds = corrupt(liar, frozenset({"inflate"}))
        capped: list[dict[str, object]] = []
        nodes[0].selector.on_event = lambda kind, fields: capped.append(fields) if kind == "score_claim_capped" else None
        outcomes = await nodes[0].selector.select_many([need("write python code"), need("medicine dosage question")])
    assert misdeeds.acts == 1
    assert [f["claimed"] for f in capped if f["agent"] == liar.agent_id] == [1.0, 1.0]
    for outcome in outcomes:
        assert outcome.selection.primaries[0].agent_id != liar.agent_id


async def test_a_chain_beacon_invites_at_most_l_agents(autojump_clock) -> None:
    """Three requirements wanting different agents still invite top_l agents in all, each requirement's best first."""
    async with agents(4) as (_, nodes):
        outcomes = await nodes[0].selector.select_many(
            [need("write python code"), need("medicine dosage question"), need("law and history")], top_l=2)
    assert all(o.contacted == 2 for o in outcomes)
    assert outcomes[0].selection.primaries[0].agent_id == nodes[1].agent_id
    assert outcomes[1].selection.primaries[0].agent_id == nodes[2].agent_id


async def test_a_replys_queue_is_its_model_calls_and_ranks_a_busy_twin_second(autojump_clock) -> None:
    """Two agents declare python (n1, n5): whichever wins when idle reports the model call it is
    running (its gate's queue) and so ranks behind its idle twin (issue 19: chains spread)."""
    async with agents(8) as (_, nodes):
        sub_task = need("write python code to sort a list")
        idle = await nodes[0].selector.select(sub_task)
        first, twin = (c.agent_id for c in idle.selection.ordered[:2])
        assert {first, twin} == {nodes[1].agent_id, nodes[5].agent_id}
        busy = next(n for n in nodes if n.agent_id == first)
        async with busy.tasks.gate.slot():
            loaded = await nodes[0].selector.select(sub_task)
    assert [(c.agent_id, c.queue_length) for c in loaded.selection.ordered[:2]] == [(twin, 0), (first, 1)]


async def test_steps_a_planner_has_out_count_against_the_executor(autojump_clock) -> None:
    """Requests this node has out to an agent, unanswered, count as its queue even when its reply
    says idle (sent after it replied): the planner's next chain picks the twin."""
    async with agents(8) as (_, nodes):
        sub_task = need("write python code to sort a list")
        first, twin = (c.agent_id for c in (await nodes[0].selector.select(sub_task)).selection.ordered[:2])
        outcome = await nodes[0].selector.select(sub_task, outstanding={first: 2})
    assert [(c.agent_id, c.queue_length) for c in outcome.selection.ordered[:2]] == [(twin, 0), (first, 2)]


async def test_preconnect_opens_the_connections_a_round_would_dial_so_the_round_dials_none(autojump_clock) -> None:
    """A node that knows the others only from its ledger (it joined through one bootstrap) connects to
    the candidates of a requirement ahead of the round; a repeat finds nothing left to dial."""
    async with agents(5) as (_, nodes):
        planner = nodes[1]
        assert set(planner.transport.peers()) == {nodes[0].agent_id}
        assert await planner.selector.preconnect(need("write python code to sort a list")) == 3
        assert set(planner.transport.peers()) == {n.agent_id for n in nodes if n is not planner}
        assert await planner.selector.preconnect(need("write python code to sort a list")) == 0


async def test_a_candidate_that_cannot_be_dialled_is_suspected_and_left_out_of_the_next_round(autojump_clock) -> None:
    """An agent dies; a node that never had a connection to it gets no leave event and still lists it.
    Its first round's dial fails: counted, and the agent suspected, so the next round does not invite
    it (without this, every round waited for the dead dial)."""
    async with agents(5) as (net, nodes):
        asker, dead = nodes[2], nodes[3]
        assert dead.agent_id not in asker.transport.peers()
        events: list[tuple[str, dict]] = []
        asker.selector.on_event = lambda kind, fields: events.append((kind, fields))
        net.kill(dead.agent_id)
        first = await asker.selector.select(need("write python code"), m=1)
        second = await asker.selector.select(need("write python code"), m=1)
    assert dead.agent_id in first.rejected and first.contacted == 5
    assert ("dial_failed", {"agent": dead.agent_id, "error": "PeerUnreachable", "source": "ledger"}) in events
    assert second.contacted == 4 and dead.agent_id not in second.rejected


async def test_a_round_started_during_a_pre_dial_joins_its_dials_instead_of_dialling_again(autojump_clock) -> None:
    """A planner's round may start before its pre-dial is done (a one-step plan calls no model): the
    round waits for the dials under way, so each candidate is dialled once, and gets every reply."""
    async with agents(5) as (_, nodes):
        planner = nodes[1]
        dialled: list[str] = []
        connect = planner.transport.connect

        async def counted(addr: str) -> str:
            dialled.append(addr)
            return await connect(addr)

        planner.transport.connect = counted  # type: ignore[method-assign]
        outcomes: list = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(planner.selector.preconnect, need("write python code to sort a list"))
            with trio.fail_after(5):  # the round starts only once the pre-dial's dials are under way
                while not dialled:
                    await trio.lowlevel.checkpoint()
            outcomes.append(await planner.selector.select(need("write python code to sort a list"), m=1))
    assert len(dialled) == 3 == len(set(dialled))
    assert outcomes[0].replied == 5 and outcomes[0].timing.dials == 3
