"""The distributed pipeline (planners -> beacon-selected executors -> weighted vote) on the
memory engine under virtual time, with scripted models."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from symphony.errors import PeerUnreachable
from symphony.ledger import GossipConfig, LedgerConfig
from symphony.llm.base import Completion, ModelError
from symphony.node.runtime import AgentProfile, AgentRuntime, SimulatedAgent, open_simulated_agents
from symphony.pipeline.executor import STEP_MAX_TOKENS
from symphony.pipeline.service import TASK_PROTOCOL, AskOptions, TaskFailed
from symphony.protocol.envelope import seal
from symphony.protocol.messages import Task
from symphony.transport.memory import LinkModel, MemoryNetwork
from tests.conftest import identity

EPOCH = 1_700_000_000.0
QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"


def clock() -> float:
    return EPOCH + trio.current_time()


class FakeModel:
    """A test double: plans two steps and answers each step from a table (or fails on cue)."""

    supports_json_schema = True

    def __init__(self, name: str, final: str = "10", *, broken: bool = False, delay: float = 0.1) -> None:
        self.name = name
        self.final = final
        self.broken = broken
        self.delay = delay
        self.calls = 0

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        self.calls += 1
        await trio.sleep(self.delay)
        if self.broken:
            raise ModelError(f"{self.name} is broken")
        user = messages[-1]["content"]
        if json_schema is not None:
            text = json.dumps({"steps": [{"question": "How many apples are in the boxes?"},
                                         {"question": "How many apples are left after eating 2?"}]})
        elif "Step:" in user and "in the boxes" in user.split("Step:")[-1]:
            text = "3 * 4 = 12. \\boxed{12}"
        else:
            text = f"12 - 2 = {self.final}. \\boxed{{{self.final}}}"
        return Completion(text=text, prompt_tokens=50, completion_tokens=10, latency_s=self.delay, model=self.name)

    async def aclose(self) -> None:
        pass


class FirstCallsFail(FakeModel):
    """Plans like the others; the first ``failures[0]`` sub-task calls across all such models fail."""

    def __init__(self, name: str, failures: list[int]) -> None:
        super().__init__(name)
        self.failures = failures

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        if json_schema is None and self.failures[0] > 0:
            self.failures[0] -= 1
            raise ModelError(f"{self.name} fails this sub-task")
        return await super().chat(messages, json_schema=json_schema)


class CutSteps(FakeModel):
    """Plans like the others, but its intermediate step answers are cut at the token budget before
    any boxed result, as a rambling small model's are."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        done = await super().chat(messages, json_schema=json_schema)
        if json_schema is None and "in the boxes" in messages[-1]["content"].split("Step:")[-1]:
            return Completion(text="First, each box holds 4 apples.\n2. **Multiply the", prompt_tokens=50,
                              completion_tokens=max_tokens, latency_s=self.delay, model=self.name, truncated=True)
        return done


@asynccontextmanager
async def swarm(models: list[FakeModel | None]) -> AsyncIterator[tuple[MemoryNetwork, list[AgentRuntime]]]:
    net = MemoryNetwork(link=LinkModel(latency_s=0.002), rng=random.Random(3))
    specs = [SimulatedAgent(identity(n), model, AgentProfile(name=f"n{n}", tags=("math",)))
             for n, model in enumerate(models)]
    async with open_simulated_agents(
        net, specs, clock=clock, ledger_config=LedgerConfig(heartbeat_interval_s=1.0),
        gossip_config=GossipConfig(anti_entropy_interval_s=1.0, target_degree=4),
    ) as runtimes:
        yield net, runtimes


async def test_three_chains_vote_the_answer(autojump_clock) -> None:
    """3 CoTs over 5 agents (all at once: adaptive chains off): every chain plans 2 steps on beacon-chosen
    executors; the vote says 10."""
    async with swarm([FakeModel(f"m{n}") for n in range(5)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, max_steps=3, adaptive=False, deadline_s=60))
    assert trace["answer"] == "10"
    assert len(trace["chains"]) == 3 and all(c["ok"] for c in trace["chains"])
    assert len({c["planner"] for c in trace["chains"]}) == 3, "k distinct planners"
    for chain in trace["chains"]:
        steps = chain["trace"]["steps"]
        assert [s["answer"] for s in steps] == ["12", "10"]
        assert all(s["executor"] in {r.agent_id for r in nodes} for s in steps)
        assert chain["weight"] == pytest.approx(sum(s["score"] for s in steps) / 2)
    assert trace["vote"][0]["count"] == 3
    assert trace["prompt_tokens"] == 3 * 3 * 50, "1 plan + 2 steps per chain, 50 prompt tokens each"


async def test_broken_executor_falls_back_to_a_backup(autojump_clock) -> None:
    """Executors whose model fails are skipped for the next beacon candidate; the answer survives."""
    models = [FakeModel("ok0"), FakeModel("bad1", broken=True), FakeModel("bad2", broken=True), FakeModel("ok3")]
    async with swarm(models) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=2, deadline_s=60))
    assert trace["answer"] == "10"
    attempts = [a for c in trace["chains"] for s in c["trace"].get("steps", []) for a in s["attempts"]]
    broken = {nodes[1].agent_id, nodes[2].agent_id}
    assert all(not a["ok"] for a in attempts if a["executor"] in broken)
    assert any(c["ok"] for c in trace["chains"])


async def test_cut_step_goes_to_a_backup_executor(autojump_clock) -> None:
    """A step cut at its budget with no result is not passed on: a backup executor redoes it."""
    models = [FakeModel("ok0"), CutSteps("cut1"), CutSteps("cut2"), FakeModel("ok3")]
    async with swarm(models) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=2, max_steps=3, deadline_s=60))
    assert trace["answer"] == "10"
    cut = {nodes[1].agent_id, nodes[2].agent_id}
    first_steps = [s for c in trace["chains"] for s in c["trace"].get("steps", [])[:1]]
    assert all(s["answer"] == "12" for s in first_steps), "no chain built on a cut step"
    refused = [a for s in first_steps for a in s["attempts"] if a["executor"] in cut]
    assert refused and all(not a["ok"] and a["error"] == "truncated" for a in refused)


async def test_no_model_anywhere_is_a_clear_failure(autojump_clock) -> None:
    async with swarm([None, None]) as (_, nodes):
        with pytest.raises(TaskFailed, match="no available planner"):
            await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, deadline_s=10))


async def test_retried_task_is_idempotent(autojump_clock) -> None:
    """The same (sender, task_id) runs once; a retry gets the stored result without new model calls."""
    models = [FakeModel("a"), FakeModel("b")]
    async with swarm(models) as (_, nodes):
        task = Task(task_id="t-1/s0", role="execute", question="How many apples are in the boxes?",
                    background=QUESTION, answer_kind="number", final=False, deadline_ms=int((clock() + 30) * 1000))
        first = await nodes[0].tasks._send(nodes[1].agent_id, task)
        second = await nodes[0].tasks._send(nodes[1].agent_id, task)
    assert first.ok and first == second
    assert models[1].calls == 1


async def test_replayed_or_forged_task_is_refused(autojump_clock) -> None:
    models = [FakeModel("a"), FakeModel("b")]
    async with swarm(models) as (_, nodes):
        task = Task(task_id="t-2", role="execute", question="q", deadline_ms=int((clock() + 30) * 1000))
        envelope = seal(identity(0), "task", task.model_dump(mode="json"), now_ms=int(clock() * 1000)).to_bytes()
        await nodes[0].transport.request(nodes[1].agent_id, TASK_PROTOCOL, envelope, timeout=5)
        with pytest.raises(PeerUnreachable):
            await nodes[0].transport.request(nodes[1].agent_id, TASK_PROTOCOL, envelope, timeout=5)
        forged = seal(identity(7), "task", task.model_dump(mode="json"), now_ms=int(clock() * 1000)).to_bytes()
        with pytest.raises(PeerUnreachable):
            await nodes[0].transport.request(nodes[1].agent_id, TASK_PROTOCOL, forged, timeout=5)
    assert models[1].calls == 1


async def test_lost_planner_is_replaced_by_a_backup(autojump_clock) -> None:
    """A planner that crashes mid-chain fails fast; the initiator re-runs that chain on a backup planner."""
    async with swarm([FakeModel(f"m{n}", delay=1.0) for n in range(5)]) as (net, nodes):
        result: dict[str, dict] = {}

        async def ask() -> None:
            result["trace"] = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=2, deadline_s=120))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            with trio.fail_after(10):
                while not (busy := [r for r in nodes[1:] if r.tasks.load.active > 0]):
                    await trio.sleep(0.01)
            victim = busy[0].agent_id
            net.kill(victim)
    trace = result["trace"]
    assert trace["answer"] == "10"
    lost = [c for c in trace["chains"] if c["planner"] == victim]
    assert lost and not lost[0]["ok"] and "Unreachable" in lost[0]["error"]
    replacement = [c for c in trace["chains"] if c["index"] == lost[0]["index"] and c["ok"]]
    assert replacement and replacement[0]["planner"] != victim


async def test_a_chain_beacons_once_and_a_failed_step_beacons_again_without_those_tried(autojump_clock) -> None:
    """One beacon round serves every step of a chain; when all its candidates for a step fail, a fresh
    single-requirement round runs that leaves out the executors already tried."""
    failures = [2]  # L = 1 candidate in the chain's round, one in the next: the first step exhausts both
    models: list[FakeModel | None] = [FirstCallsFail(f"m{n}", failures) for n in range(6)]
    async with swarm(models) as (_, nodes):
        rounds: list[dict[str, object]] = []
        for node in nodes:
            node.tasks.on_event = lambda kind, fields: rounds.append(fields) if kind == "beacon_round" else None
        trace = await nodes[5].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, top_l=1, deadline_s=60))
    assert trace["answer"] == "10"
    execution = [r for r in rounds if r["role"] == "execution"]
    assert execution[0]["steps"] == 2, "the chain's first round carries both sub-tasks"
    assert any(r["steps"] == 1 for r in execution), "a failed step beaconed again on its own"
    for step in trace["chains"][0]["trace"]["steps"]:
        executors = [a["executor"] for a in step["attempts"]]
        assert len(executors) == len(set(executors)), "no executor is tried twice for one step"


async def test_executor_result_carries_raw_model_text_only_when_invalid(autojump_clock) -> None:
    """A valid step answer travels without the model's text; an invalid one brings it, to explain the failure."""
    async with swarm([FakeModel("m0"), FakeModel("m1")]) as (_, nodes):
        good = Task(task_id="w/s0", role="execute", question="How many apples are in the boxes?", background=QUESTION, answer_kind="number",
                    deadline_ms=int(clock() * 1000) + 60_000)
        ok = await nodes[0].tasks._send(nodes[1].agent_id, good)
        nodes[1].tasks.model = Unboxed("m1")
        bad = await nodes[0].tasks._send(nodes[1].agent_id, good.model_copy(update={"task_id": "w/s1"}))
    assert ok.ok and "raw" not in ok.trace
    assert not bad.ok and bad.trace["raw"] == "I am not sure."


class Unboxed(FakeModel):
    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        return Completion(text="I am not sure.", prompt_tokens=5, completion_tokens=5, latency_s=0.1, model=self.name)


class PlanningFails(FakeModel):
    """Answers steps like the others; every planning (JSON) call fails after spending 20 + 7 tokens,
    as a server that rejects the request's shape after reading it would."""

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None) -> Completion:
        if json_schema is not None:
            raise ModelError(f"{self.name} cannot plan", prompt_tokens=20, completion_tokens=7)
        return await super().chat(messages)


async def test_failed_planning_is_in_usage_and_in_the_degraded_list(autojump_clock) -> None:
    """Planners that could not plan fall back to one step: that is reported per chain, the identical
    one-step solves are reported collapsed, and the failed planning calls' tokens are in the usage."""
    async with swarm([PlanningFails(f"m{n}") for n in range(4)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=2, max_steps=3, deadline_s=60))
    assert trace["answer"] == "10"
    assert (trace["prompt_tokens"], trace["completion_tokens"]) == (2 * (20 + 50), 2 * (7 + 10))
    kinds = sorted((d["kind"], d.get("chain")) for d in trace["degraded"])
    assert kinds == [("chains_collapsed", None), ("plan_fallback", 0), ("plan_fallback", 1)]


async def test_a_step_abandoned_at_its_hop_timeout_is_still_charged(autojump_clock) -> None:
    """An executor past its hop limit goes on spending (its model server may not stop): the attempt is
    charged its prompt and a full answer, so the task's usage is not short of what the network spent."""
    async with swarm([FakeModel(f"m{n}", delay=5.0) for n in range(3)]) as (_, nodes):
        with pytest.raises(TaskFailed) as failed:
            await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=60, hop_timeout=1.0,
                                                          replans=0))
    trace = failed.value.trace
    attempts = [a for c in trace["chains"] for s in c["trace"].get("steps", []) for a in s["attempts"]]
    abandoned = [a for a in attempts if a.get("error", "").startswith("hop timeout")]
    assert abandoned, "the slow executors were cut at their hop limit"
    plans = len(trace["chains"])  # each planner's 10 completion tokens
    assert trace["completion_tokens"] == plans * 10 + len(abandoned) * STEP_MAX_TOKENS
