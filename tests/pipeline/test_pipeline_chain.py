"""The planner's chain driver on its own: decisions fed by events, no network, no clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from symphony.beacon.ranking import Candidate, Selection
from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.chain import (
    DECLINED_ERROR,
    MAX_STEP_ROUNDS,
    BeaconStep,
    ChainDone,
    ChainDriver,
    SendStep,
    StepSettled,
)
from symphony.protocol.messages import TaskResult

STEPS = ("How many apples are in the boxes?", "How many are left?")
DEADLINE = 10_000


def outcome(*agents: str, replied: int | None = None, elapsed_s: float = 0.004) -> BeaconOutcome:
    """A beacon round that ranked ``agents`` in this order (scores descending)."""
    ranked = tuple(Candidate(agent, score=round(0.9 - 0.1 * n, 2)) for n, agent in enumerate(agents))
    return BeaconOutcome(Selection(ranked[:1], ranked[1:]), contacted=len(agents),
                         replied=len(agents) if replied is None else replied, elapsed_s=elapsed_s, query_s=0.001)


def ok(answer: str) -> TaskResult:
    return TaskResult(task_id="t/s0", ok=True, answer=answer, prompt_tokens=5, completion_tokens=2, latency_ms=100.0,
                      trace={"model_wall_ms": 120.0})


def failed(error: str = "truncated") -> TaskResult:
    return TaskResult(task_id="t/s0", ok=False, error=error, latency_ms=50.0)


def driver(*rounds: BeaconOutcome, redundancy: int = 1, steps: tuple[str, ...] = STEPS) -> ChainDriver:
    chain = ChainDriver(steps, kind="number", deadline_ms=DEADLINE, redundancy=redundancy)
    chain.executors_selected(rounds, waited_ms=7.5)
    return chain


def send(chain: ChainDriver, *, now_ms: int = 0) -> SendStep:
    action = chain.next_action(now_ms=now_ms)
    assert isinstance(action, SendStep), action
    return action


def settled(chain: ChainDriver, *, now_ms: int = 0) -> StepSettled:
    action = chain.next_action(now_ms=now_ms)
    assert isinstance(action, StepSettled), action
    return action


def done(chain: ChainDriver) -> ChainDone:
    action = chain.next_action(now_ms=0)
    assert isinstance(action, ChainDone), action
    return action


def test_each_step_goes_to_its_first_candidate_with_the_earlier_answers() -> None:
    """Two steps on their primaries: the second carries the first's Q/A; the chain weight is the mean score."""
    chain = driver(outcome("a", "b"), outcome("c", "d"))
    first = send(chain)
    assert (first.index, first.candidate.agent_id, first.previous, first.final) == (0, "a", (), False)
    chain.step_result(first.candidate, ok("12"), rtt_ms=110.0)
    assert settled(chain).step.executor == "a"
    second = send(chain)
    assert (second.candidate.agent_id, second.previous, second.final) == ("c", ((STEPS[0], "12"),), True)
    chain.step_result(second.candidate, ok("10"), rtt_ms=110.0)
    settled(chain)
    end = done(chain)
    assert (end.ok, end.answer, end.weight, end.error) == (True, "10", 0.9, "")
    assert (end.prompt_tokens, end.completion_tokens) == (10, 4)


def test_the_shared_round_is_charged_to_the_first_step_only() -> None:
    """The chain's one beacon round counts in step 1's beacon time; step 2 shows none."""
    chain = driver(outcome("a"), outcome("b"))
    for agent in ("a", "b"):
        action = send(chain)
        assert action.candidate.agent_id == agent
        chain.step_result(action.candidate, ok("1"), rtt_ms=1.0)
        settled(chain)
    steps = done(chain).steps
    assert (steps[0].beacon_ms, steps[0].spans.beacon_ms, steps[0].spans.query_ms) == (4.0, 7.5, 1.0)
    assert (steps[1].beacon_ms, steps[1].spans.beacon_ms, steps[1].candidates) == (0.0, 0.0, 1)
    assert steps[0].attempts[0].model_wall_ms == 120.0 and steps[0].attempts[0].rtt_ms == 1.0


def test_a_failed_candidate_hands_the_step_to_the_next_backup() -> None:
    chain = driver(outcome("a", "b"), redundancy=1, steps=STEPS[:1])
    chain.step_result(send(chain).candidate, failed(), rtt_ms=1.0)
    backup = send(chain)
    assert backup.candidate.agent_id == "b"
    chain.step_result(backup.candidate, ok("12"), rtt_ms=1.0)
    step = settled(chain).step
    assert (step.ok, step.executor, step.error, [a.ok for a in step.attempts]) == (True, "b", "", [False, True])


def declined() -> TaskResult:
    return failed(f"{DECLINED_ERROR}: 4 model calls for 4 slots")


def test_a_busy_executors_decline_moves_the_step_on_and_it_is_asked_again_only_when_no_one_else_is_left() -> None:
    """a and b decline (every slot taken): the step goes to c at once; when c fails too it insists on
    a, the best ranked of those that declined, before any fresh beacon round, and a's answer settles it."""
    chain = driver(outcome("a", "b", "c"), steps=STEPS[:1])
    for agent in ("a", "b"):
        action = send(chain)
        assert action.candidate.agent_id == agent
        chain.step_result(action.candidate, declined(), rtt_ms=1.0)
    third = send(chain)
    assert third.candidate.agent_id == "c"
    chain.step_result(third.candidate, failed(), rtt_ms=1.0)
    insisted = send(chain)
    assert insisted.candidate.agent_id == "a"
    chain.step_result(insisted.candidate, ok("12"), rtt_ms=1.0)
    step = settled(chain).step
    assert (step.ok, step.executor) == (True, "a")
    assert [(a.executor, a.ok) for a in step.attempts] == [("a", False), ("b", False), ("c", False), ("a", True)]


def test_an_executor_that_declines_again_after_we_insisted_has_failed_the_step() -> None:
    """A second decline (it should have taken the step) is a failure: the step does not loop on it."""
    chain = driver(outcome("a"), steps=STEPS[:1])
    chain.step_result(send(chain).candidate, declined(), rtt_ms=1.0)
    insisted = send(chain)
    assert insisted.candidate.agent_id == "a"
    chain.step_result(insisted.candidate, declined(), rtt_ms=1.0)
    again = chain.next_action(now_ms=0)
    assert isinstance(again, BeaconStep) and "a" in again.exclude


def test_a_declined_step_is_not_sent_again_past_the_deadline() -> None:
    """Insisting on a decliner is for a step that still has time: past the deadline it settles as failed."""
    chain = driver(outcome("a"), steps=STEPS[:1])
    chain.step_result(send(chain).candidate, declined(), rtt_ms=1.0)
    step = settled(chain, now_ms=DEADLINE).step
    assert not step.ok and [a.executor for a in step.attempts] == ["a"]


def test_exhausted_candidates_beacon_again_without_those_tried_then_give_up() -> None:
    """All candidates failed: a fresh round leaves them out; after the last round the chain fails."""
    chain = driver(outcome("a"), steps=STEPS[:1])
    chain.step_result(send(chain).candidate, failed(), rtt_ms=1.0)
    for attempt in range(MAX_STEP_ROUNDS - 1):
        again = chain.next_action(now_ms=0)
        assert isinstance(again, BeaconStep) and again.attempt == attempt
        assert "a" in again.exclude
        chain.step_beaconed(outcome("a", f"fresh{attempt}"), waited_ms=2.0)
        retry = send(chain)
        assert retry.candidate.agent_id == f"fresh{attempt}", "an executor already tried is skipped"
        chain.step_result(retry.candidate, failed("deadline passed"), rtt_ms=1.0)
    step = settled(chain).step
    assert not step.ok and step.error == "deadline passed" and len(step.attempts) == MAX_STEP_ROUNDS
    assert done(chain).error == "step 1 failed: deadline passed"


def test_past_the_deadline_a_step_stops_trying() -> None:
    chain = driver(outcome("a", "b"), steps=STEPS[:1])
    chain.step_result(send(chain).candidate, failed(), rtt_ms=1.0)
    step = settled(chain, now_ms=DEADLINE).step
    assert (step.ok, step.error, len(step.attempts)) == (False, "deadline passed", 1)


def test_redundancy_settles_on_two_agreeing_answers() -> None:
    """With redundancy 2 a second executor checks; agreement (same normalised answer) settles the step."""
    chain = driver(outcome("a", "b", "c"), redundancy=2, steps=STEPS[:1])
    chain.step_result(send(chain).candidate, ok("1,000"), rtt_ms=1.0)
    chain.step_result(send(chain).candidate, ok("1000"), rtt_ms=1.0)
    end = settled(chain)
    assert (end.step.executor, end.step.checked_by, end.step.answer) == ("a", ("b",), "1,000")
    assert [(v.agent_id, v.agreed) for v in end.verdicts] == [("a", True), ("b", True)]


def test_redundancy_disagreement_is_refereed_and_the_outvoted_executor_judged() -> None:
    chain = driver(outcome("a", "b", "c"), redundancy=2, steps=STEPS[:1])
    for answer in ("11", "10", "10"):
        chain.step_result(send(chain).candidate, ok(answer), rtt_ms=1.0)
    end = settled(chain)
    assert (end.step.answer, end.step.executor, end.step.checked_by) == ("10", "b", ("a", "c"))
    assert [(v.agent_id, v.agreed) for v in end.verdicts] == [("a", False), ("b", True), ("c", True)]


def test_redundancy_with_no_majority_keeps_the_first_answer_and_judges_nobody() -> None:
    chain = driver(outcome("a", "b"), redundancy=2, steps=STEPS[:1])
    for answer in ("11", "10"):
        chain.step_result(send(chain).candidate, ok(answer), rtt_ms=1.0)
    while isinstance(action := chain.next_action(now_ms=0), BeaconStep):  # nobody answers to referee
        chain.step_beaconed(outcome(), waited_ms=0.0)
    assert isinstance(action, StepSettled)
    assert (action.step.answer, action.step.executor, action.verdicts) == ("11", "a", ())


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, list[list[str]], list[tuple[str, str]]]:
    """A redundancy, the candidate lists beacon rounds return (repeats allowed), and executor outcomes
    (an answer, a failure or a busy executor's decline)."""
    agents = st.sampled_from("abcdef")
    rounds = draw(st.lists(st.lists(agents, max_size=5), min_size=8, max_size=8))
    kinds = st.sampled_from(["ok", "failed", "declined"])
    results = draw(st.lists(st.tuples(kinds, st.sampled_from(["1", "2", "1.0"])), min_size=40, max_size=40))
    return draw(st.sampled_from([1, 2])), rounds, results


@given(runs())
def test_a_step_never_repeats_an_executor_nor_exceeds_its_candidates(
    run: tuple[int, list[list[str]], list[tuple[str, str]]],
) -> None:
    """Whatever the beacons return and the executors answer, each step tries an executor at most once
    (twice when the first time it declined),
    tries no more executors than its rounds offered, uses at most MAX_STEP_ROUNDS rounds, stops asking once
    settled (one answer, or with redundancy two agreeing or three), and the chain ends."""
    redundancy, rounds, results = run
    pending = iter(rounds[2:])
    chain = driver(outcome(*rounds[0]), outcome(*rounds[1]), redundancy=redundancy)
    offered: dict[int, set[str]] = {0: set(rounds[0]), 1: set(rounds[1])}
    beacons = {0: 1, 1: 1}
    outcomes = iter(results)
    for _ in range(100):
        action = chain.next_action(now_ms=0)
        if isinstance(action, ChainDone):
            break
        if isinstance(action, SendStep):
            kind, answer = next(outcomes)
            result = ok(answer) if kind == "ok" else declined() if kind == "declined" else failed()
            chain.step_result(action.candidate, result, rtt_ms=1.0)
        elif isinstance(action, BeaconStep):
            fresh = next(pending, [])
            offered[action.index] |= set(fresh) - action.exclude
            beacons[action.index] += 1
            chain.step_beaconed(outcome(*fresh), waited_ms=1.0)
    else:
        raise AssertionError("the chain did not end")
    for index, step in enumerate(action.steps):
        executors = [a.executor for a in step.attempts]
        for executor in set(executors):
            mine = [a for a in step.attempts if a.executor == executor]
            assert len(mine) == 1 or (len(mine) == 2 and mine[0].error.startswith(DECLINED_ERROR))
        assert set(executors) <= offered[index]
        assert beacons[index] <= MAX_STEP_ROUNDS
        assert len(step.attempts) <= (3 if redundancy == 2 else 1) + sum(not a.ok for a in step.attempts)
    assert action.ok == (len(action.steps) == len(STEPS) and all(s.ok for s in action.steps))


def test_spent_counts_settled_steps_open_steps_and_abandoned_sends() -> None:
    """What a chain stopped mid-step reports (``TaskService._stop``): step 1 settled, step 2 with one
    of its two redundant answers in, and its second send abandoned at the shell's estimate."""
    chain = driver(outcome("a", "b"), outcome("a", "b"), redundancy=2)
    for answer in ("12", "12"):
        chain.step_result(send(chain).candidate, ok(answer), rtt_ms=1.0)
    settled(chain)
    chain.step_result(send(chain).candidate, ok("10"), rtt_ms=1.0)
    second = send(chain)
    assert chain.spent() == (3 * 5, 3 * 2)
    chain.step_abandoned(second.index, prompt_tokens=100, completion_tokens=512)
    assert chain.spent() == (3 * 5 + 100, 3 * 2 + 512)
