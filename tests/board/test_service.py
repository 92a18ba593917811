"""The node's board service pieces that need no network: the graph a team task may carry, and member checks."""

from __future__ import annotations

import pytest

from symphony.board import MAX_SUBTASKS, Board, BoardReplica, Claim, Subtask, TaskGraph, parse_graph
from symphony.board.coder import prompt
from symphony.errors import ConfigError
from symphony.protocol import Identity

A, B = Identity.generate(), Identity.generate()


def test_a_team_graph_parses_with_its_edges() -> None:
    graph = parse_graph([{"id": "a", "spec": "def a(): ..."}, {"id": "b", "depends_on": ["a"]}])
    assert graph.ids == ["a", "b"] and graph["b"].depends_on == ("a",)


@pytest.mark.parametrize("items", [
    [], "not a list", [{"id": "a"}] * 2, [{"id": "a", "depends_on": ["zz"]}],
    [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}],  # a cycle: refused at plan time
    [{"id": "bad id!"}], [{"id": "a", "spec": "x" * 2001}], [{"id": "a", "depends_on": "a"}], [7],
    [{"id": f"s{i}"} for i in range(MAX_SUBTASKS + 1)],
])
def test_a_bad_team_graph_is_a_config_error(items: object) -> None:
    with pytest.raises(ConfigError):
        parse_graph(items)


def test_an_entry_by_a_non_member_is_refused_and_counted() -> None:
    """``offer`` with ``is_member``: a validly signed claim by an agent that is no member never reaches the board."""
    graph = TaskGraph((Subtask("s1"),))
    replica = BoardReplica(None, A, Board("t", graph),  # type: ignore[arg-type]  # offer() sends nothing
                           is_member=lambda agent: agent == A.agent_id)
    theirs = Claim(board="t", subtask="s1", claimant=B.agent_id, lease_start_ms=0, lease_ms=5000).signed_by(B)
    ours = Claim(board="t", subtask="s1", claimant=A.agent_id, lease_start_ms=10, lease_ms=5000).signed_by(A)
    assert not replica.offer(theirs) and replica.offer(ours)
    assert replica.board.rejected["not_member"] == 1
    assert [c.claimant for c in replica.board.claims("s1")] == [A.agent_id]


def test_the_prompt_ends_with_the_stub_after_the_dependencies_code() -> None:
    text = prompt(Subtask("b", "def b(x):\n    ..."), {"a": "def a(x):\n    return x"})
    assert text.index("def a(x)") < text.index("Complete the Python function `b`") < text.index("def b(x)")


def test_a_fix_gaps_prompt_says_the_earlier_attempt_failed_and_still_ends_with_the_stub() -> None:
    """Another agent behind a fix gap gets a different prompt from the one that failed (same model, temperature 0)."""
    plain = prompt(Subtask("b", "def b(x):\n    ..."), {})
    fix = prompt(Subtask("b", "def b(x):\n    ..."), {}, failed="b: the function written fails its test")
    assert fix != plain and "fails its test" in fix and fix.endswith(plain)
    assert fix.rstrip().endswith("def b(x):\n    ...\n```")
