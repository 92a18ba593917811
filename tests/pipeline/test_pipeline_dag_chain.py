"""DAG plans in the chain driver (issue #21): every ready step at once, each with exactly the
results it depends on, failures confined to what depends on them; and over the memory network."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from symphony.pipeline.chain import BeaconStep, ChainDone, ChainDriver, Replan, SendStep, StepSettled, Wait
from symphony.pipeline.dag import ancestors
from symphony.pipeline.service import AskOptions
from tests.pipeline.test_pipeline_chain import DEADLINE, failed, ok, outcome
from tests.pipeline.test_pipeline_network import QUESTION, FakeModel, swarm

PARTS = ("How much is 3 times 4?", "How much is 5 plus 6?", "What is the sum of both results?")
FAN_IN = ((), (), (0, 1))


def dag(*rounds, deps=FAN_IN, steps=PARTS, replans: int = 0) -> ChainDriver:
    chain = ChainDriver(steps, kind="number", deadline_ms=DEADLINE, depends_on=deps, replans=replans, origin_ms=0)
    chain.executors_selected(rounds, waited_ms=1.0)
    return chain


def test_independent_steps_are_offered_at_once_then_the_driver_waits() -> None:
    chain = dag(outcome("a"), outcome("b"), outcome("c"))
    first, second = chain.next_action(now_ms=0), chain.next_action(now_ms=0)
    assert isinstance(first, SendStep) and isinstance(second, SendStep)
    assert (first.index, second.index, first.previous, second.previous) == (0, 1, (), ())
    assert chain.next_action(now_ms=0) == Wait(out=(0, 1))


def test_a_step_gets_exactly_the_results_it_depends_on_in_index_order() -> None:
    """Step 1 returns first; the final step still gets step 0's answer, then step 1's, and no other."""
    chain = dag(outcome("a"), outcome("b"), outcome("c"), outcome("d"), steps=(*PARTS[:2], "How much is 2 + 2?",
                                                                               PARTS[2]),
                deps=((), (), (), (0, 1, 2)))
    sent = [chain.next_action(now_ms=0) for _ in range(3)]
    assert all(isinstance(s, SendStep) for s in sent)
    for action, answer in zip(reversed(sent), ("4", "11", "12"), strict=True):
        chain.step_result(action.candidate, ok(answer), rtt_ms=1.0, index=action.index)
        assert isinstance(chain.next_action(now_ms=5), StepSettled)
    final = chain.next_action(now_ms=5)
    assert isinstance(final, SendStep) and final.final
    assert final.previous == ((PARTS[0], "12"), (PARTS[1], "11"), ("How much is 2 + 2?", "4"))


def test_parallel_steps_prefer_different_executors_when_the_ranking_allows() -> None:
    """Both parts rank a first: the second goes to its next candidate, b, while a is busy."""
    chain = dag(outcome("a", "b"), outcome("a", "b"), outcome("a"))
    first, second = chain.next_action(now_ms=0), chain.next_action(now_ms=0)
    assert isinstance(first, SendStep) and isinstance(second, SendStep)
    assert (first.candidate.agent_id, second.candidate.agent_id) == ("a", "b")


def test_parallel_steps_share_an_executor_when_it_is_the_only_one() -> None:
    chain = dag(outcome("a"), outcome("a"), outcome("a"))
    first, second = chain.next_action(now_ms=0), chain.next_action(now_ms=0)
    assert isinstance(first, SendStep) and isinstance(second, SendStep)
    assert first.candidate.agent_id == second.candidate.agent_id == "a"


def test_steps_record_their_graph_and_overlapping_spans() -> None:
    chain = dag(outcome("a"), outcome("b"), outcome("c"))
    first, second = chain.next_action(now_ms=100), chain.next_action(now_ms=100)
    chain.step_result(second.candidate, ok("11"), rtt_ms=1.0, index=1)
    chain.next_action(now_ms=300)
    chain.step_result(first.candidate, ok("12"), rtt_ms=1.0, index=0)
    chain.next_action(now_ms=400)
    final = chain.next_action(now_ms=400)
    chain.step_result(final.candidate, ok("23"), rtt_ms=1.0, index=2)
    chain.next_action(now_ms=450)
    end = chain.next_action(now_ms=450)
    assert isinstance(end, ChainDone) and end.ok and end.answer == "23"
    spans = {s.index: (s.depends_on, s.started_at, s.finished_at) for s in end.steps}
    assert spans == {0: ((), 100, 400), 1: ((), 100, 300), 2: ((0, 1), 400, 450)}


def test_without_replans_a_failed_step_ends_the_chain_at_once() -> None:
    chain = dag(outcome("a"), outcome("b"), outcome("c"))
    first, _ = chain.next_action(now_ms=0), chain.next_action(now_ms=0)
    chain.step_result(first.candidate, failed(), rtt_ms=1.0, index=0)
    while isinstance(action := chain.next_action(now_ms=0), BeaconStep):
        chain.step_beaconed(outcome(), waited_ms=0.0, index=0)
    assert isinstance(action, StepSettled) and not action.step.ok
    end = chain.next_action(now_ms=0)
    assert isinstance(end, ChainDone) and end.error == "step 1 failed: truncated"


def test_a_failure_waits_for_independent_steps_and_replans_around_their_answers() -> None:
    """Step 0 fails while step 1 is out: step 1 finishes, its answer is done for the re-plan, and the
    re-planned steps start from it."""
    chain = dag(outcome("a"), outcome("b"), outcome("c"), replans=1)
    first, second = chain.next_action(now_ms=0), chain.next_action(now_ms=0)
    chain.step_result(first.candidate, failed(), rtt_ms=1.0, index=0)
    while isinstance(action := chain.next_action(now_ms=0), BeaconStep):
        chain.step_beaconed(outcome(), waited_ms=0.0, index=0)
    assert isinstance(action, StepSettled) and not action.step.ok
    assert chain.next_action(now_ms=0) == Wait(out=(1,)), "no new step starts while a re-plan is pending"
    chain.step_result(second.candidate, ok("11"), rtt_ms=1.0, index=1)
    assert isinstance(chain.next_action(now_ms=0), StepSettled)
    replan = chain.next_action(now_ms=0)
    assert isinstance(replan, Replan) and (replan.index, replan.done, replan.exclude) == (0, ((PARTS[1], "11"),),
                                                                                          frozenset({"a"}))
    chain.replanned(("What is 3 * 4?", PARTS[2]), (outcome("d"), outcome("e")), waited_ms=1.0, depends_on=((), (0,)))
    assert chain.questions == (PARTS[1], "What is 3 * 4?", PARTS[2])
    assert chain.depends_on == ((), (0,), (1,))
    step = chain.next_action(now_ms=0)
    assert isinstance(step, SendStep) and (step.index, step.previous, step.revision) == (1, ((PARTS[1], "11"),), 1)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[tuple[tuple[int, ...], ...], list[bool], list[int]]:
    """A runnable graph (each step needs some earlier ones; every step leads to the last), executor
    outcomes, and the order in which steps that are out return."""
    count = draw(st.integers(1, 6))
    deps = [tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=i)))) if i else () for i in range(count)]
    needed = {d for needs in deps for d in needs}
    deps[-1] = tuple(sorted({*deps[-1], *(i for i in range(count - 1) if i not in needed)}))
    return tuple(deps), draw(st.lists(st.booleans(), min_size=30, max_size=30)), draw(
        st.lists(st.integers(0, 5), min_size=60, max_size=60))


@given(graphs())
def test_any_graph_runs_each_step_after_its_dependencies_with_their_answers(run) -> None:
    """Whatever the graph, the outcomes and the order results return in: a step is sent only once
    everything it depends on is answered, with exactly those answers (its ancestors', in index
    order); no step is settled twice; the chain ends, answering exactly when every step did."""
    deps, answers, picks = run
    steps = tuple(f"step {i}?" for i in range(len(deps)))
    chain = ChainDriver(steps, kind="number", deadline_ms=DEADLINE, depends_on=deps)
    chain.executors_selected([outcome(f"x{i}", f"y{i}") for i in range(len(deps))], waited_ms=0.0)
    out: list[SendStep | BeaconStep] = []
    answered: dict[int, str] = {}
    outcomes, order = iter(answers), iter(picks)
    for _ in range(200):
        action = chain.next_action(now_ms=0)
        if isinstance(action, ChainDone):
            break
        if isinstance(action, SendStep):
            assert all(d in answered for d in deps[action.index])
            assert action.previous == tuple((steps[d], answered[d]) for d in ancestors(deps, action.index))
        if isinstance(action, SendStep | BeaconStep):
            out.append(action)
        elif isinstance(action, StepSettled):
            assert action.index not in answered
            if action.step.ok:
                answered[action.index] = action.step.answer
        elif isinstance(action, Wait):
            back = out.pop(next(order, 0) % len(out))
            if isinstance(back, SendStep):
                result = ok(str(back.index)) if next(outcomes, True) else failed()
                chain.step_result(back.candidate, result, rtt_ms=1.0, index=back.index)
            else:
                chain.step_beaconed(outcome(), waited_ms=0.0, index=back.index)
    else:
        raise AssertionError("the chain did not end")
    assert action.ok == (len(answered) == len(deps))


# ---- over the network -------------------------------------------------------------------------


class DagModel(FakeModel):
    """Plans two independent parts and a combining step; each executor call takes ``delay`` (virtual) s."""

    def __init__(self, name: str, seen: list[str]) -> None:
        super().__init__(name, delay=5.0)
        self.seen = seen

    async def chat(self, messages, *, max_tokens=512, temperature=0.0, seed=None, json_schema=None):
        done = await super().chat(messages, json_schema=json_schema)
        if json_schema is not None:
            plan = {"steps": [{"question": "How many apples are in the boxes?", "depends_on": []},
                              {"question": "How many apples does Tom eat?", "depends_on": []},
                              {"question": "How many apples are left?", "depends_on": [0, 1]}]}
            return replace(done, text=json.dumps(plan))
        self.seen.append(messages[-1]["content"])
        return done


async def test_independent_steps_run_at_the_same_time_on_different_executors(autojump_clock) -> None:
    """Over the memory network: the two parts run concurrently (their spans overlap) on two executors,
    the combining step starts after both and is sent both answers."""
    seen: list[str] = []
    async with swarm([DagModel(f"m{n}", seen) for n in range(4)]) as (_, nodes):
        trace = await nodes[0].tasks.ask(QUESTION, AskOptions(cots=1, max_steps=3, deadline_s=120))
    steps = {s["index"]: s for s in trace["chains"][0]["trace"]["steps"]}
    assert trace["answer"] == "10" and [steps[i]["depends_on"] for i in range(3)] == [[], [], [0, 1]]
    assert steps[0]["started_at"] < steps[1]["finished_at"] and steps[1]["started_at"] < steps[0]["finished_at"]
    assert steps[2]["started_at"] >= max(steps[0]["finished_at"], steps[1]["finished_at"])
    assert steps[0]["executor"] != steps[1]["executor"]
    final_prompt = seen[-1]
    assert "How many apples are in the boxes?" in final_prompt and "How many apples does Tom eat?" in final_prompt


def test_a_replan_in_a_dag_never_shows_one_step_index_twice() -> None:
    """Step 0 fails, step 1 stands (renumbered 0 in the new plan): the trace keeps step 1 as 1, the failed
    step as 0, and the re-planned steps take fresh indices 2 and 3, their depends_on in the same numbering."""
    chain = dag(outcome("a"), outcome("b"), outcome("c"), replans=1)
    first, second = chain.next_action(now_ms=0), chain.next_action(now_ms=0)
    chain.step_result(first.candidate, failed(), rtt_ms=1.0, index=0)
    while isinstance(chain.next_action(now_ms=0), BeaconStep):
        chain.step_beaconed(outcome(), waited_ms=0.0, index=0)
    chain.step_result(second.candidate, ok("11"), rtt_ms=1.0, index=1)
    while not isinstance(chain.next_action(now_ms=0), Replan):
        pass
    chain.replanned(("What is 3 * 4?", PARTS[2]), (outcome("d"), outcome("e")), waited_ms=1.0, depends_on=((), (0,)))
    while not isinstance(action := chain.next_action(now_ms=0), ChainDone):
        if isinstance(action, SendStep):
            chain.step_result(action.candidate, ok("12" if action.index == 1 else "23"), rtt_ms=1.0,
                              index=action.index)
    assert action.ok and action.answer == "23"
    traced = [(s.index, s.ok, s.depends_on) for s in action.steps]
    assert traced == [(0, False, ()), (1, True, ()), (2, True, (1,)), (3, True, (2,))], traced
    assert len({s.index for s in action.steps}) == len(action.steps)
