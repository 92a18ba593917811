"""Outcome feedback (pipeline.feedback): after the vote, planners and executors learn how their work did.

On the memory network under virtual time with real runtimes (signed envelopes, admission guard,
gossip), and scripted models; unit checks of the pieces at the end.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from symphony.beacon.ranking import Candidate, LinUCBConfig, LinUCBStrategy
from symphony.capability.vector import SKILL_PRIOR, SKILLS, SkillScores, task_type_index
from symphony.errors import PeerError
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm.base import Completion
from symphony.node.runtime import AgentProfile, AgentRuntime, LearningFile, SimulatedAgent, open_simulated_agents
from symphony.pipeline.feedback import DELIVER_TIMEOUT_S, OUTCOME_PROTOCOL, OutcomeService
from symphony.pipeline.service import AskOptions
from symphony.protocol.envelope import ReplayGuard, open_body, seal
from symphony.protocol.messages import Outcome, OutcomeAck, Task, decode_vector
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, clock, swarm

WORD = "word_problem"  # the task type of QUESTION and of both of FakeModel's steps


async def _send_outcome(sender: AgentRuntime, to: AgentRuntime, message: Outcome) -> OutcomeAck:
    raw = await sender.transport.request(to.agent_id, OUTCOME_PROTOCOL,
                                         seal(sender.identity, "outcome", message.wire(),
                                              now_ms=int(clock() * 1000)).to_bytes(), timeout=5)
    _, ack = open_body(raw, OutcomeAck, sender=to.agent_id, kind="outcome.ack", guard=ReplayGuard(),
                       now_ms=int(clock() * 1000))
    return ack


async def test_only_the_sender_of_the_work_can_move_skills(autojump_clock) -> None:
    """One chain (no cross-vote, so no outcome yet): another member's outcome for the planner's chain is
    refused, counted and changes nothing; the initiator that sent the chain may deliver it, once."""
    async with swarm([FakeModel(f"m{n}") for n in range(3)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, deadline_s=60))
        assert trace["outcomes"] == [], "one chain cannot be judged"
        chain = trace["chains"][0]
        planner = next(n for n in nodes if n.agent_id == chain["planner"])
        seen: list[dict[str, Any]] = []
        planner.feedback.on_event = lambda kind, fields: seen.append(fields) if kind == "rejected" else None
        stranger = next(n for n in nodes if n.agent_id not in (planner.agent_id, nodes[0].agent_id))
        before = planner.skills
        task_id = f"{trace['task_id']}/c0"
        refused = await _send_outcome(stranger, planner, Outcome(task_id=task_id, agreed=0.0))
        assert (refused.accepted, refused.reason) == (False, "not_sender")
        unknown = await _send_outcome(stranger, planner, Outcome(task_id="no-such-task/c0", agreed=0.0))
        assert (unknown.accepted, unknown.reason) == (False, "unknown_task")
        assert planner.skills == before and planner.feedback.refused == {"not_sender": 1, "unknown_task": 1}
        assert [e["reason"] for e in seen if e["source"] == stranger.agent_id] == ["outcome_not_sender",
                                                                                  "outcome_unknown_task"]
        assert planner is not nodes[0], "the chain went to a peer (else this checks the in-process path)"
        taken = await _send_outcome(nodes[0], planner, Outcome(task_id=task_id, agreed=1.0))  # the real sender
        assert taken.accepted and planner.skills.score("planning") > before.score("planning"), "a chain is planning"
        again = await _send_outcome(nodes[0], planner, Outcome(task_id=task_id, agreed=1.0))
        assert (again.accepted, again.reason) == (False, "unknown_task"), "one outcome per piece of work"


async def test_a_forged_outcome_is_dropped(autojump_clock) -> None:
    """An outcome signed by one key but sent by another peer never reaches the skills."""
    async with swarm([FakeModel(f"m{n}") for n in range(2)]) as (_, nodes):
        forged = seal(identity(7), "outcome", Outcome(task_id="t/c0", agreed=0.0).wire(), now_ms=int(clock() * 1000))
        with pytest.raises(PeerError):
            await nodes[1].feedback.handle(nodes[0].agent_id, forged.to_bytes())
        assert nodes[1].skills == SkillScores()


class Liar(FakeModel):
    """Answers every sub-task 99 (and is only an executor, so it never plans an honest chain)."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        done = await super().chat(messages, json_schema=json_schema)
        return replace(done, text="\\boxed{99}") if json_schema is None else done


async def test_agreeing_agents_gain_the_outvoted_one_loses_and_peers_see_it(autojump_clock) -> None:
    """Six agents, one answering every sub-task wrong, executors picked at random: after a few
    questions the honest agents' word-problem skill is above the prior, the liar's below, and another
    node's ledger holds the liar's republished vector with that skill block."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.002), rng=random.Random(3))
    specs = [SimulatedAgent(identity(n), FakeModel(f"m{n}"), AgentProfile(name=f"n{n}", tags=("math",)))
             for n in range(5)]
    specs.append(SimulatedAgent(identity(5), Liar("liar"), AgentProfile(name="liar", roles=("executor",))))
    async with open_simulated_agents(net, specs, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
                                     gossip_config=GossipConfig(anti_entropy_interval_s=1.0)) as nodes:
        for node in nodes:
            node.learning_interval_s = 1.0
        initial = list(nodes[5].vector[SKILLS])
        outcomes = []
        for _ in range(24):  # the liar wins a vote only when it ran 2 of the 3 final steps (p ~ 0.07 a question);
            # 16 questions left it at the prior on 3 of 6 network seeds, 24 on none
            trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, deadline_s=60, strategy="random"))
            outcomes += trace["outcomes"]
        liar = nodes[5]
        assert liar.skills.score(WORD) < SKILL_PRIOR
        assert max(n.skills.score(WORD) for n in nodes[:5]) > SKILL_PRIOR
        assert all(n.skills.score(WORD) > liar.skills.score(WORD) for n in nodes[:5])
        assert list(liar.vector[SKILLS]) != initial, "republished (and scored with) at once after the first outcome"

        def seen_by_peer() -> bool:
            record = nodes[1].ledger.records.get(liar.agent_id)
            seen = None if record is None else decode_vector(record.capability)[SKILLS]
            return seen is not None and seen == pytest.approx(liar.vector[SKILLS], abs=2e-3) and (
                seen[task_type_index(WORD)] < seen[task_type_index("other")])

        with trio.fail_after(30):
            while not seen_by_peer():
                await trio.sleep(0.1)


async def test_republishing_is_rate_bounded_and_coalesced(autojump_clock) -> None:
    """Many outcomes within one interval cost one record UPDATE; a steady stream at most one per interval."""
    async with swarm([FakeModel("m0")]) as (_, (node,)):
        node.learning_interval_s = 10.0
        published: list[float] = []
        emit = node._emit
        node._emit = lambda kind, fields: (published.append(trio.current_time()) if kind == "skills_published"
                                           else None, emit(kind, fields))
        begun = trio.current_time()
        for n in range(60):  # one outcome a second for a minute
            node.learn_skill(WORD, n % 2)
            await trio.sleep(1.0)
        await trio.sleep(10.0)
        span = trio.current_time() - begun
        assert 1 <= len(published) <= span / 10.0 + 1
        assert all(b - a >= 10.0 for a, b in itertools.pairwise(published))
        assert decode_vector(node.gossip.own_record.capability)[SKILLS] == pytest.approx(node.vector[SKILLS],
                                                                                         abs=2e-3)


async def _runtime(net: MemoryNetwork, store: LearningFile, nursery: trio.Nursery) -> AgentRuntime:
    transport = await net.open_node(identity(0)).__aenter__()
    runtime = AgentRuntime(transport=transport, identity=identity(0), profile=AgentProfile(tags=("math",)),
                           model=FakeModel("m0"), clock=clock, rng=random.Random(0), learning_store=store,
                           learning_interval_s=1.0)
    await nursery.start(runtime.run)
    return runtime


async def test_learned_state_survives_a_restart(autojump_clock, tmp_path: Path) -> None:
    """Skills and LinUCB arms learned by one runtime are those of the next one over the same store."""
    store = LearningFile(tmp_path / "learned.json")
    candidate = Candidate(agent_id="x", score=0.5, queue_length=0, expected_latency_ms=100.0, reputation=1.0,
                          available=True)
    async with trio.open_nursery() as nursery:
        first = await _runtime(MemoryNetwork(), store, nursery)
        for _ in range(3):
            first.learn_skill("algebra", 1.0)
        first.tasks.linucb.update("x", first.tasks.linucb.context(candidate), 1.0)
        first.feedback.changed()
        with trio.fail_after(5):
            while not store.path.exists():
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        second = await _runtime(MemoryNetwork(), store, nursery)
        assert second.skills == first.skills and second.skills.score("algebra") > SKILL_PRIOR
        assert second.vector == first.vector
        assert second.tasks.linucb.ucb(candidate) == pytest.approx(first.tasks.linucb.ucb(candidate))
        assert second.tasks.linucb.state() == first.tasks.linucb.state()
        nursery.cancel_scope.cancel()


async def test_a_corrupt_learned_file_is_reported_and_learning_starts_afresh(autojump_clock, tmp_path: Path) -> None:
    store = LearningFile(tmp_path / "learned.json")
    store.path.write_text("{not json")
    async with trio.open_nursery() as nursery:
        runtime = await _runtime(MemoryNetwork(), store, nursery)
        assert runtime.skills == SkillScores()
        nursery.cancel_scope.cancel()


# ---- units ------------------------------------------------------------------------------------


def _candidate(agent_id: str) -> Candidate:
    return Candidate(agent_id=agent_id, score=0.6, queue_length=0, expected_latency_ms=200.0, reputation=1.0,
                     available=True)


def test_linucb_state_round_trips_and_refuses_a_foreign_model() -> None:
    linucb = LinUCBStrategy()
    for agent, reward in (("a", 1.0), ("b", 0.0), ("a", 0.5)):
        linucb.update(agent, linucb.context(_candidate(agent)), reward)
    copy = LinUCBStrategy()
    copy.load_state(linucb.state())
    assert copy.state() == linucb.state()
    assert [copy.ucb(_candidate(a)) for a in "ab"] == [linucb.ucb(_candidate(a)) for a in "ab"]
    with pytest.raises(ValueError):
        LinUCBStrategy(LinUCBConfig(shared=True)).load_state(linucb.state())
    broken = linucb.state()
    broken["arms"]["a"]["b"] = [float("nan")] * 6
    with pytest.raises(ValueError):
        copy.load_state(broken)
    assert copy.state() == linucb.state(), "a refused state changes nothing"


async def test_the_end_to_end_reward_moves_the_planners_linucb() -> None:
    """A chain outvoted: every executor the planner used in it gets reward 0; a chain that agreed, 1:
    the first ranks below the second. Nothing is forwarded for an executor the planner never used."""
    learned: list[tuple[str, float]] = []
    service = OutcomeService(transport=None, identity=identity(1), clock=lambda: 1_700_000_000.0,  # type: ignore[arg-type]
                             linucb=LinUCBStrategy(), learn=lambda t, o: learned.append((t, o)))
    task = Task(task_id="q/c0", role="plan", question=QUESTION, deadline_ms=1)
    prior = service.linucb.ucb(_candidate("bad"))
    for chain, executor, agreed in (("q/c0", "bad", 0.0), ("q/c1", "good", 1.0)):
        service.remember("initiator", task.model_copy(update={"task_id": chain}))
        service.dispatched(chain, executor, f"{chain}/s0", service.linucb.context(_candidate(executor)))
        ack = await service._apply("initiator", Outcome(task_id=chain, agreed=agreed, executors=[("other", 1.0)]))
        assert ack.accepted and ack.forwarded == 0
    bad, good = service.linucb.ucb(_candidate("bad")), service.linucb.ucb(_candidate("good"))
    assert bad < good and bad < prior, "same context and evidence count: only the reward tells them apart"
    assert learned == [("planning", 0.0), ("planning", 1.0)]



async def test_a_learned_skill_is_republished_noised_when_privacy_is_on(autojump_clock) -> None:
    """With privacy noise on, the republished skill block is the noised one, never the exact vector."""
    net = MemoryNetwork(rng=random.Random(0))
    async with net.open_node(identity(0)) as transport, trio.open_nursery() as nursery:
        node = AgentRuntime(transport=transport, identity=identity(0), profile=AgentProfile(tags=("math",)),
                            model=FakeModel("m0"), clock=clock, rng=random.Random(0), privacy_sigma=0.2,
                            learning_interval_s=1.0)
        await nursery.start(node.run)
        before = node.gossip.own_record.lamport
        node.learn_skill(WORD, 1.0)
        with trio.fail_after(30):
            while node.gossip.own_record.lamport == before:
                await trio.sleep(0.5)
        published = decode_vector(node.gossip.own_record.capability)
        assert node.vector[SKILLS] != pytest.approx(SkillScores().values, abs=1e-6), "the skill was learned"
        assert published == pytest.approx(node.published_vector(), abs=2e-3)
        assert published[SKILLS] != pytest.approx(node.vector[SKILLS], abs=1e-2), "the exact skills leaked"
        nursery.cancel_scope.cancel()


async def test_the_answer_returns_while_a_peers_outcome_handler_is_stalled(autojump_clock, monkeypatch) -> None:
    """Outcomes go out after the answer: peers whose outcome handler never returns delay nothing;
    their deliveries time out in the background and are counted as failed."""
    async with swarm([FakeModel(f"m{n}") for n in range(3)]) as (_, nodes):
        async def stalled(sender: str, message: Outcome) -> OutcomeAck:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        for peer in nodes[1:]:
            monkeypatch.setattr(peer.feedback, "_apply", stalled)
        begun = trio.current_time()
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, deadline_s=60))
        took_s = trio.current_time() - begun
        to_peers = [o for o in trace["outcomes"] if o["planner"] != nodes[0].agent_id]
        assert to_peers and all(o["delivery"] == "queued" for o in trace["outcomes"])
        assert took_s < DELIVER_TIMEOUT_S, "the answer did not wait for a stalled outcome handler"
        with trio.fail_after(30):
            while nodes[0].feedback.delivery["failed"] < len(to_peers):
                await trio.sleep(0.1)
        assert nodes[0].feedback.delivery["queued"] == len(trace["outcomes"])
