"""A stranger on the wire: a bare py-libp2p host with a fresh key, outside Symphony's transport.

It dials a node like any peer (Noise, yamux) and then writes whatever bytes a test wants on
any protocol, or on a stream that skips protocol negotiation, which Symphony's own transport
never would. Used by the transport's unit tests, the wire fuzz test and the hostile-peers bench
(``bench.hostile``); like ``libp2p``, only this package imports py-libp2p.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.utils import encode_uvarint
from multiaddr import Multiaddr  # type: ignore[import-untyped]


def frame(body: bytes) -> bytes:
    """``body`` with the varint length prefix every Symphony and gossipsub frame has."""
    return encode_uvarint(len(body)) + body


GARBAGE = {
    "random_bytes": bytes.fromhex("8f3a09d2c4e1b7a65f00ff13"),
    "non_protobuf_body": frame(b"\xff" * 24),  # 0xff is no valid protobuf field tag
    "huge_length_prefix": encode_uvarint(2**40) + b"xx",
    "truncated_frame": encode_uvarint(100) + b"only ten b",
    "zero_length_frame": frame(b""),
}
"""Byte sequences a hostile peer writes, by name."""

NON_UTF8_PROTOCOL_LINE = b"\x05\xff\xfe\xfd\xfc\n"
"""A multistream line that is not UTF-8, for a stream that skips negotiation."""


def forged_publish(topic: str, seqno: int = 1) -> bytes:
    """A well-formed gossipsub RPC frame carrying a message on ``topic`` whose signing key is
    not a key: py-libp2p's signature check raises on it, in a task of the Pubsub service."""
    rpc = rpc_pb2.RPC()
    msg = rpc.publish.add()
    msg.from_id, msg.seqno, msg.data, msg.key, msg.signature = (
        b"\x00\x01forged",
        seqno.to_bytes(8, "big"),
        b"x",
        b"k",
        b"s",
    )
    msg.topicIDs.append(topic)
    return frame(rpc.SerializeToString())


class Stranger:
    """A running bare host; ``dial`` a node, then open streams on it."""

    def __init__(self, host: IHost) -> None:
        self.host = host
        self.peer_id = host.get_id().to_base58()

    async def dial(self, addr: str) -> ID:
        info = info_from_p2p_addr(Multiaddr(addr))
        await self.host.connect(info)
        return info.peer_id

    async def open(self, peer: ID, protocol: str) -> INetStream:
        """A stream on ``protocol``, negotiated as any peer would."""
        return await self.host.new_stream(peer, [TProtocol(protocol)])

    async def try_open(self, peer: ID, protocol: str) -> INetStream | None:
        """``open``, or None if the node reset the stream before negotiation finished here."""
        try:
            return await self.open(peer, protocol)
        except StreamFailure:
            return None

    async def open_unnegotiated(self, peer: ID) -> INetStream:
        """A raw yamux stream: the bytes written go to the node's protocol negotiation."""
        conn = self.host.get_network().get_connections(peer)[0]
        return await conn.new_stream()

    def protocols_of(self, peer: ID) -> list[str]:
        """The protocols ``peer`` announced to us through identify."""
        return sorted(self.host.get_peerstore().get_protocols(peer))


async def write_and_close(stream: INetStream, data: bytes) -> None:
    """Write ``data`` and close our sending side; the node may already have reset the stream."""
    try:
        await stream.write(data)
        await stream.close_write()
    except Exception:  # noqa: BLE001 - a reset by the node is an expected answer to garbage
        return


@asynccontextmanager
async def open_stranger() -> AsyncIterator[Stranger]:
    """Run a stranger host on 127.0.0.1 for the block; closed (shielded) on exit."""
    key_pair = create_new_key_pair()
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    host = new_host(key_pair=key_pair, sec_opt={NOISE_ID: noise})
    async with host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            yield Stranger(host)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await host.close()
