"""The Kademlia DHT through the libp2p engine (``transport.dht``), on 127.0.0.1.

Honest nodes find each other through provider records under ``SYMPHONY_KEY``; a stranger's raw
DHT frames (foreign keys, oversized address lists, values, garbage) are refused or cut and counted,
and the node keeps serving.
"""

from __future__ import annotations

import varint
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.pb.kademlia_pb2 import Message

from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_ADDRS
from symphony.transport.dht import SYMPHONY_KEY
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport
from symphony.transport.stranger import GARBAGE, open_stranger, write_and_close
from tests.transport.test_libp2p import link, wait_until

DHT = Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"], dht=True)
# a DHT round asks several peers one after another (10 s each at most): generous under a loaded machine


async def test_two_nodes_that_share_only_a_dht_peer_find_each_other() -> None:
    """first and second each know only the hub; second's lookup names first, and second dials it."""
    async with (
        open_libp2p_transport(Identity.generate(), DHT) as hub,
        open_libp2p_transport(Identity.generate(), DHT) as first,
        open_libp2p_transport(Identity.generate(), DHT) as second,
    ):
        await link(first, hub)
        await wait_until(lambda: first.reach_status()["dht"]["announced"] == 1, timeout=30)
        assert first.peer_id not in second.peers()
        await link(second, hub)
        await wait_until(lambda: second.reach_status()["dht"]["connected"] == 1, timeout=30)
        assert second.reach_status()["dht"]["discovered"] == 1
        assert first.peer_id in second.peers()
        providers = hub._dht._providers.get_providers(SYMPHONY_KEY)
        assert {info.peer_id.to_base58() for info in providers} == {first.peer_id, second.peer_id}


def _add_provider(key: bytes, provider: bytes, addrs: list[bytes]) -> bytes:
    message = Message(type=Message.MessageType.ADD_PROVIDER, key=key)
    message.providerPeers.add(id=provider, addrs=addrs)
    body = message.SerializeToString()
    return varint.encode(len(body)) + body


def _put_value(key: bytes, value: bytes) -> bytes:
    message = Message(type=Message.MessageType.PUT_VALUE, key=key)
    message.record.key, message.record.value = key, value
    body = message.SerializeToString()
    return varint.encode(len(body)) + body


async def test_a_strangers_dht_frames_are_refused_or_cut_and_the_node_keeps_serving() -> None:
    """Provider records under a foreign key are refused and counted; one under the Symphony key keeps
    MAX_ADDRS addresses of 500; every value is refused; garbage resets its stream. The node then
    still answers an honest lookup."""
    async with open_libp2p_transport(Identity.generate(), DHT) as node, open_stranger() as stranger:
        peer = await stranger.dial(node.listen_addrs()[0])
        me = stranger.host.get_id().to_bytes()
        # the stranger's own address, 500 times: whoever dials one reaches the stranger on 127.0.0.1
        many = [stranger.host.get_transport_addrs()[0].to_bytes()] * 500
        frames = [
            _add_provider(bytes([0x12, 0x20]) + bytes(32), me, many[:1]),
            _add_provider(SYMPHONY_KEY, me, many),
            _put_value(b"/pk/" + me, b"x" * 1000),
            _put_value(b"anything", b"y" * 1000),
            *GARBAGE.values(),
        ]
        for data in frames:
            stream = await stranger.try_open(peer, str(PROTOCOL_ID))
            if stream is not None:
                await write_and_close(stream, data)
        await wait_until(lambda: node.reach_status()["dht"]["refused"] == 1, timeout=30)
        await wait_until(lambda: len(node._dht._providers.get_providers(SYMPHONY_KEY)) == 1, timeout=30)
        kept = node._dht._providers.get_providers(SYMPHONY_KEY)
        assert len(kept[0].addrs) == MAX_ADDRS
        assert node._dht._kad.get_value_store_size() == 0
        async with open_libp2p_transport(Identity.generate(), DHT) as honest:
            await link(honest, node)
            await wait_until(lambda: honest.reach_status()["dht"]["discovered"] >= 1, timeout=30)
