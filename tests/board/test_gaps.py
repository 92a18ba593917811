"""Capability gaps posted by agents (issue #21): an agent that cannot do a sub-task posts a fix gap that
another agent closes; the failed sub-task then waits for it. On the memory engine, on virtual time."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
import trio

from symphony.bench.teams import open_board_mesh
from symphony.bench.virtual import run_virtual
from symphony.board import Board, Subtask, TaskGraph, TeamAgent, TeamConfig
from symphony.board.entries import Gap, fix_id
from symphony.board.team import CapabilityGap
from symphony.protocol import Identity
from symphony.transport import LinkModel, MemoryNetwork

CONFIG = TeamConfig(mode="claim", lease_s=2.0, beat_s=0.5, settle_s=0.05, idle_poll_s=0.1, hedge_after=None,
                    gap_grace_s=5.0)
GRAPH = TaskGraph((Subtask("s1", "def s1(): ..."), Subtask("s2", "def s2(): ...", ("s1",))))
Executor = Callable[[Subtask], Awaitable[tuple[str, int]]]


def failing(done: list[str]) -> Executor:
    async def execute(subtask: Subtask) -> tuple[str, int]:
        await trio.sleep(1.0)
        done.append(subtask.id)
        raise CapabilityGap(f"{subtask.id}: my function fails its test", f"# bad {subtask.id}", 7)

    return execute


def working(done: list[str]) -> Executor:
    async def execute(subtask: Subtask) -> tuple[str, int]:
        await trio.sleep(1.0)
        done.append(subtask.id)
        return f"# good {subtask.id}", 5

    return execute


async def team_of(executors: list[Executor], *, start_after_s: list[float]) -> list[TeamAgent]:
    """Agents on a full mesh, agent i starting ``start_after_s[i]`` virtual seconds in; run to completion."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.01), rng=random.Random(1))
    idents = [Identity(bytes([9, i]) * 16) for i in range(len(executors))]
    async with open_board_mesh(net, idents, "gaps", GRAPH) as replicas:
        agents = [TeamAgent(replica, executors[i], CONFIG, random.Random(i)) for i, replica in enumerate(replicas)]
        with trio.fail_after(120):
            async with trio.open_nursery() as work:
                for agent, after in zip(agents, start_after_s, strict=True):
                    work.start_soon(_late, agent, after)
    return agents


async def _late(agent: TeamAgent, after_s: float) -> None:
    await trio.sleep(after_s)
    await agent.run()


def run(executors: list[Executor], start_after_s: list[float]) -> list[TeamAgent]:
    return run_virtual(team_of, executors, start_after_s=start_after_s)


def test_a_failed_subtask_becomes_a_gap_that_another_agent_closes() -> None:
    """A fails s1 and posts the fix gap; B (joining later) claims it, not A; s1 then waits for it and s2 follows."""
    a_did, b_did = [], []
    a, b = run([failing(a_did), working(b_did)], start_after_s=[0.0, 3.0])
    board = a.replica.board
    gap = board.gaps()[0]
    assert (gap.subtask, gap.blocks, gap.poster) == (fix_id("s1"), "s1", a.me)
    assert board.result(fix_id("s1")).producer == b.me  # type: ignore[union-attr]
    assert a_did[0] == "s1" and fix_id("s1") not in a_did, "the gap's poster took its own gap within the grace"
    assert board.current_graph()["s1"].depends_on == (fix_id("s1"),)
    assert {"s1", "s2", fix_id("s1")} <= board.done()
    assert b.stats.gaps_posted == 0 and all(g.poster == a.me for g in board.gaps())


def test_a_gap_is_posted_once_per_subtask_and_never_for_a_gap() -> None:
    """One agent that fails everything: one gap for s1 (taken after the grace), one for s2; the failed fix and the
    retried sub-tasks are posted as they are, so the team still finishes."""
    did: list[str] = []
    (a,) = run([failing(did)], start_after_s=[0.0])
    board = a.replica.board
    assert sorted(g.subtask for g in board.gaps()) == [fix_id("s1"), fix_id("s2")]
    assert all(g.poster == a.me for g in board.gaps())
    assert set(board.done()) == {"s1", "s2", fix_id("s1"), fix_id("s2")}
    assert a.stats.gaps_posted == 2


@pytest.mark.parametrize("gap", [
    {"subtask": "s1"}, {"blocks": "nope"}, {"depends_on": ["nope"]}, {"subtask": "g", "blocks": "s1",
                                                                     "depends_on": ["s2"]},  # s2 waits for s1: a cycle
])
def test_a_gap_that_does_not_fit_is_refused_before_posting(gap: dict[str, object]) -> None:
    ident = Identity.generate()
    board = Board("gaps", GRAPH)
    fields = {"subtask": "g", "blocks": "s2", "depends_on": [], **gap}
    entry = Gap(board="gaps", poster=ident.agent_id, need="x", ts_ms=1, **fields).signed_by(ident)  # type: ignore[arg-type]
    assert not board.gap_fits(entry)
    ok = Gap(board="gaps", subtask="g", poster=ident.agent_id, need="x", blocks="s2", ts_ms=1).signed_by(ident)
    assert board.gap_fits(ok)
