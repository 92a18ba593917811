"""``symphony bench dag``: its scripted plans, and that the DAG plan beats the linear chain it is measured against."""

from __future__ import annotations

from symphony.bench.dag import dag_rows, parts_plan
from symphony.pipeline.planner import parse_plan


def test_parts_plans_parse_as_a_chain_and_as_a_dag() -> None:
    linear, dag = parse_plan(parts_plan(3, dag=False)), parse_plan(parts_plan(3, dag=True))
    assert linear.steps == dag.steps and len(dag.steps) == 4
    assert linear.depends_on == ((), (0,), (1,), (2,)) and dag.depends_on == ((), (), (), (0, 1, 2))


def test_two_parts_run_faster_as_a_dag_than_as_a_chain() -> None:
    """One question per mode on three agents (virtual time): the DAG runs the two parts at once, so it
    saves about one step's time; the speedup stays below the ideal (k + 1) / 2 the shared planning caps."""
    linear, dag = dag_rows(parts=[2], agents=3, repeats=1, tokens_per_s=20.0)
    assert (linear["mode"], dag["mode"]) == ("linear", "dag")
    assert 1.1 < dag["speedup"] < dag["ideal"] == 1.5
