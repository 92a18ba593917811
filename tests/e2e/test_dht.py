"""``symphony node --dht`` on real processes, on 127.0.0.1 (issue 20: peers beyond one ledger's reach).

Two nodes bootstrap only to a bare meeting point (``bench.nat.point_command``: a libp2p host with
the DHT and no ledger), so no record can pass from one to the other through it; they find each
other by the DHT's provider records and a question crosses. A stranger's raw DHT frames against a
real node are refused or cut, counted in ``/v1/node``, and the node keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import varint
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from multiaddr import Multiaddr  # type: ignore[import-untyped]

from symphony.bench.nat import point_command
from symphony.testing import NodeProcess, Swarm, open_swarm, wait_for
from symphony.transport.dht import SYMPHONY_KEY
from symphony.transport.stranger import GARBAGE, open_stranger, write_and_close

pytestmark = pytest.mark.e2e


class _Point(NodeProcess):
    """The bare meeting point on 127.0.0.1."""

    def command(self) -> list[str]:
        return point_command("/ip4/127.0.0.1/tcp/0", self.data_dir)


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    with open_swarm(tmp_path) as swarm:
        yield swarm


def _dht(node: NodeProcess) -> dict[str, int]:
    return node.get("/v1/node")["reach"]["dht"]


def test_two_nodes_that_share_only_a_dht_point_find_each_other(swarm: Swarm, tmp_path: Path) -> None:
    """planner (scripted:arith) announces itself in the DHT; asker, bootstrapped to the same bare point,
    finds it there, their ledgers sync over the new connection, and asker's question is planned by planner."""
    point = _Point(tmp_path / "point", "point", bootstrap=[], heartbeat=0.5, args=[])
    swarm.nodes.append(point)
    point.start().wait_ready()
    planner = swarm.spawn("planner", bootstrap=point, args=("--dht", "--model", "scripted:arith")).wait_ready()
    wait_for(lambda: _dht(planner)["announced"] >= 1, timeout=30, what="planner announced in the DHT")
    asker = swarm.spawn("asker", bootstrap=point, args=("--dht",)).wait_ready()
    wait_for(lambda: _dht(asker)["connected"] >= 1, timeout=30, what="asker connected to a peer the DHT named")
    wait_for(lambda: planner.agent_id in asker.ledger(), timeout=30, what="planner's record at asker")
    answer = asker.post("/v1/tasks", {"question": "What is (17 + 25) * 2?", "cots": 1, "wait": True})
    assert answer.status_code == 200, answer.text
    trace = answer.json()["trace"]
    assert trace["answer"] == "84"
    assert {c["planner"] for c in trace["chains"] if c["ok"]} == {planner.agent_id}


def _frame(message: Message) -> bytes:
    body = message.SerializeToString()
    return varint.encode(len(body)) + body


def _hostile_frames(me: bytes, addr: Multiaddr) -> list[bytes]:
    """A provider record under a foreign key, one under ours with 500 addresses (the stranger's own,
    so whoever dials one reaches the stranger on 127.0.0.1), two values, garbage."""
    foreign = Message(type=Message.MessageType.ADD_PROVIDER, key=b"\x12\x20" + bytes(32))
    foreign.providerPeers.add(id=me, addrs=[addr.to_bytes()])
    flood = Message(type=Message.MessageType.ADD_PROVIDER, key=SYMPHONY_KEY)
    flood.providerPeers.add(id=me, addrs=[addr.to_bytes()] * 500)
    values = []
    for key in (b"/pk/" + me, b"anything"):
        value = Message(type=Message.MessageType.PUT_VALUE, key=key)
        value.record.key, value.record.value = key, b"v" * 1000
        values.append(_frame(value))
    return [_frame(foreign), _frame(flood), *values, *GARBAGE.values()]


def test_a_strangers_raw_dht_frames_are_refused_and_counted(swarm: Swarm) -> None:
    """The node refuses the provider record under a foreign key (counted in /v1/node), survives the
    oversized record, the values and the garbage, and keeps serving its API and the DHT: an honest
    node's lookup is answered. (tests/transport/test_dht.py checks what is stored.)"""
    node = swarm.spawn("node", args=("--dht",)).wait_ready()

    async def attack() -> None:
        async with open_stranger() as stranger:
            peer = await stranger.dial(node.addr)
            own = stranger.host.get_transport_addrs()[0]
            for data in _hostile_frames(stranger.host.get_id().to_bytes(), own):
                stream = await stranger.try_open(peer, str(PROTOCOL_ID))
                if stream is not None:
                    await write_and_close(stream, data)

    trio.run(attack)
    wait_for(lambda: _dht(node)["refused"] == 1, timeout=10, what="the foreign provider record refused")
    honest = swarm.spawn("honest", bootstrap=node, args=("--dht",)).wait_ready()
    wait_for(lambda: _dht(honest)["discovered"] >= 1, timeout=30, what="honest's lookup answered")
    assert node.get("/v1/node")["reach"]["dht"]["refused"] == 1
    assert node.proc is not None and node.proc.poll() is None
