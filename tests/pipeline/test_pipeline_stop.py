"""A chain its initiator stops waiting for (the planner limit, issue 17) is stopped at its planner and
its cost still counted (issue 16: usage counts every token). Memory network, virtual time."""

from __future__ import annotations

import pytest
import trio

from symphony.errors import TransportError
from symphony.node.runtime import AgentRuntime
from symphony.pipeline.chain import HOP_TIMEOUT_ERROR
from symphony.pipeline.executor import STEP_MAX_TOKENS
from symphony.pipeline.initiator import PLAN_TIMEOUT_ERROR
from symphony.pipeline.service import (
    ESTIMATED_NOTE,
    STOP_PROTOCOL,
    STOPPED_ERROR,
    TASK_PROTOCOL,
    AskOptions,
    TaskFailed,
)
from symphony.protocol.envelope import seal
from symphony.protocol.messages import Task, TaskResult
from tests.pipeline.test_pipeline_knobs import HungExecutor, tagged_swarm
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, clock, swarm

PLAN_LIMIT_S = 20.0


async def send(node: AgentRuntime, to: str, task: Task, protocol: str = STOP_PROTOCOL) -> TaskResult:
    """``task``, signed by ``node``, on ``protocol`` to ``to``; its reply."""
    envelope = seal(node.identity, "task", task.wire(), now_ms=int(clock() * 1000))
    raw = await node.transport.request(to, protocol, envelope.to_bytes(), timeout=10)
    return node.tasks._check_result(raw, to, task.task_id)


async def test_a_chain_cut_at_its_planner_limit_is_stopped_and_its_tokens_counted(autojump_clock) -> None:
    """The only planner plans (50 + 10 tokens) and sends its first step to an executor that never answers
    (no hop limit); the initiator cuts the chain at 20 s and stops it. The cut chain reports the planning
    call and the abandoned step (a full answer, estimated); before, it reported 0. The planner stopped."""
    async with swarm([None, HungExecutor("p")]) as (_, nodes):
        nodes[0].tasks.plan_timeout = PLAN_LIMIT_S
        stopped: list[dict] = []
        nodes[1].tasks.on_event = lambda kind, fields: stopped.append(fields) if kind == "task_stopped" else None
        with pytest.raises(TaskFailed) as failed:
            await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, hop_timeout="off", deadline_s=300),
                                     task_id="q")
        (chain,) = failed.value.trace["chains"]
        assert chain["error"].startswith(PLAN_TIMEOUT_ERROR)
        assert chain["completion_tokens"] == 10 + STEP_MAX_TOKENS
        assert chain["prompt_tokens"] > 50
        assert failed.value.trace["completion_tokens"] == chain["completion_tokens"]
        assert [s["task"] for s in stopped] == ["q/c0"]
        assert nodes[1].tasks._done[("", "q", QUESTION)].error == STOPPED_ERROR


async def test_a_stranger_cannot_stop_another_initiators_chain(autojump_clock) -> None:
    """A third node sends a stop for a chain it never asked for, naming its task ID and question: refused,
    and the chain goes on to its answer."""
    async with swarm([None, FakeModel("p", delay=5.0), None]) as (_, nodes):
        async with trio.open_nursery() as nursery:
            answers: list[str] = []

            async def ask() -> None:
                trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=300),
                                                 task_id="q")
                answers.append(trace["answer"])

            nursery.start_soon(ask)
            while ("", "q", QUESTION) not in nodes[1].tasks._work:  # the planner is working on the chain
                await trio.sleep(0.01)
            stop = Task(task_id="q/c0", role="stop", question=QUESTION, deadline_ms=int((clock() + 60) * 1000))
            await nodes[2].transport.connect(nodes[1].transport.listen_addrs()[0])
            reply = await send(nodes[2], nodes[1].agent_id, stop)
            unknown = await send(nodes[2], nodes[1].agent_id, stop.model_copy(update={"task_id": "other/c0"}))
            with pytest.raises(TransportError):  # refused: a stop goes to its own protocol
                await send(nodes[2], nodes[1].agent_id, stop, protocol=TASK_PROTOCOL)
        assert not reply.ok and "no task of yours" in reply.error
        assert answers == ["10"]
        assert unknown.ok and unknown.prompt_tokens == unknown.completion_tokens == 0, "it never ran: it cost nothing"
        done = await send(nodes[0], nodes[1].agent_id, stop.model_copy(update={"deadline_ms": int((clock() + 60) * 1000)}))
        assert done.ok and done.completion_tokens > 0, "stopping finished work: what it spent"


async def test_a_step_cut_at_its_hop_limit_is_stopped_at_its_executor(autojump_clock) -> None:
    """A planner-only node sends the one step to the only executor, whose model never answers; cut at the
    5 s hop limit, the step is stopped there (its model call cancelled) and charged what the executor
    counted for it: the call out, a full answer."""
    async with tagged_swarm([FakeModel("p"), HungExecutor("e")], ["math", "math"],
                            roles=[("planner",), ("executor",)]) as nodes:
        stopped: list[dict] = []
        nodes[1].tasks.on_event = lambda kind, fields: stopped.append(fields) if kind == "task_stopped" else None
        with pytest.raises(TaskFailed) as failed:
            await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=1, hop_timeout=5.0, replans=0, deadline_s=60),
                                     task_id="q")
        (chain,) = failed.value.trace["chains"]
        (step,) = chain["trace"]["steps"]
        assert [a["executor"] for a in step["attempts"]] == [nodes[1].agent_id]
        assert chain["completion_tokens"] == STEP_MAX_TOKENS and chain["prompt_tokens"] > 0
        assert [s["task"] for s in stopped] == ["q/c0/s0"]
        assert nodes[1].tasks.load.active == 0, "the executor is no longer working on it"


async def test_a_step_whose_executor_does_not_answer_the_stop_is_charged_an_estimate_and_says_so(
        autojump_clock) -> None:
    """As above, but the executor never answers stops: the step is charged the planner's guess (its prompt and a
    full answer) and its attempt's error says the usage is an estimate; an answered stop adds no such note."""
    async def never(peer: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    for answers_stops in (True, False):
        async with tagged_swarm([FakeModel("p"), HungExecutor("e")], ["math", "math"],
                                roles=[("planner",), ("executor",)]) as nodes:
            if not answers_stops:
                nodes[1].transport.set_handler(STOP_PROTOCOL, never)
            with pytest.raises(TaskFailed) as failed:
                await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=1, hop_timeout=5.0, replans=0,
                                                              deadline_s=60), task_id="q")
        (attempt,) = failed.value.trace["chains"][0]["trace"]["steps"][0]["attempts"]
        assert attempt["error"].startswith(HOP_TIMEOUT_ERROR)
        assert attempt["error"].endswith(ESTIMATED_NOTE) is not answers_stops
