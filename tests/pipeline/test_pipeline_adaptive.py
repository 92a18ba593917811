"""Adaptive chains (pipeline.adaptive): the pure stop rule, the initiator driver's slots and planners,
and whole questions on the memory network (virtual time, scripted models) and in the code sandbox."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.api.http import OptionsBody
from symphony.api.progress import progress_line
from symphony.bench.contenders import parse_system
from symphony.cli.render import adaptive_line
from symphony.pipeline.adaptive import AGREE, FIRST_COTS, next_move, rule_for
from symphony.pipeline.initiator import InitiatorDriver
from symphony.pipeline.service import AskOptions
from symphony.pipeline.tools import DIVERSE_TEMPERATURE, solving_temperature
from symphony.pipeline.voting import largest_agreement
from tests.pipeline.test_pipeline_initiator import DEADLINE, SPANS, planners, record
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, swarm
from tests.pipeline.test_pipeline_verification import QUESTION as CODE_QUESTION
from tests.pipeline.test_pipeline_verification import RIGHT, WRONG, Bloc, ask_with, needs_sandbox

# ---- the pure rule --------------------------------------------------------------------------

MOVES = st.fixed_dictionaries({
    "rule": st.sampled_from(["answers", "examples", "off"]), "launched": st.integers(1, 9),
    "running": st.integers(0, 9), "most": st.integers(1, 9), "agreeing": st.integers(0, 9),
    "agree": st.integers(1, 9), "passed": st.booleans(), "time_left_ms": st.floats(-1e6, 1e6),
    "chain_ms": st.floats(0, 1e6)})


@given(MOVES)
def test_the_stop_rule(case: dict[str, Any]) -> None:
    move = next_move(**case)
    settled = (case["rule"] == "answers" and case["agreeing"] >= case["agree"]) or \
              (case["rule"] == "examples" and case["passed"])
    if case["rule"] == "off":
        assert move == "off"
    elif settled:
        assert move == ("agreed" if case["rule"] == "answers" else "passed"), "a settled question launches nothing"
    elif case["running"]:
        assert move == "wait", "no new chain while one is out"
    elif case["launched"] >= case["most"]:
        assert move == "max_chains"
    else:
        assert move in ("launch", "deadline")
        assert (move == "deadline") == (case["chain_ms"] > 0 and case["time_left_ms"] < case["chain_ms"])


def test_the_rule_by_answer_kind() -> None:
    assert rule_for("number", adaptive=True, examples=0, checkable=True) == ("answers", "")
    assert rule_for("code", adaptive=True, examples=2, checkable=True) == ("examples", "")
    for kind, examples, checkable in (("code", 0, True), ("code", 2, False)):
        rule, why = rule_for(kind, adaptive=True, examples=examples, checkable=checkable)
        assert rule == "off" and "every chain at once" in why
    assert rule_for("number", adaptive=False, examples=0, checkable=True)[0] == "off"


def test_agreement_pools_answers_as_the_vote_does() -> None:
    assert largest_agreement(["1,000", "1000", "\\boxed{1000}", "7"], "number") == 3
    assert largest_agreement(["", "", "5"], "number") == 1, "empty answers agree with nothing"
    assert largest_agreement([], "number") == 0


# ---- the driver -----------------------------------------------------------------------------

def adaptive_driver(*agents: str, cots: int = 3, kind: str = "number", question: str = "How many?",
                    checkable: bool = True) -> InitiatorDriver:
    driver = InitiatorDriver(task_id="t", question=question, kind=kind, cots=cots, deadline_ms=DEADLINE,
                             adaptive=True, first_cots=2, agree=2, checkable=checkable)  # type: ignore[arg-type]
    assert driver.planners_found(planners(*agents), now_ms=0)
    return driver


def finish(driver: InitiatorDriver, index: int, planner: str, answer: str, *, now_ms: int = 0,
           rtt_ms: float = 5.0) -> list[tuple[int, str]]:
    driver.chain_returned(replace(record(index, planner, answer), rtt_ms=rtt_ms), now_ms=now_ms)
    return [(slot, c.agent_id) for slot, c in driver.slot_finished(now_ms=now_ms)]


def adaptive_of(driver: InitiatorDriver) -> dict[str, Any]:
    driver.vote(trust=lambda _: 1.0)
    return driver.trace(latency_ms=1.0, spans=SPANS).to_wire()["adaptive"]


def test_agreeing_first_chains_launch_no_third() -> None:
    driver = adaptive_driver("p0", "p1", "p2")
    assert [c.agent_id for c in driver.first_planners()] == ["p0", "p1"]
    assert finish(driver, 0, "p0", "10") == [], "one answer back: wait for the other"
    assert finish(driver, 1, "p1", "10.0") == []
    assert adaptive_of(driver) == {"rule": "answers", "launched": 2, "first": 2, "max": 3, "agree": 2,
                                   "stopped": "agreed"}


def test_disagreeing_chains_grow_one_slot_at_a_time_on_backups_then_planners_again() -> None:
    driver = adaptive_driver("p0", "p1", "p2", cots=5)
    driver.first_planners()
    assert finish(driver, 0, "p0", "1") == []
    assert finish(driver, 1, "p1", "2") == [(2, "p2")], "the backup planner takes the next slot"
    assert finish(driver, 2, "p2", "3") == [(3, "p0")], "no backup left: a planner plans a second chain"
    assert finish(driver, 3, "p0", "4") == [(4, "p1")]
    assert finish(driver, 4, "p1", "5") == []
    assert adaptive_of(driver)["stopped"] == "max_chains"
    assert [driver.chain_task_id(slot, planner) for slot, planner in ((0, "p0"), (2, "p2"), (3, "p0"), (4, "p1"))] \
        == ["t/c0", "t/c2", "t/r1/c3", "t/r1/c4"], "a planner asked again is asked for a new chain"


def test_a_later_chain_that_agrees_stops_the_growth() -> None:
    driver = adaptive_driver("p0", "p1", "p2", cots=5)
    driver.first_planners()
    finish(driver, 0, "p0", "1")
    assert finish(driver, 1, "p1", "2") == [(2, "p2")]
    assert finish(driver, 2, "p2", "2") == []
    record_ = adaptive_of(driver)
    assert (record_["launched"], record_["stopped"]) == (3, "agreed")


def test_no_new_chain_when_the_time_left_cannot_fit_one() -> None:
    driver = adaptive_driver("p0", "p1", "p2")
    driver.first_planners()
    finish(driver, 0, "p0", "1", rtt_ms=30_000)
    assert finish(driver, 1, "p1", "2", now_ms=DEADLINE - 20_000, rtt_ms=30_000) == []
    assert adaptive_of(driver)["stopped"] == "deadline"


def test_a_code_question_without_examples_runs_every_chain_at_once_and_says_so() -> None:
    driver = adaptive_driver("p0", "p1", "p2", kind="code", question="Write def f(x) that doubles x.")
    assert len(driver.first_planners()) == 3
    record_ = adaptive_of(driver)
    assert record_["rule"] == "off" and record_["stopped"] == "off" and record_["launched"] == 3
    assert "without stated examples" in record_["detail"]


def test_a_code_question_stops_at_the_first_chain_passing_every_example() -> None:
    driver = adaptive_driver("p0", "p1", "p2", cots=5, kind="code", question=CODE_QUESTION)
    driver.first_planners()
    for index, code, passed, launched in ((0, WRONG, 1, []), (1, WRONG, 1, [(2, "p2")]), (2, RIGHT, 2, [])):
        chain = record(index, f"p{index}", code)
        driver.chain_returned(chain, now_ms=0)
        assert driver.code_to_check(chain) == code
        driver.chain_checked(chain, passed)
        assert [(s, c.agent_id) for s, c in driver.slot_finished(now_ms=0)] == launched
    vote = driver.vote(trust=lambda _: 1.0)
    assert vote.answer == RIGHT.strip() and adaptive_of(driver)["stopped"] == "passed"


def test_adaptive_off_is_every_chain_at_once() -> None:
    driver = InitiatorDriver(task_id="t", question="How many?", kind="number", cots=3, deadline_ms=DEADLINE)
    driver.planners_found(planners("p0", "p1", "p2"), now_ms=0)
    assert len(driver.first_planners()) == 3
    assert finish(driver, 0, "p0", "1") == [] and finish(driver, 1, "p1", "2") == []
    assert adaptive_of(driver)["stopped"] == "off"


# ---- the faces ------------------------------------------------------------------------------

def test_the_options_reach_every_face_with_one_set_of_defaults() -> None:
    assert (AskOptions().adaptive, AskOptions().first_cots, AskOptions().agree) == (True, FIRST_COTS, AGREE)
    body = OptionsBody(adaptive=False, first_cots=1, agree=3, cots=5).options()
    assert (body.adaptive, body.first_cots, body.agree, body.cots) == (False, 1, 3, 5)
    with pytest.raises(ValueError):
        OptionsBody(first_cots=0)
    spec = parse_system("symphony:adaptive=off,first_cots=1,agree=3")
    assert (spec.adaptive, spec.first_cots, spec.agree) == ("off", 1, 3)
    with pytest.raises(ValueError):
        parse_system("symphony:adaptive=maybe")


def test_a_launched_chain_is_a_progress_line() -> None:
    line = progress_line({"type": "chain_launched", "data": {"task": "t", "chain": 2, "planner": "p" * 20}}, "t")
    assert line is not None and "chain c2" in line


def test_symphony_ask_says_how_many_chains_ran_and_why() -> None:
    line = adaptive_line({"rule": "answers", "launched": 2, "first": 2, "max": 3, "agree": 2, "stopped": "agreed"})
    assert line == "2 of at most 3 launched (2 at once): stopped, 2 chains agreed"


# ---- whole questions --------------------------------------------------------------------------

class Disagreeing(FakeModel):
    """Plans like the others; every final step answers a new number (no two chains agree)."""

    def __init__(self, name: str, numbers: itertools.count) -> None:
        super().__init__(name)
        self.numbers = numbers

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        done = await super().chat(messages, json_schema=json_schema)
        return replace(done, text=done.text.replace("10", str(next(self.numbers))))


async def test_agreeing_chains_stop_at_two(autojump_clock) -> None:
    async with swarm([FakeModel(f"m{n}") for n in range(3)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, max_steps=3, deadline_s=60))
    assert trace["answer"] == "10"
    assert [c["index"] for c in trace["chains"]] == [0, 1], "exactly two chains ran"
    assert trace["prompt_tokens"] == 2 * 3 * 50, "1 plan + 2 steps per chain, 50 prompt tokens each"
    assert trace["adaptive"]["stopped"] == "agreed" and trace["adaptive"]["launched"] == 2


async def test_disagreeing_chains_grow_to_cots(autojump_clock) -> None:
    numbers = itertools.count(100)
    async with swarm([Disagreeing(f"m{n}", numbers) for n in range(3)]) as (_, nodes):
        launched: list[dict[str, Any]] = []
        nodes[0].tasks.on_event = lambda kind, fields: kind == "chain_launched" and launched.append(fields)
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=5, max_steps=3, deadline_s=120))
    assert sorted(c["index"] for c in trace["chains"]) == [0, 1, 2, 3, 4] and all(c["ok"] for c in trace["chains"])
    assert len({c["answer"] for c in trace["chains"]}) == 5
    assert len({c["planner"] for c in trace["chains"]}) == 3, "three planners, two of them planning twice"
    assert [e["chain"] for e in launched] == [2, 3, 4]
    assert trace["adaptive"] == {"rule": "answers", "launched": 5, "first": 2, "max": 5, "agree": 2,
                                 "stopped": "max_chains"}
    assert trace["prompt_tokens"] == 5 * 3 * 50, "every launched chain is counted"


async def test_adaptive_off_launches_every_chain_at_once(autojump_clock) -> None:
    async with swarm([FakeModel(f"m{n}") for n in range(3)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=3, adaptive=False, deadline_s=60))
    assert len(trace["chains"]) == 3
    assert trace["adaptive"]["stopped"] == "off" and trace["adaptive"]["detail"].startswith("adaptive chains off")


@needs_sandbox
async def test_a_code_question_stops_at_the_first_chain_passing_its_examples() -> None:
    trace = await ask_with(Bloc([WRONG, WRONG, RIGHT, WRONG, WRONG]), AskOptions(cots=5, max_steps=1,
                                                                                 answer_kind="code"))
    assert "set(xs)" in trace["answer"]
    assert len(trace["chains"]) == 3, "two wrong chains, then the one that passed: no fourth"
    assert sorted(c["passed"] for c in trace["checks"]) == [1, 1, 2]
    assert trace["adaptive"]["stopped"] == "passed"


def test_each_styles_first_chain_keeps_the_request_temperature_later_chains_sample_with_their_own_seed() -> None:
    assert solving_temperature("t/c0/s0", None) == (None, None)
    assert solving_temperature("t/c1/s0", 0.2) == (0.2, None)
    assert solving_temperature("t", 0.3) == (0.3, None), "a direct request has no slot"
    later = [solving_temperature(f"t/c{n}/s0", None) for n in (2, 3, 4)]
    assert {t for t, _ in later} == {DIVERSE_TEMPERATURE}
    assert len({seed for _, seed in later}) == 3 and solving_temperature("t/c2/s0", None) == later[0]
    assert solving_temperature("t/c2/s0", 1.1)[0] == 1.1, "a hotter request stays hotter"


class Recording(Disagreeing):
    """Disagreeing chains (so all five run); records each execution call's temperature and seed."""

    def __init__(self, name: str, numbers: itertools.count, seen: list[tuple[float, int | None]]) -> None:
        super().__init__(name, numbers)
        self.seen = seen

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        if json_schema is None:
            self.seen.append((temperature, seed))
        return await super().chat(messages, json_schema=json_schema)


async def test_five_one_step_chains_sample_at_the_model_only_after_the_first_two(autojump_clock) -> None:
    """Through the network: the first two chains' executors call their model at its default temperature
    (0) with no seed, the three after them at 0.7 with three different seeds, and the trace says so."""
    seen: list[tuple[float, int | None]] = []
    numbers = itertools.count(100)
    async with swarm([Recording(f"m{n}", numbers, seen) for n in range(3)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=5, max_steps=1, deadline_s=120))
    assert len(seen) == 5 and sorted(seen, key=lambda ts: ts[0])[:2] == [(0.0, None), (0.0, None)]
    sampled = [ts for ts in seen if ts[0] > 0]
    assert {t for t, _ in sampled} == {0.7} and len({s for _, s in sampled}) == 3
    shown = {c["index"]: c["trace"]["steps"][0]["attempts"][-1].get("temperature") for c in trace["chains"]}
    assert shown == {0: None, 1: None, 2: 0.7, 3: 0.7, 4: 0.7}
