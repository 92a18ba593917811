"""``symphony bench teams``: the workload, Amdahl at p = 0.9, a killed claimant, hedged stragglers, the report.

Runs are on the memory engine in virtual time (``simulate``), so the figures asserted here are exact
functions of the code, not of this machine's load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from symphony.bench.teams import (
    Fault,
    TeamsConfig,
    amdahl,
    linearized,
    load_library,
    run_teams_bench,
    simulate,
    structure,
    count_passing,
)

CFG = TeamsConfig(repeats=1)
STEP_S = CFG.reply_tokens / CFG.tokens_per_s


@pytest.mark.parametrize("theme", ["text_utils", "geometry"])
def test_each_library_has_20_specified_functions_whose_references_pass_in_the_sandbox(theme: str) -> None:
    """20 functions, each with a docstring spec and a test; our references pass all 20 (sandboxed)."""
    functions = load_library(theme)
    assert len(functions) == 20 and all(f.spec and f.test.startswith(f"def test_{f.name}") for f in functions)
    assert count_passing(functions, {f.name: f.reference for f in functions}) == 20


def test_a_wrong_function_fails_its_test() -> None:
    """count_passing scores code, not names: a function returning None fails."""
    functions = load_library("text_utils")[:2]
    broken = {functions[0].name: functions[0].reference, functions[1].name: f"def {functions[1].name}(*a):\n    pass"}
    assert count_passing(functions, broken) == 1


@pytest.mark.parametrize(("p", "serial"), [(0.9, 2), (0.5, 10), (0.2, 16)])
def test_structures_have_the_stated_serial_share(p: float, serial: int) -> None:
    """A chain of round((1-p)*20) sub-tasks then a fan-out: the critical path is serial + 1 units."""
    graph = structure(load_library("geometry"), p)
    assert graph.critical_path() == serial + 1
    assert linearized(graph).critical_path() == 20


def test_board_claimed_team_is_within_15_percent_of_amdahl_at_p_09() -> None:
    """N = 4 self-claiming agents finish the p = 0.9 library at >= 85% of Amdahl's speedup, with one result each."""
    one = simulate("text_utils", 0.9, 1, "claim", cfg=CFG, seed=0)
    four = simulate("text_utils", 0.9, 4, "claim", cfg=CFG, seed=0)
    assert one.success and four.success and four.extra_artifacts == 0
    assert one.makespan_s / four.makespan_s >= 0.85 * amdahl(0.9, 4)


def test_linear_chains_do_not_speed_up() -> None:
    """The same library as one chain takes as long with 4 agents as with 1 (within the claim settle time)."""
    one = simulate("geometry", 0.9, 1, "chain", cfg=CFG, seed=0)
    four = simulate("geometry", 0.9, 4, "chain", cfg=CFG, seed=0)
    assert four.makespan_s >= 0.98 * one.makespan_s


@pytest.mark.parametrize("mode", ["claim", "cnet"])
def test_a_killed_claimant_loses_no_subtask(mode: str) -> None:
    """An agent killed while holding a sub-task: its lease expires and the others finish all 20."""
    run = simulate("text_utils", 0.9, 4, mode, cfg=CFG, seed=0, fault=Fault(kill_after_s=2.5 * STEP_S))
    assert run.killed is not None
    assert run.success and run.lost == 0


def test_pre_assigned_work_of_a_killed_agent_is_lost() -> None:
    """The contrast the board removes: without claims, the dead agent's assigned sub-tasks never finish."""
    run = simulate("text_utils", 0.9, 4, "assigned", cfg=CFG, seed=0, fault=Fault(kill_after_s=2.5 * STEP_S))
    assert not run.success and run.lost > 0


def test_hedging_a_straggler_shortens_the_run() -> None:
    """One agent 4x slower: hedged re-execution finishes sooner than waiting, and each sub-task keeps one result."""
    slow = Fault(slow_factor=4.0)
    off = simulate("text_utils", 0.9, 4, "claim", cfg=CFG, seed=0, fault=slow, hedge=False)
    on = simulate("text_utils", 0.9, 4, "claim", cfg=CFG, seed=0, fault=slow, hedge=True)
    assert on.hedges > 0 and off.hedges == 0
    assert on.success and on.makespan_s < off.makespan_s


def test_contract_net_awards_subtasks() -> None:
    """In cnet mode the announcers award sub-tasks and the awardees do them."""
    run = simulate("geometry", 0.5, 3, "cnet", cfg=CFG, seed=1)
    assert run.success and sum(s["awards_won"] for s in run.stats) > 0


def test_the_bench_writes_its_table(tmp_path: Path) -> None:
    """A tiny grid writes teams.json and a markdown table with the Amdahl column."""
    cfg = dataclasses.replace(CFG, sizes=(1, 2), structures=(0.9,), modes=("claim",), themes=("geometry",),
                              faults=False)
    result = run_teams_bench(cfg, tmp_path)
    assert [c["n"] for c in result["cells"]] == [1, 2] and result["cells"][1]["amdahl"] == round(amdahl(0.9, 2), 3)
    assert "| geometry | 0.9 | claim | 2 |" in (tmp_path / "teams.md").read_text()
    assert (tmp_path / "teams.json").exists()
