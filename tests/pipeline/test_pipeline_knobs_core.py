"""The fault knobs' pure parts: hop limits, latency book, disclosure marks, latency budget ranking,
the priority gate, and the options' validation at the API edge and on the wire."""

from __future__ import annotations

import pytest
import trio
from pydantic import ValidationError

from symphony.api.http import OptionsBody
from symphony.beacon.ranking import Candidate, Selection, select
from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.chain import (
    HOP_CAP_S,
    HOP_COLD_S,
    HOP_FACTOR,
    HOP_FLOOR_S,
    HOP_TIMEOUT_ERROR,
    ChainDriver,
    LatencyBook,
    SendStep,
    StepSettled,
    hop_timeout_s,
)
from symphony.pipeline.gate import PriorityGate
from symphony.pipeline.initiator import PLAN_FACTOR, PLAN_FLOOR_S, PLAN_SHARE, InitiatorDriver, plan_timeout_s
from symphony.pipeline.planner import NEEDS_PROBLEM_MARK, decomposition_messages, replan_messages, split_marks
from symphony.pipeline.trace import ChainRecord
from symphony.protocol.messages import Task, TaskKnobs, TaskResult


def _c(agent: str, latency_ms: float, score: float = 0.5) -> Candidate:
    return Candidate(agent_id=agent, score=score, expected_latency_ms=latency_ms)


def test_adaptive_hop_is_k_times_expected_latency_within_floor_and_cap() -> None:
    assert hop_timeout_s("adaptive", _c("a", 1000)) == HOP_COLD_S, "never seen answer here: the cold floor"
    assert hop_timeout_s("adaptive", _c("a", 20_000)) == HOP_FACTOR * 20
    assert hop_timeout_s("adaptive", _c("a", 1000), observed_p95_ms=2000) == HOP_FLOOR_S, "seen: the floor"
    assert hop_timeout_s("adaptive", _c("a", 10_000), observed_p95_ms=2000) == HOP_FACTOR * 10
    assert hop_timeout_s("adaptive", _c("a", 1000), observed_p95_ms=8000) == HOP_FACTOR * 8, "own p95 when larger"
    assert hop_timeout_s("adaptive", _c("a", 1e7)) == HOP_CAP_S


def test_each_timed_out_hop_doubles_the_next_up_to_the_cap() -> None:
    assert [hop_timeout_s("adaptive", _c("a", 0), strikes=n, observed_p95_ms=1) for n in range(4)] == [
        15.0, 30.0, 60.0, HOP_CAP_S]
    assert [hop_timeout_s("adaptive", _c("a", 0), strikes=n) for n in range(2)] == [HOP_COLD_S, HOP_CAP_S]


def test_fixed_and_off_hop_settings() -> None:
    assert hop_timeout_s(7.5, _c("a", 1e6)) == 7.5
    assert hop_timeout_s("off", _c("a", 1000)) is None


def test_latency_book_p95_of_recent_round_trips() -> None:
    book = LatencyBook(keep=20)
    for ms in range(1, 101):
        book.observe("a", float(ms))
    assert book.p95_ms("a") == 100.0 and book.p95_ms("never") == 0.0
    book.observe("b", 5.0)
    assert book.p95_ms("b") == 5.0


def test_split_marks_strips_the_needs_problem_mark() -> None:
    steps, marks = split_marks((f"{NEEDS_PROBLEM_MARK} Who is the subject?", "What is 3 * 4?"))
    assert steps == ("Who is the subject?", "What is 3 * 4?") and marks == (True, False)


def test_minimal_plan_prompt_asks_for_self_contained_marked_steps() -> None:
    minimal = decomposition_messages("Q?", answer_kind="number", minimal=True)[0]["content"]
    full = decomposition_messages("Q?", answer_kind="number")[0]["content"]
    assert NEEDS_PROBLEM_MARK in minimal and NEEDS_PROBLEM_MARK not in full


def test_replan_prompt_names_the_failure_and_what_is_done() -> None:
    user = replan_messages("Q?", failed="Step two?", error="model down", done=[("Step one?", "12")],
                           answer_kind="number")[1]["content"]
    assert "Step one? -> 12" in user and "This step failed (model down): Step two?" in user


def test_latency_budget_ranks_over_budget_candidates_last() -> None:
    candidates = [_c("slow", 9000, score=0.9), _c("fast", 100, score=0.5), _c("mid", 900, score=0.7)]
    assert [c.agent_id for c in select(candidates).ordered] == ["slow", "mid", "fast"]
    assert [c.agent_id for c in select(candidates, latency_budget_ms=1000).ordered] == ["mid", "fast", "slow"]


async def test_gate_serves_waiters_by_priority_then_arrival(autojump_clock) -> None:
    gate, order = PriorityGate(slots=1), []

    async def hold(name: str, priority: int) -> None:
        async with gate.slot(priority):
            order.append(name)
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for name, priority in (("first", 0), ("low", 0), ("high", 5), ("low2", 0), ("top", 9)):
            nursery.start_soon(hold, name, priority)
            await trio.sleep(0.01)
    assert order == ["first", "top", "high", "low", "low2"]


async def test_a_cancelled_waiter_leaves_the_queue_and_loses_no_slot(autojump_clock) -> None:
    gate = PriorityGate(slots=1)
    async with gate.slot():
        with trio.move_on_after(1):
            async with gate.slot(9):
                pytest.fail("admitted while the only slot was held")
        assert gate.waiting == 0
    with trio.fail_after(1):
        async with gate.slot():
            pass


async def test_gate_queue_counts_calls_holding_and_awaiting_a_slot(autojump_clock) -> None:
    """What a beacon reply reports as this node's queue (issue 19): held slots plus waiters, back to 0."""
    gate, seen = PriorityGate(slots=2), []

    async def hold() -> None:
        async with gate.slot():
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(hold)
        await trio.sleep(0.5)
        seen.append((gate.queue, gate.waiting))
    assert seen == [(3, 1)] and gate.queue == 0


def test_options_body_refuses_what_no_node_can_honour() -> None:
    with pytest.raises(ValidationError, match="redundancy"):
        OptionsBody(redundancy=3)
    with pytest.raises(ValidationError, match="hop_timeout"):
        OptionsBody(hop_timeout="soon")
    with pytest.raises(ValidationError, match="disclosure"):
        OptionsBody(disclosure="none")
    options = OptionsBody(hop_timeout=20, redundancy=2, priority=3, disclosure="minimal").options()
    assert options.knobs() == TaskKnobs(hop_timeout=20.0, redundancy=2, priority=3, disclosure="minimal")
    assert OptionsBody().options().knobs() is None, "defaults add nothing to the Task"


def test_task_knobs_round_trip_on_the_wire() -> None:
    task = Task(task_id="t", role="plan", question="Q?", deadline_ms=1,
                knobs=TaskKnobs(hop_timeout="adaptive", replans=0, latency_budget_ms=500))
    assert Task.model_validate(task.wire()) == task
    with pytest.raises(ValidationError):
        Task.model_validate({**task.wire(), "knobs": {"redundancy": 5}})


def test_planner_limit_scales_observed_chains_within_the_floor() -> None:
    assert plan_timeout_s("adaptive", observed_ms=20_000, remaining_s=300) == PLAN_FACTOR * 20
    assert plan_timeout_s("adaptive", observed_ms=1_000, remaining_s=300) == PLAN_FLOOR_S
    assert plan_timeout_s("adaptive", observed_ms=0, remaining_s=300) == PLAN_SHARE * 300, "no history: a share"
    assert plan_timeout_s("adaptive", observed_ms=0, remaining_s=300, backup=False) is None, "a share for nobody"
    assert plan_timeout_s("adaptive", observed_ms=20_000, remaining_s=300, backup=False) == PLAN_FACTOR * 20
    assert plan_timeout_s("adaptive", observed_ms=1_000, remaining_s=300, backup=False) == PLAN_FLOOR_S
    assert plan_timeout_s(45.0, observed_ms=20_000, remaining_s=300) == 45.0
    assert plan_timeout_s("off", observed_ms=20_000, remaining_s=300) is None


def _record(index: int, planner: str, rtt_ms: float, *, ok: bool = True) -> ChainRecord:
    result = TaskResult(task_id=f"t/c{index}", ok=ok, answer="10" if ok else "", error="" if ok else "boom")
    return ChainRecord(index=index, planner=planner, planner_score=0.5, rtt_ms=rtt_ms, result=result)


def _planners(driver: InitiatorDriver, count: int) -> None:
    """Feed ``driver`` a planner round of ``count`` candidates and take its first chains."""
    ranked = tuple(Candidate(agent_id=f"p{n}", score=0.5) for n in range(count))
    driver.planners_found(BeaconOutcome(Selection(ranked[:1], ranked[1:])), now_ms=0)
    driver.first_planners()


def test_a_returned_chain_tightens_its_siblings_and_later_questions() -> None:
    book = LatencyBook()
    driver = InitiatorDriver(task_id="t", question="q", kind="number", cots=3, deadline_ms=300_000,
                             plan_timeout="adaptive", chain_latencies=book)
    _planners(driver, 4)
    assert driver.plan_limit_s("p1", now_ms=0) == 150.0, "half the time left, for the backup planner p3"
    driver.chain_returned(_record(0, "p0", 10_000), now_ms=10_000)
    assert driver.plan_limit_s("p1", now_ms=10_000) == PLAN_FACTOR * 10, "the sibling's round trip sets the limit"
    driver.chain_returned(_record(1, "p1", 90_000, ok=False), now_ms=90_000)
    later = InitiatorDriver(task_id="u", question="q", kind="number", cots=3, deadline_ms=300_000,
                            plan_timeout="adaptive", chain_latencies=book)
    assert later.plan_limit_s("p2", now_ms=0) == PLAN_FACTOR * 10, "failed chains are not observed; ok ones persist"


def test_with_no_backup_planner_an_unobserved_chain_keeps_the_deadline() -> None:
    """Cutting a chain at half the time left only helps a backup planner; with none queued the chain
    keeps its time (the demo's 2-node swarm: both planners cut at 1 s of a 2 s deadline, then nothing)."""
    driver = InitiatorDriver(task_id="t", question="q", kind="number", cots=3, deadline_ms=300_000,
                             plan_timeout="adaptive", chain_latencies=LatencyBook())
    _planners(driver, 2)
    assert driver.plan_limit_s("p0", now_ms=0) is None
    driver.chain_returned(_record(0, "p0", 10_000), now_ms=10_000)
    assert driver.plan_limit_s("p1", now_ms=10_000) == PLAN_FACTOR * 10, "an observed sibling still limits a hung one"


def test_a_cut_on_a_guessed_limit_is_no_offence_and_teaches_the_next_limit() -> None:
    """An executor this planner never timed is sent with a guessed limit (the cold floor, from its 1 s
    guess); the cut hop's round trip is a lower bound the book keeps, so later steps try it after the
    others, and the next hop to it gets HOP_FACTOR x that and is no longer a guess: cutting that one is an offence."""
    slow, backup = _c("slow", 1000, score=0.9), _c("backup", 1000, score=0.5)

    def beacon(*ranked: Candidate) -> BeaconOutcome:
        return BeaconOutcome(Selection(ranked[:1], ranked[1:]), contacted=2, replied=2, elapsed_s=0.004, query_s=0.001)

    chain = ChainDriver(("Step one?", "Step two?"), kind="number", deadline_ms=10_000_000, hop_timeout="adaptive")
    chain.executors_selected([beacon(slow, backup), beacon(slow, backup)], waited_ms=1.0)
    first = chain.next_action(now_ms=0)
    assert isinstance(first, SendStep) and first.candidate == slow and first.guessed
    assert first.timeout_s == HOP_COLD_S
    cut = TaskResult(task_id="t/s0", ok=False, error=f"{HOP_TIMEOUT_ERROR} after 60.0 s", latency_ms=0.0)
    chain.step_result(slow, cut, rtt_ms=HOP_COLD_S * 1000, index=0)
    retry = chain.next_action(now_ms=15_000)
    assert isinstance(retry, SendStep) and retry.candidate == backup and retry.guessed
    chain.step_result(backup, TaskResult(task_id="t/s0", ok=True, answer="12"), rtt_ms=2000.0, index=0)
    assert isinstance(chain.next_action(now_ms=17_000), StepSettled)
    second = chain.next_action(now_ms=17_000)
    assert isinstance(second, SendStep) and second.candidate == backup, "the executor cut in step 1 goes last"
    chain.step_result(backup, TaskResult(task_id="t/s1", ok=False, error="truncated"), rtt_ms=2000.0, index=1)
    last = chain.next_action(now_ms=19_000)
    assert isinstance(last, SendStep) and last.candidate == slow
    assert not last.guessed and last.timeout_s == min(HOP_CAP_S, HOP_FACTOR * HOP_COLD_S)


def test_an_executors_reported_latency_is_its_first_call_then_an_average() -> None:
    """The 1 s guess lasts only until the first call: a model whose calls take 16 s (a shared server's
    queue) reports 16 s at once, so planners' hop limits fit it from its second beacon reply on."""
    from symphony.pipeline.service import _Load

    load = _Load()
    assert load.expected_ms == 1000.0, "a 1 s guess before any call"
    load.observe(16_000.0)
    assert load.expected_ms == 16_000.0
    load.observe(6_000.0)
    assert load.expected_ms == 14_000.0
