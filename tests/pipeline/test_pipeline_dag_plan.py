"""DAG plans (issue #21): ``depends_on`` in the schema, parsed, validated and repaired; the graph helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.pipeline.dag import ancestors, check_runnable, linear, topological_order, waits_for_cycle
from symphony.pipeline.planner import (
    DECOMPOSITION_SCHEMA,
    Plan,
    PlanError,
    anchor_final_step,
    decomposition_messages,
    parse_plan,
    plan_json,
)
from tests.pipeline.test_pipeline_planner import _valid

PARTS = ("What is 3 times 4?", "What is 5 plus 6?", "What is 7 minus 2?")
FINAL = "What is the sum of those three results?"


def _dag(*steps: tuple[str, list[Any] | None]) -> str:
    return json.dumps({"steps": [{"question": q} | ({} if d is None else {"depends_on": d}) for q, d in steps]})


def test_schema_accepts_depends_on_within_range() -> None:
    """A step may carry depends_on indices from 0 to max_steps - 1; negative or too large ones are invalid."""
    plan = {"steps": [{"question": "a"}, {"question": "b", "depends_on": [0]}]}
    assert _valid(plan, DECOMPOSITION_SCHEMA)
    assert not _valid({"steps": [{"question": "a", "depends_on": [-1]}]}, DECOMPOSITION_SCHEMA)
    assert not _valid({"steps": [{"question": "a", "depends_on": [5]}]}, DECOMPOSITION_SCHEMA)


def test_prompt_says_how_to_mark_independent_steps() -> None:
    assert '"depends_on"' in decomposition_messages("q?", answer_kind="number")[0]["content"]


def test_independent_parts_and_a_combining_step_parse_unrepaired() -> None:
    """Three independent parts and a final step that needs all three: a DAG, kept as written."""
    plan = parse_plan(_dag(*((p, []) for p in PARTS), (FINAL, [0, 1, 2])))
    assert (plan.steps, plan.depends_on, plan.repaired) == ((*PARTS, FINAL), ((), (), (), (0, 1, 2)), False)


def test_a_plan_without_depends_on_is_the_linear_chain() -> None:
    plan = parse_plan(_dag(*((p, None) for p in PARTS)))
    assert plan.depends_on == linear(3) == ((), (0,), (1,))
    assert plan_json(plan) == json.dumps({"steps": [{"question": p} for p in PARTS]})


def test_a_waits_for_cycle_is_refused_at_plan_time() -> None:
    """Steps 0 and 1 wait for each other: neither could ever start, so the plan is refused."""
    with pytest.raises(PlanError, match=r"cycle \((0 -> 1 -> 0|1 -> 0 -> 1)\)") as caught:
        parse_plan(_dag((PARTS[0], [1]), (PARTS[1], [0]), (FINAL, [0, 1])))
    assert caught.value.reason == "cycle"


def test_self_and_out_of_range_references_are_dropped_and_named() -> None:
    plan = parse_plan(_dag((PARTS[0], [0]), (PARTS[1], [7, "x", True]), (FINAL, [0, 1])))
    assert plan.depends_on == ((), (), (0, 1))
    assert {"bad_dependency"} <= set(plan.fixes)


def test_forward_references_are_reordered() -> None:
    """The final step written first, needing the two after it: the steps are put in runnable order."""
    plan = parse_plan(_dag((FINAL, [1, 2]), (PARTS[0], []), (PARTS[1], [])))
    assert plan.steps == (PARTS[0], PARTS[1], FINAL) and plan.depends_on == ((), (), (0, 1))
    assert "reordered" in plan.fixes


def test_a_result_nothing_waits_for_goes_to_the_final_step() -> None:
    plan = parse_plan(_dag((PARTS[0], []), (PARTS[1], []), (FINAL, [0])))
    assert plan.depends_on == ((), (), (0, 1)) and "dangling" in plan.fixes


def test_a_dropped_duplicate_hands_its_dependents_to_the_first_copy() -> None:
    plan = parse_plan(_dag((PARTS[0], []), (PARTS[1], []), (PARTS[0], []), (FINAL, [1, 2])))
    assert plan.steps == (PARTS[0], PARTS[1], FINAL) and plan.depends_on == ((), (), (0, 1))


def test_capping_keeps_what_the_dropped_steps_needed() -> None:
    """Step 2 (capped away) needed step 0; the final step needed step 2, so it now needs step 0."""
    text = _dag((PARTS[0], []), (PARTS[1], []), (PARTS[2], [0]), (FINAL, [1, 2]))
    plan = parse_plan(text, max_steps=3)
    assert plan.steps == (PARTS[0], PARTS[1], FINAL) and plan.depends_on == ((), (), (0, 1))


def test_anchoring_keeps_the_graph() -> None:
    plan = anchor_final_step(Plan(steps=(*PARTS, FINAL), repaired=False, depends_on=((), (), (), (0, 1, 2))), "Q?")
    assert plan.steps == (*PARTS, "Q?") and plan.depends_on == ((), (), (), (0, 1, 2))


def test_plan_json_round_trips_a_dag() -> None:
    plan = Plan(steps=(*PARTS, FINAL), repaired=False, depends_on=((), (0,), (), (1, 2)))
    again = parse_plan(plan_json(plan))
    assert (again.steps, again.depends_on, again.repaired) == (plan.steps, plan.depends_on, False)


def test_a_plan_refuses_a_graph_the_chain_cannot_run() -> None:
    with pytest.raises(ValueError, match="lead to the last"):
        Plan(steps=("a", "b", "c"), repaired=False, depends_on=((), (), (1,)))
    with pytest.raises(ValueError, match="earlier steps"):
        Plan(steps=("a", "b"), repaired=False, depends_on=((1,), ()))


# ---- properties -----------------------------------------------------------------------------

_index_lists = st.lists(st.one_of(st.integers(-2, 8), st.text(max_size=2), st.none()), max_size=5)
_steps = st.lists(st.tuples(st.text(alphabet="abcdefgh xyz", min_size=0, max_size=12),
                            st.one_of(st.none(), _index_lists)), min_size=1, max_size=8)


@given(steps=_steps, max_steps=st.integers(1, 6))
def test_any_accepted_plan_is_acyclic_and_runnable(steps: list[tuple[str, Any]], max_steps: int) -> None:
    """Whatever depends_on a model writes: a cycle is refused, anything accepted runs (each step
    after what it needs, every step leading to the last) and stays within max_steps."""
    text = json.dumps({"steps": [{"question": q} | ({} if d is None else {"depends_on": d}) for q, d in steps]})
    try:
        plan = parse_plan(text, max_steps=max_steps)
    except PlanError as exc:
        assert exc.reason in {"cycle", "no_steps", "copied_example"}
        return
    assert waits_for_cycle(plan.depends_on) is None
    check_runnable(plan.depends_on)
    assert len(plan.steps) == len(plan.depends_on) <= max_steps


@given(st.lists(st.text(alphabet="abcdefghij klm", min_size=1, max_size=15), min_size=1, max_size=8))
def test_linear_plans_are_unchanged(questions: list[str]) -> None:
    """A plan written without depends_on parses to the same steps as before, as the linear chain."""
    try:
        plan = parse_plan(json.dumps({"steps": [{"question": q} for q in questions]}))
    except PlanError:
        return
    assert plan.depends_on == linear(len(plan.steps))
    assert "dangling" not in plan.fixes and "reordered" not in plan.fixes


@given(st.lists(st.lists(st.integers(0, 5), max_size=3), min_size=1, max_size=6))
def test_topological_order_respects_every_dependency(raw: list[list[int]]) -> None:
    deps = [[d for d in needs if d < len(raw)] for needs in raw]
    if waits_for_cycle(deps) is not None:
        with pytest.raises(ValueError):
            topological_order(deps)
        return
    position = {step: n for n, step in enumerate(topological_order(deps))}
    assert all(position[d] < position[s] for s, needs in enumerate(deps) for d in needs)


def test_ancestors_are_transitive_in_index_order() -> None:
    assert ancestors(((), (0,), (), (1, 2)), 3) == (0, 1, 2)
    assert ancestors(linear(4), 3) == (0, 1, 2)


def test_a_long_hostile_chain_is_capped_to_the_linear_chain() -> None:
    """700 steps (as many as fit the input limit), each needing the one before: the capped-away
    middle hands its needs down (walked iteratively: no stack spent per step), leaving a linear chain."""
    text = json.dumps({"steps": [{"question": f"task {i}", "depends_on": [i - 1] if i else []} for i in range(700)]})
    plan = parse_plan(text)
    assert plan.depends_on == linear(5) and plan.steps[:4] == ("task 0", "task 1", "task 2", "task 3")
