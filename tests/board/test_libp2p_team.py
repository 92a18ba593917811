"""A team on real py-libp2p hosts (127.0.0.1, one process): a claimant closed mid-sub-task loses no sub-task."""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from symphony.board import Board, Subtask, TaskGraph
from symphony.board.replica import BoardReplica
from symphony.board.team import Executor, TeamAgent, TeamConfig
from symphony.protocol import Identity
from symphony.transport.libp2p import Libp2pConfig, Libp2pTransport, open_libp2p_transport

LOOPBACK = Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"])
GRAPH = TaskGraph(tuple(Subtask(f"s{i}") for i in range(6)))
TEAM = TeamConfig(mode="claim", lease_s=1.0, beat_s=0.2, settle_s=0.2, idle_poll_s=0.1, hedge_after=None)


async def work(subtask: Subtask) -> tuple[str, int]:
    await trio.sleep(0.5)
    return f"done {subtask.id}", 1


async def never_finish(subtask: Subtask) -> tuple[str, int]:
    """The victim's executor: it holds whatever it claims until it is closed, so no result of its own can
    race the close (a finished artifact already on the wire would make the take-over look absent)."""
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.05)


class Member:
    """One agent on its own libp2p host, run in its own task so that closing it closes the host."""

    def __init__(self, index: int, executor: Executor = work) -> None:
        self.identity = Identity.generate()
        self.index = index
        self.executor = executor
        self.node: Libp2pTransport | None = None
        self.agent: TeamAgent | None = None
        self.scope = trio.CancelScope()

    async def run(self, go: trio.Event, end: trio.Event) -> None:
        with self.scope:
            async with open_libp2p_transport(self.identity, LOOPBACK) as node:
                replica = BoardReplica(node, self.identity, Board("t", GRAPH))
                await replica.start()
                self.agent = TeamAgent(replica, self.executor, TEAM, random.Random(self.index))
                self.node = node
                await go.wait()
                await self.agent.run()
                await end.wait()  # keep the host up until every survivor has every result

    def holds_a_subtask(self) -> bool:
        if self.agent is None:
            return False
        board, now = self.agent.replica.board, self.agent.replica.now_ms()
        return any((h := board.holder(s, now)) is not None and h.claimant == self.agent.me and board.result(s) is None
                   for s in GRAPH.ids)


async def test_a_closed_claimant_lease_expires_and_the_team_finishes_everything() -> None:
    """3 agents on real hosts; the third is closed while it holds a sub-task; the other two finish all 6."""
    members = [Member(0), Member(1), Member(2, never_finish)]
    go, end = trio.Event(), trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for m in members:
                nursery.start_soon(m.run, go, end)
            await until(lambda: all(m.node is not None for m in members))
            nodes = [m.node for m in members]
            for i, node in enumerate(nodes):
                for other in nodes[i + 1:]:
                    await node.connect(other.listen_addrs()[0])
            await until(lambda: all(len(n.peers()) == 2 for n in nodes))
            go.set()
            victim = members[2]
            await until(victim.holds_a_subtask)
            survivors = [m.agent.replica.board for m in members[:2]]
            gone = victim.identity.agent_id
            # closed only once both survivors have seen its claim (under load the claim's gossip can lag
            # behind its own board, and a claim nobody saw leaves nothing to take over)
            await until(lambda: all(any(c.claimant == gone for s in GRAPH.ids for c in b.claims(s))
                                    for b in survivors))
            victim.scope.cancel()
            await until(lambda: all(b.done() == set(GRAPH.ids) for b in survivors))
            end.set()
    board = survivors[0]
    taken_over = [s for s in GRAPH.ids
                  if any(c.claimant == gone for c in board.claims(s)) and board.result(s).producer != gone]
    assert taken_over, "the victim held a sub-task when closed; a survivor must have finished it"
