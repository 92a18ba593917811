"""Admission of expensive work and chain reuse, at the TaskService / AgentRuntime level on the memory
network in virtual time: who may hand a node a Task, how many at once, and how a re-ask finds the
chains a planner already ran."""

from __future__ import annotations

import trio

from symphony.errors import PeerUnreachable
from symphony.node.defences import TASK_RATE
from symphony.pipeline.service import TASK_PROTOCOL, AskOptions
from symphony.protocol.envelope import seal
from symphony.protocol.identity import Identity
from symphony.protocol.messages import Task
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, clock, swarm


class CountingModel(FakeModel):
    """Counts decompositions (plan calls) apart from sub-task calls."""

    def __init__(self, name: str, *, delay: float = 0.1) -> None:
        super().__init__(name, delay=delay)
        self.plans = 0

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):  # type: ignore[no-untyped-def]
        self.plans += json_schema is not None
        return await super().chat(messages, json_schema=json_schema)


def plan_task(task_id: str, question: str = QUESTION) -> Task:
    """A chain of ``question`` under ``task_id`` (``{question id}/c{slot}``)."""
    return Task(task_id=task_id, role="plan", question=question, answer_kind="number", max_steps=3,
                deadline_ms=int((clock() + 60) * 1000))


async def test_reask_reuses_a_finished_chain_whatever_its_slot(autojump_clock) -> None:
    """A chain run as slot c0 for one initiator is handed, not re-run, to another asking for slot c2."""
    models = [CountingModel(f"m{n}") for n in range(4)]
    async with swarm(models) as (_, nodes):
        first, second, planner = nodes[0], nodes[1], nodes[2]
        original = await first.tasks._send(planner.agent_id, plan_task("t-durable/c0"))
        again = await second.tasks._send(planner.agent_id, plan_task("t-durable/c2"))
        other = await second.tasks._send(planner.agent_id, plan_task("t-durable/c1", QUESTION + " Twice?"))
    assert original.ok and again.ok and other.ok
    assert again.task_id == "t-durable/c2" and again.answer == original.answer
    assert again.trace == original.trace
    assert models[2].plans == 2, "the re-ask reused the chain; another question under the ID did not"


async def test_stranger_tasks_are_refused_unread_and_counted(autojump_clock) -> None:
    """A fresh key (no ledger record) sending validly signed execute Tasks gets none served."""
    models = [CountingModel(f"m{n}") for n in range(3)]
    async with swarm(models) as (net, nodes):
        target = nodes[0]
        stranger = Identity.generate()
        async with net.open_node(stranger) as transport:
            await transport.connect(target.transport.listen_addrs()[0])
            refused = 0
            for n in range(30):
                task = Task(task_id=f"x{n}", role="execute", question="What is 2 + 2?",
                            deadline_ms=int((clock() + 3600) * 1000))
                envelope = seal(stranger, "task", task.wire(), now_ms=int(clock() * 1000)).to_bytes()
                try:
                    await transport.request(target.agent_id, TASK_PROTOCOL, envelope, timeout=5)
                except PeerUnreachable:
                    refused += 1
    assert refused == 30 and models[0].calls == 0
    rejected = target.defences.rejected
    assert rejected["unknown_peer"] == TASK_RATE.burst and rejected["rate_limited"] == 30 - TASK_RATE.burst


async def test_a_member_gets_a_bounded_number_of_tasks_at_once(autojump_clock) -> None:
    """A known member sending 30 slow execute Tasks at once is served at most max_active_per_peer."""
    models = [CountingModel(f"m{n}", delay=50.0) for n in range(3)]
    async with swarm(models) as (_, nodes):
        target, member = nodes[0], nodes[1]
        target.tasks.decline_busy = False  # the admission bound alone: a busy executor would decline at once
        bound = target.defences.admission.max_active_per_peer
        outcomes: list[bool] = []

        async def send(n: int) -> None:
            task = Task(task_id=f"m{n}", role="execute", question="What is 2 + 2?",
                        deadline_ms=int((clock() + 3600) * 1000))
            envelope = seal(member.identity, "task", task.wire(), now_ms=int(clock() * 1000)).to_bytes()
            try:
                await member.transport.request(target.agent_id, TASK_PROTOCOL, envelope, timeout=600)
                outcomes.append(True)
            except PeerUnreachable:
                outcomes.append(False)

        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(send, n)
        assert target.defences.active[member.agent_id] == 0
    assert sum(outcomes) == bound and models[0].calls == bound
    rejected = target.defences.rejected
    assert rejected["peer_busy"] == TASK_RATE.burst - bound and rejected["rate_limited"] == 30 - TASK_RATE.burst
    assert not target.defences.reputation.is_blacklisted(member.agent_id, now=clock())


async def test_honest_ask_keeps_all_chains_beside_a_refused_stranger(autojump_clock) -> None:
    """A question with cots=3 gets three good chains while a stranger's Tasks are being refused."""
    async with swarm([CountingModel(f"m{n}") for n in range(4)]) as (net, nodes):
        stranger = Identity.generate()
        async with net.open_node(stranger) as transport, trio.open_nursery() as nursery:
            for node in nodes:
                await transport.connect(node.transport.listen_addrs()[0])

            async def flood() -> None:
                for n in range(200):
                    task = plan_task(f"f{n}/c0")
                    envelope = seal(stranger, "task", task.wire(), now_ms=int(clock() * 1000)).to_bytes()
                    for node in nodes:
                        try:
                            await transport.request(node.agent_id, TASK_PROTOCOL, envelope, timeout=5)
                        except PeerUnreachable:
                            pass
                    await trio.sleep(0.01)

            nursery.start_soon(flood)
            trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, max_steps=3, adaptive=False, deadline_s=60))
            nursery.cancel_scope.cancel()
    assert [c["ok"] for c in trace["chains"]] == [True, True, True]
    assert all(n.model.plans == (n.agent_id in {c["planner"] for c in trace["chains"]}) for n in nodes)  # type: ignore[union-attr]
