"""The initiator's driver on its own: backup planners, consistency, the trusted vote, verdicts, trace."""

from __future__ import annotations

from typing import Any

import pytest

from symphony.beacon.ranking import Candidate, Selection
from symphony.beacon.service import BeaconOutcome
from symphony.pipeline.initiator import INCONSISTENT, PLANNER_ROUND_MARGIN_MS, InitiatorDriver, collapsed_chains
from symphony.pipeline.trace import Attempt, ChainRecord, QuestionSpans, StepSpans, StepTrace, chain_degradations
from symphony.protocol.messages import TaskResult

DEADLINE = 60_000
SPANS = QuestionSpans(wall_ms=1.0, beacon_ms=0.5, query_ms=0.1, vote_ms=0.0)


def planners(*agents: str) -> BeaconOutcome:
    ranked = tuple(Candidate(agent, score=0.9) for agent in agents)
    return BeaconOutcome(Selection(ranked[:1], ranked[1:]), contacted=len(agents), replied=len(agents), elapsed_s=0.01)


def steps(*answers: str, executor: str = "x") -> dict[str, Any]:
    return {"plan": "ok", "steps": [{"question": f"q{n}", "ok": True, "answer": a, "executor": f"{executor}{n}"}
                                    for n, a in enumerate(answers)]}


def record(index: int, planner: str, answer: str = "", *, weight: float = 0.5, trace: dict[str, Any] | None = None,
           ok: bool = True) -> ChainRecord:
    result = TaskResult(task_id=f"t/c{index}", ok=ok, answer=answer, weight=weight, prompt_tokens=3,
                        error="" if ok else "step 1 failed: truncated", trace=trace or steps(answer))
    return ChainRecord(index=index, planner=planner, planner_score=0.9, rtt_ms=5.0, result=result)


def started(*agents: str, cots: int = 2) -> InitiatorDriver:
    driver = InitiatorDriver(task_id="t", question="How many?", kind="number", cots=cots, deadline_ms=DEADLINE)
    assert driver.planners_found(planners(*agents), now_ms=0)
    return driver


def test_an_empty_planner_round_is_retried_until_the_deadline_is_near() -> None:
    driver = InitiatorDriver(task_id="t", question="q", kind="number", cots=3, deadline_ms=DEADLINE)
    assert not driver.planners_found(planners(), now_ms=0)
    assert driver.planners_found(planners(), now_ms=DEADLINE - PLANNER_ROUND_MARGIN_MS)
    assert driver.first_planners() == []


def test_failed_chains_take_the_backup_planners_in_order_each_once() -> None:
    driver = started("p0", "p1", "p2", "p3")
    assert [c.agent_id for c in driver.first_planners()] == ["p0", "p1"]
    assert driver.chain_returned(record(0, "p0", ok=False), now_ms=0).agent_id == "p2"  # type: ignore[union-attr]
    assert driver.chain_returned(record(1, "p1", ok=False), now_ms=0).agent_id == "p3"  # type: ignore[union-attr]
    assert driver.chain_returned(record(0, "p2", ok=False), now_ms=0) is None, "no planner is asked twice"
    assert driver.chain_returned(record(1, "p3", "10"), now_ms=0) is None, "an answered chain is done"


@pytest.mark.parametrize("now_ms", [DEADLINE, DEADLINE - PLANNER_ROUND_MARGIN_MS + 10])
def test_no_backup_planner_at_or_just_before_the_deadline(now_ms: int) -> None:
    """A backup launched in the deadline's last moments could do nothing (it was seen: chains sent 6 ms before it)."""
    driver = started("p0", "p1", cots=1)
    driver.first_planners()
    assert driver.chain_returned(record(0, "p0", ok=False), now_ms=now_ms) is None


def test_a_backup_planner_with_time_left() -> None:
    driver = started("p0", "p1", cots=1)
    driver.first_planners()
    assert driver.chain_returned(record(0, "p0", ok=False), now_ms=DEADLINE - 2 * PLANNER_ROUND_MARGIN_MS) is not None


def test_a_chain_that_contradicts_its_own_last_step_is_failed_and_its_planner_judged() -> None:
    driver = started("p0", "p1")
    driver.first_planners()
    driver.chain_returned(record(0, "p0", "10"), now_ms=0)
    driver.chain_returned(record(1, "p1", "99", trace=steps("12", "10")), now_ms=0)
    assert [(v.agent_id, v.agreed, v.role) for v in driver.check_consistency()] == [("p1", False, "plan")]
    vote = driver.vote(trust=lambda planner: 1.0)
    assert vote.answer == "10" and vote.winner is not None and vote.winner.chains == ("c0",)
    chains = driver.trace(latency_ms=1.0, spans=SPANS).to_wire()["chains"]
    assert (chains[1]["ok"], chains[1]["error"], chains[1]["answer"]) == (False, INCONSISTENT, "99")


def test_trust_scales_each_planners_reported_weight() -> None:
    """A distrusted planner's heavier chain loses to a trusted one."""
    driver = started("p0", "p1")
    driver.first_planners()
    driver.chain_returned(record(0, "p0", "10", weight=0.9), now_ms=0)
    driver.chain_returned(record(1, "p1", "11", weight=0.5), now_ms=0)
    assert driver.vote(trust=lambda planner: 0.1 if planner == "p0" else 1.0).answer == "11"


def test_cross_verdicts_judge_planners_and_executors_against_a_majority_winner() -> None:
    driver = started("p0", "p1", "p2", cots=3)
    driver.first_planners()
    for n, answer in enumerate(("10", "10", "11")):
        driver.chain_returned(record(n, f"p{n}", answer, trace=steps("12", answer, executor=f"e{n}-")), now_ms=0)
    driver.check_consistency()
    driver.vote(trust=lambda planner: 1.0)
    verdicts = {(v.agent_id, v.role): v.agreed for v in driver.cross_verdicts()}
    assert verdicts[("p2", "plan")] is False and verdicts[("p0", "plan")] is True
    assert verdicts[("e2-1", "execute")] is False and verdicts[("e0-0", "execute")] is True


def test_the_trace_lists_every_planner_attempt_by_chain_and_says_why_it_failed() -> None:
    driver = started("p0", "p1", cots=1)
    driver.first_planners()
    driver.chain_returned(record(0, "p0", ok=False), now_ms=0)
    driver.chain_returned(record(0, "p1", ok=False), now_ms=DEADLINE)
    driver.check_consistency()
    driver.vote(trust=lambda planner: 1.0)
    trace = driver.trace(latency_ms=2.5, spans=SPANS).to_wire()
    assert [c["planner"] for c in trace["chains"]] == ["p0", "p1"]
    assert (trace["answer"], trace["vote"], trace["prompt_tokens"]) == (None, [], 6)
    assert driver.failure(now_ms=DEADLINE) == "timeout" and driver.failure(now_ms=0) == "no_answer"


def test_vote_comes_before_the_verdicts() -> None:
    with pytest.raises(RuntimeError, match=r"^vote must come first$"):
        started("p0").cross_verdicts()


def _voted_trace(*records: ChainRecord) -> dict[str, Any]:
    driver = started("p0", "p1", "p2", cots=len(records))
    driver.first_planners()
    for r in records:
        driver.chain_returned(r, now_ms=0)
    driver.check_consistency()
    driver.vote(trust=lambda planner: 1.0)
    return driver.trace(latency_ms=1.0, spans=SPANS).to_wire()


def test_chains_that_were_the_same_solve_are_reported_collapsed() -> None:
    """Same steps on the same executors (or with the same answers): the vote gains nothing from them."""
    trace = _voted_trace(record(0, "p0", "5"), record(1, "p1", "5"),
                         record(2, "p2", "5", trace=steps("5", executor="y")))
    assert [d["kind"] for d in trace["degraded"]] == ["chains_collapsed"]
    assert "chains c0, c1, c2 were the same solve" in trace["degraded"][0]["detail"], "same answers count too"
    differ = record(1, "p1", "6", trace=steps("6", executor="y"))
    assert collapsed_chains([record(0, "p0", "5"), differ]) is None, "other answers on other executors"
    other_steps = {"plan": "ok", "steps": [{"question": "other", "ok": True, "answer": "5", "executor": "x0"}]}
    assert collapsed_chains([record(0, "p0", "5"), record(1, "p1", "5", trace=other_steps)]) is None


def test_each_chains_own_degradations_reach_the_question_and_unknown_kinds_are_dropped() -> None:
    """A planner's report (fallback plan) is kept with its chain slot; an entry of an unknown kind is dropped."""
    reported = {**steps("5"), "plan": "fallback: no JSON", "degraded": [
        {"kind": "plan_fallback", "detail": "fallback: no JSON"}, {"kind": "made_up", "detail": "x"}, "junk"]}
    trace = _voted_trace(record(0, "p0", "5", trace=reported), record(1, "p1", "6", trace=steps("6", executor="y")))
    assert trace["degraded"] == [{"kind": "plan_fallback", "detail": "fallback: no JSON", "chain": 0}]


def test_a_planner_reports_its_fallback_plan_its_unconstrained_json_and_its_retried_steps() -> None:
    failed = Attempt(executor="a", score=0.5, ok=False, error="hop timeout", latency_ms=0.0, rtt_ms=0.0, model_ms=0.0,
                     model_wall_ms=0.0)
    answered = Attempt(executor="b", score=0.5, ok=True, error="", latency_ms=1.0, rtt_ms=1.0, model_ms=1.0,
                       model_wall_ms=1.0)
    step = StepTrace(question="q", ok=True, answer="5", error="", score=0.5, prompt_tokens=1, completion_tokens=1,
                     attempts=(failed, answered), beacon_ms=0.0, candidates=2, spans=StepSpans(), executor="b")
    found = chain_degradations("fallback: HTTP 500", [step], json_output="prompt")
    assert [d.kind for d in found] == ["plan_fallback", "structured_output", "step_retried"]
    assert chain_degradations("ok", [], json_output="json_object") == ()


def test_agreeing_chains_that_solved_differently_or_sampled_are_not_collapsed() -> None:
    """One-step chains all share their step (the question): two that agree are corroboration when one
    ran a program and the other wrote text, or when either sampled its step; two greedy text solves
    with the same answer are still copies."""
    def one_step(answer: str, *, executor: str, program: bool = False, temperature: float | None = None) -> dict:
        attempt = {"executor": executor, "ok": True, **({"tool": {"ok": True}} if program else {}),
                   **({} if temperature is None else {"temperature": temperature})}
        return {"plan": "one step", "steps": [{"question": "How many?", "ok": True, "answer": answer,
                                               "executor": executor, "attempts": [attempt]}]}

    program = record(0, "p0", "5", trace=one_step("5", executor="a", program=True))
    text = record(1, "p1", "5", trace=one_step("5", executor="b"))
    sampled = record(2, "p2", "5", trace=one_step("5", executor="a", program=True, temperature=0.7))
    assert collapsed_chains([program, text, sampled]) is None
    copy = record(3, "p0", "5", trace=one_step("5", executor="c"))
    found = collapsed_chains([program, text, sampled, copy])
    assert found is not None and "chains c1, c3 were the same solve" in found.detail
