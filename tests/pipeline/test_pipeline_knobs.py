"""Issue 17's fault knobs on the memory network in virtual time: adaptive hop timeouts, re-planning,
per-question redundancy, priority at a busy node, minimal disclosure. Each test also runs (or
states) the case without its mechanism, which must fail."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm.base import Completion, ModelError
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.chain import DECLINED_ERROR, HOP_COLD_S, HOP_TIMEOUT_ERROR
from symphony.pipeline.gate import PriorityGate
from symphony.pipeline.initiator import PLAN_FLOOR_S, PLAN_TIMEOUT_ERROR
from symphony.pipeline.service import AskOptions, TaskFailed
from symphony.protocol.messages import Task, TaskKnobs
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, clock, swarm


class HungExecutor(FakeModel):
    """Plans like the others; never returns from an execution call (a hung executor)."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        if json_schema is None:
            await trio.sleep_forever()
        return await super().chat(messages, json_schema=json_schema)


@asynccontextmanager
async def tagged_swarm(models: list[FakeModel], tags: list[str],
                       roles: list[tuple[str, ...] | None] | None = None) -> AsyncIterator[list[AgentRuntime]]:
    """``swarm`` with each agent's skill tag given (so beacon scores, hence the order tried, differ),
    and its roles if given (default: planner and executor)."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.002), rng=random.Random(3))
    specs = [SimulatedAgent(identity(n), model, AgentProfile(name=f"n{n}", tags=(tag,), roles=role))
             for n, (model, tag, role) in enumerate(zip(models, tags, roles or [None] * len(models), strict=True))]
    async with open_simulated_agents(
        net, specs, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
        gossip_config=GossipConfig(anti_entropy_interval_s=1.0, target_degree=4),
    ) as runtimes:
        yield runtimes


DEADLINE_S = 600  # the hung-executor questions': two cold hops (60 s, then 120 s) fit well inside


async def _ask_with_hung_executors(hop_timeout: str) -> tuple[dict | None, float]:
    """Two hung executors and one working node; the hung ones are tagged with the question's word
    ("apples"), so both outrank the "math" node for the first step (the adaptive test checks that they
    were tried and cut)."""
    models = [HungExecutor("h0"), HungExecutor("h1"), FakeModel("ok")]
    async with tagged_swarm(models, ["apples", "apples", "math"]) as nodes:
        for node in nodes:  # the executor hop alone: the planner hop waits for the deadline
            node.tasks.plan_timeout = "off"
        begun = trio.current_time()
        try:
            trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, deadline_s=DEADLINE_S,
                                                                  hop_timeout=hop_timeout))
        except TaskFailed:
            trace = None
        return trace, trio.current_time() - begun


async def test_hung_executor_costs_one_adaptive_hop_not_the_deadline(autojump_clock) -> None:
    trace, took_s = await _ask_with_hung_executors("adaptive")
    assert trace is not None and trace["answer"] == "10"
    attempts = [a for s in trace["chains"][0]["trace"]["steps"] for a in s["attempts"]]
    cut = [a for a in attempts if not a["ok"]]
    assert cut and all(a["error"].startswith(HOP_TIMEOUT_ERROR) for a in cut)
    assert cut[0]["rtt_ms"] == pytest.approx(HOP_COLD_S * 1000, rel=0.01), "an unknown executor: the cold floor"
    assert cut[1]["rtt_ms"] == pytest.approx(2 * HOP_COLD_S * 1000, rel=0.01), "each cut hop doubles the next"
    assert took_s < DEADLINE_S / 2, "hung hops cost their adaptive limits, far below the deadline"


class FlakyExecutor(FakeModel):
    """Answers its first execution call; hangs on every later one (a node that stops answering)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.executed = 0

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        if json_schema is None:
            self.executed += 1
            if self.executed > 1:
                await trio.sleep_forever()
        return await super().chat(messages, json_schema=json_schema)


async def test_a_hop_cut_on_a_guessed_limit_is_no_offence_and_puts_the_executor_last(autojump_clock) -> None:
    """The planner had never timed the hung executors: their cuts were guesses (the floor), so they
    stay in good standing (an honest executor queued at a shared model server is slow the same way),
    and the next question tries the working executor first: no hop is cut again."""
    models = [HungExecutor("h0"), HungExecutor("h1"), FakeModel("ok")]
    async with tagged_swarm(models, ["apples", "apples", "math"], roles=[("executor",)] * 2 + [None]) as nodes:
        planner = nodes[2]  # the only planner: the hung nodes are its executors
        planner.tasks.plan_timeout = "off"
        hung = [nodes[0].identity.agent_id, nodes[1].identity.agent_id]
        options = AskOptions(cots=1, deadline_s=600, hop_timeout="adaptive")
        first = await planner.tasks.ask(QUESTION, options)
        second = await planner.tasks.ask(QUESTION, options)
        standing = [planner.defences.reputation.score(a, now=clock()) for a in hung]
    cut = [a for s in first["chains"][0]["trace"]["steps"] for a in s["attempts"] if not a["ok"]]
    assert {a["executor"] for a in cut} == set(hung), "both hung executors were tried and cut"
    assert standing == [0.5, 0.5], "a guessed limit missed is no offence"
    assert all(a["ok"] for s in second["chains"][0]["trace"]["steps"] for a in s["attempts"])


async def test_a_hop_cut_on_a_known_limit_is_an_offence(autojump_clock) -> None:
    """An executor the planner has timed (it answered once) and that then holds a step past its
    limit is blamed: a squatter still loses its standing."""
    models = [FlakyExecutor("f0"), FakeModel("ok")]
    async with tagged_swarm(models, ["apples", "math"], roles=[("executor",), None]) as nodes:
        planner = nodes[1]
        planner.tasks.plan_timeout = "off"
        options = AskOptions(cots=1, deadline_s=600, hop_timeout="adaptive", max_steps=1)
        await planner.tasks.ask(QUESTION, options)
        answered = planner.defences.reputation.score(nodes[0].identity.agent_id, now=clock())
        trace = await planner.tasks.ask(QUESTION, options)
        after = planner.defences.reputation.score(nodes[0].identity.agent_id, now=clock())
    cut = [a for s in trace["chains"][0]["trace"]["steps"] for a in s["attempts"] if not a["ok"]]
    assert [a["executor"] for a in cut] == [nodes[0].identity.agent_id]
    assert answered >= 0.5 and after < 0.4


async def test_without_hop_timeouts_a_hung_executor_holds_the_step_to_the_deadline(autojump_clock) -> None:
    trace, took_s = await _ask_with_hung_executors("off")
    assert trace is None and took_s >= DEADLINE_S


class BoxesStepFails(FakeModel):
    """Every executor fails the "in the boxes" step; asked to re-plan, the planner words it differently."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        user = messages[-1]["content"]
        if json_schema is not None and "This step failed" in user:
            steps = [{"question": "How many apples do 3 boxes of 4 apples hold?"}, {"question": "How many are left?"}]
            return Completion(text=json.dumps({"steps": steps}), prompt_tokens=50, completion_tokens=10,
                              latency_s=0.1, model=self.name)
        if json_schema is None and "in the boxes" in user.split("Step:")[-1]:
            raise ModelError(f"{self.name} cannot do this step")
        return await super().chat(messages, json_schema=json_schema)


async def test_a_failed_step_is_replanned_and_the_chain_answers(autojump_clock) -> None:
    async with swarm([BoxesStepFails(f"m{n}") for n in range(3)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=120))
        with pytest.raises(TaskFailed):
            await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=120, replans=0))
    steps = trace["chains"][0]["trace"]["steps"]
    assert trace["answer"] == "10"
    assert not steps[0]["ok"] and "in the boxes" in steps[0]["question"]
    assert steps[1]["question"] == "How many apples do 3 boxes of 4 apples hold?" and steps[1]["ok"]
    assert steps[-1]["ok"] and steps[-1]["question"] == QUESTION, "the re-plan still ends in the question"


async def test_redundancy_two_per_question_cross_checks_every_step(autojump_clock) -> None:
    async with swarm([FakeModel(f"m{n}") for n in range(4)]) as (_, nodes):
        checked = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, deadline_s=60, redundancy=2))
        single = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, deadline_s=60))
    for step in checked["chains"][0]["trace"]["steps"]:
        assert len(step["checked_by"]) == 1 and step["checked_by"][0] != step["executor"]
    assert all(not s.get("checked_by") for s in single["chains"][0]["trace"]["steps"]), "the node default is 1"


class Queued(FakeModel):
    """Records the step each call serves, in the order calls reach the model."""

    def __init__(self, name: str) -> None:
        super().__init__(name, delay=10.0)
        self.served: list[str] = []

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        self.served.append(messages[-1]["content"].split("Step:")[-1].strip())
        return await super().chat(messages, json_schema=json_schema)


async def test_priority_changes_the_order_of_service_at_a_busy_executor(autojump_clock) -> None:
    busy = Queued("busy")
    async with swarm([FakeModel("asker"), busy]) as (_, nodes):
        nodes[1].tasks.gate = PriorityGate(slots=1)
        nodes[1].tasks.decline_busy = False  # a node that queues steps (by default a busy one declines them)
        deadline_ms = int((clock() + 120) * 1000)

        async def send(name: str, priority: int) -> None:
            task = Task(task_id=name, role="execute", question=f"What is {name}?", answer_kind="number",
                        deadline_ms=deadline_ms, knobs=TaskKnobs(priority=priority))
            assert (await nodes[0].tasks._send(nodes[1].agent_id, task)).ok

        async with trio.open_nursery() as nursery:
            for name in ("low1", "low2", "low3"):
                nursery.start_soon(send, name, 0)
                await trio.sleep(1)  # arrive in this order while the first holds the only slot
            nursery.start_soon(send, "urgent", 9)
    assert busy.served == ["What is low1?", "What is urgent?", "What is low2?", "What is low3?"]


async def test_a_busy_executor_declines_a_step_at_once_and_takes_it_when_the_planner_insists(autojump_clock) -> None:
    """With its only model slot taken, an executor declines a second step at once (no queueing, no
    model call) and counts it; the same step sent again by the same planner is taken and answered."""
    busy = Queued("busy")
    async with swarm([FakeModel("asker"), busy]) as (_, nodes):
        nodes[1].tasks.gate = PriorityGate(slots=1)
        events: list[str] = []
        served = nodes[1].tasks.on_event
        nodes[1].tasks.on_event = lambda kind, fields: (events.append(kind), served(kind, fields))
        deadline_ms = int((clock() + 120) * 1000)

        def task(name: str) -> Task:
            return Task(task_id=name, role="execute", question=f"What is {name}?", answer_kind="number",
                        deadline_ms=deadline_ms)

        results = {}

        async def send(name: str) -> None:
            results[name] = await nodes[0].tasks._send(nodes[1].agent_id, task(name))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "first")
            await trio.sleep(1)
            asked = clock()
            second = await nodes[0].tasks._send(nodes[1].agent_id, task("second"))
            assert not second.ok and second.error.startswith(DECLINED_ERROR)
            assert clock() - asked < 1, "declined at once, not after the first call's 10 s"
            insisted = await nodes[0].tasks._send(nodes[1].agent_id, task("second"))
        assert results["first"].ok and insisted.ok
    assert busy.served == ["What is first?", "What is second?"]
    assert events.count("task_declined") == 1


class Recording(FakeModel):
    """Plans and answers like ``FakeModel``; keeps every (planning?, system, user) prompt."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[tuple[bool, str, str]] = []

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        self.seen.append((json_schema is not None, messages[0]["content"], messages[-1]["content"]))
        return await super().chat(messages, json_schema=json_schema)


@pytest.mark.parametrize("disclosure", ["minimal", "full"])
async def test_minimal_disclosure_keeps_the_question_out_of_executor_prompts(autojump_clock, disclosure) -> None:
    models = [Recording(f"m{n}") for n in range(3)]
    context = "User: my name is Ada and my boxes are secret."
    async with swarm(models) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=60, context=context,
                                                              disclosure=disclosure))
    assert trace["answer"] == "10"
    executions = [(system, user) for m in models for planning, system, user in m.seen if not planning]
    assert len(executions) == 2
    leaked = [user for system, user in executions if "Tom has 3 boxes" in user or "Ada" in system]
    assert leaked == ([] if disclosure == "minimal" else [u for _, u in executions])


class HungPlanner(FakeModel):
    """Executes like the others; never returns from a planning call (a hung planner)."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        if json_schema is not None:
            await trio.sleep_forever()
        return await super().chat(messages, json_schema=json_schema)


async def _ask_with_hung_planners(plan_timeout: str) -> tuple[dict, float]:
    """Three chains on two hung planners and one working one."""
    async with swarm([HungPlanner("h0"), HungPlanner("h1"), FakeModel("ok")]) as (_, nodes):
        for node in nodes:
            node.tasks.plan_timeout = plan_timeout
        begun = trio.current_time()
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, max_steps=3, adaptive=False, deadline_s=300))
        return trace, trio.current_time() - begun


async def test_hung_planners_are_cut_at_their_adaptive_limit_not_the_deadline(autojump_clock) -> None:
    trace, took_s = await _ask_with_hung_planners("adaptive")
    assert trace["answer"] == "10"
    cut = [c for c in trace["chains"] if not c["ok"]]
    assert len(cut) == 2 and all(c["error"].startswith(PLAN_TIMEOUT_ERROR) for c in cut)
    assert all(c["rtt_ms"] == pytest.approx(PLAN_FLOOR_S * 1000, rel=0.01) for c in cut), \
        "the working chain's round trip tightened the hung ones to the floor"
    assert took_s < 300 / 2


async def test_without_a_planner_limit_hung_planners_hold_the_question_to_the_deadline(autojump_clock) -> None:
    trace, took_s = await _ask_with_hung_planners("off")
    assert trace["answer"] == "10" and took_s >= 300


class FirstPlanHangs(FakeModel):
    """Its first planning call never returns (a planner stuck on one question); later ones work."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.plans = 0

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        if json_schema is not None:
            self.plans += 1
            if self.plans == 1:
                await trio.sleep_forever()
        return await super().chat(messages, json_schema=json_schema)


async def test_a_chain_of_another_question_tightens_a_hung_planners_limit(autojump_clock) -> None:
    """Question a's only planner hangs on it (no limit: nothing observed yet and no backup planner); question
    b, asked a second later at the same initiator, comes back at once, and its round trip cuts a at the floor."""
    async with swarm([None, FirstPlanHangs("p")]) as (_, nodes):
        begun = trio.current_time()
        failed: list[TaskFailed] = []

        async def ask_a() -> None:
            with pytest.raises(TaskFailed) as raised:
                await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=300), task_id="a")
            failed.append(raised.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_a)
            await trio.sleep(1)
            trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=300), task_id="b")
            assert trace["answer"] == "10"
        (chain,) = failed[0].trace["chains"]
        assert chain["error"].startswith(PLAN_TIMEOUT_ERROR)
        assert chain["rtt_ms"] == pytest.approx(PLAN_FLOOR_S * 1000, rel=0.01), "not half the deadline (150 s)"
        assert trio.current_time() - begun < 300 / 4
