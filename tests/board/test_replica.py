"""Board replicas on the memory engine: entries gossip, forgeries and garbage are counted, a late replica pulls."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from symphony.board import Board, Claim, Subtask, TaskGraph
from symphony.board import BoardReplica, pull_quietly, topic
from symphony.protocol import Identity
from symphony.transport.memory import LinkModel, MemoryNetwork

GRAPH = TaskGraph((Subtask("s1"), Subtask("s2", depends_on=("s1",))))
IDS = [Identity(bytes([i + 1]) * 32) for i in range(3)]


def claim(who: Identity, subtask: str = "s1", start: int = 0) -> Claim:
    return Claim(board="t", subtask=subtask, claimant=who.agent_id, lease_start_ms=start, lease_ms=5000).signed_by(who)


async def open_replicas(stack: AsyncExitStack, net: MemoryNetwork, count: int) -> list[BoardReplica]:
    nodes = [await stack.enter_async_context(net.open_node(i)) for i in IDS[:count]]
    for node in nodes[1:]:
        await node.connect(nodes[0].listen_addrs()[0])
    replicas = [BoardReplica(node, ident, Board("t", GRAPH)) for node, ident in zip(nodes, IDS, strict=False)]
    for replica in replicas:
        await replica.start()
    return replicas


async def until(predicate, replica: BoardReplica) -> None:
    """Wait for board changes until ``predicate()`` holds (fails the test after 10 virtual seconds)."""
    with trio.fail_after(10):
        while not predicate():
            with trio.move_on_after(0.5):
                await replica.changed()


async def test_a_posted_claim_reaches_every_replica(autojump_clock) -> None:
    """A claim posted on one replica becomes the holder on the others."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.01))
    async with AsyncExitStack() as stack:
        a, b, c = await open_replicas(stack, net, 3)
        await a.post(claim(IDS[0]))
        await until(lambda: b.board.holder("s1", 1) is not None and c.board.holder("s1", 1) is not None, c)
        assert b.board.holder("s1", 1).claimant == IDS[0].agent_id
        assert a.board.state() == b.board.state() == c.board.state()


async def test_forged_and_garbage_entries_are_counted_not_merged(autojump_clock) -> None:
    """A claim re-signed under another author and a non-JSON message are dropped and counted by reason."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.01))
    async with AsyncExitStack() as stack:
        a, b = await open_replicas(stack, net, 2)
        forged = claim(IDS[0]).model_copy(update={"claimant": IDS[1].agent_id})
        await a.transport.publish(topic("t"), forged.to_bytes())
        await a.transport.publish(topic("t"), b"\xff not json")
        with trio.fail_after(10):
            while sum(b.board.rejected.values()) < 2:
                await trio.sleep(0.05)
        assert b.board.rejected == {"bad_signature": 1, "malformed": 1}
        assert not b.board.entries


async def test_a_replica_that_missed_entries_pulls_them(autojump_clock) -> None:
    """Anti-entropy: a replica started after the posts merges the peer's whole board on pull."""
    net = MemoryNetwork(link=LinkModel(latency_s=0.01))
    async with AsyncExitStack() as stack:
        [a] = await open_replicas(stack, net, 1)
        await a.post(claim(IDS[0]))
        await a.post(claim(IDS[0], "s2", 10))
        late_node = await stack.enter_async_context(net.open_node(IDS[2]))
        await late_node.connect(a.transport.listen_addrs()[0])
        late = BoardReplica(late_node, IDS[2], Board("t", GRAPH))
        assert await pull_quietly(late, IDS[0].agent_id) == 2
        assert late.board.state() == a.board.state()
