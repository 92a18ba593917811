"""Requests over one persistent stream per peer (``transport.rpcmux``) against real hosts on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.io.msgio import VarIntLengthMsgReadWriter
from libp2p.network.stream.exceptions import StreamReset
from libp2p.peer.id import ID

from symphony.errors import PeerUnreachable, RequestTimeout
from symphony.protocol.identity import Identity
from symphony.transport.base import TransportOffence
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport
from symphony.transport.rpcmux import (
    MUX_PROTOCOL,
    MuxClient,
    MuxServer,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from symphony.transport.stranger import Stranger, frame, open_stranger

from .test_libp2p import ECHO, echo, link, open_nodes, wait_for_offences, wait_until

HOLD = "/symphony/test-hold/1.0.0"


def stranger_addr(stranger: Stranger) -> str:
    addr = str(stranger.host.get_addrs()[0])
    return addr if "/p2p/" in addr else f"{addr}/p2p/{stranger.peer_id}"


def test_frames_round_trip_and_garbage_is_refused() -> None:
    assert decode_request(encode_request(7, ECHO, b"x")) == (7, ECHO, b"x")
    assert decode_reply(encode_reply(7, b"y")) == (7, b"y", "")
    assert decode_reply(encode_reply(7, None, "busy")) == (7, None, "busy")
    for garbage in (b"", b"\x00\x00", b"\x01\x00\x00\x00\x07\x09", encode_reply(7, b"y")):
        with pytest.raises(ValueError):
            decode_request(garbage)


def serve_mux_on(host_set_handler: Callable[..., None], opened: list[ID], seen: list[bytes]) -> None:
    """Serve MUX_PROTOCOL with an echo on a bare host, recording each stream opened to it and
    each request (``b"slow"`` is answered after 0.2 s)."""
    slots = trio.Semaphore(64)

    def admit(peer: str, protocol: str) -> trio.Semaphore:
        slots.acquire_nowait()
        return slots

    async def answer(peer: str, protocol: str, payload: bytes) -> bytes:
        seen.append(payload)
        await trio.sleep(0.2 if payload == b"slow" else 0)
        return payload

    server = MuxServer(answer=answer, admit=admit, report=lambda *a: None, max_request_bytes=1024,
                       max_reply_bytes=1024, read_timeout_s=5, max_in_flight=8, write_timeout_s=5)

    async def serve(stream: INetStream) -> None:
        opened.append(stream.muxed_conn.peer_id)
        await server.serve(stream)

    host_set_handler(TProtocol(MUX_PROTOCOL), serve)


async def test_requests_to_a_peer_share_one_stream_and_replies_come_in_any_order() -> None:
    """Twenty requests, five at a time, open one stream to the peer; a slow request does not
    hold up a fast one sent after it on the same stream."""
    opened: list[ID] = []
    async with open_nodes(1) as [node], open_stranger() as stranger:
        seen: list[bytes] = []
        serve_mux_on(stranger.host.set_stream_handler, opened, seen)
        await node.connect(stranger_addr(stranger))
        replies: list[bytes] = []

        async def ask(payload: bytes) -> None:
            replies.append(await node.request(stranger.peer_id, ECHO, payload, timeout=5))

        for batch in range(4):
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(ask, b"%d" % (batch * 5 + i))
        assert sorted(replies) == sorted(b"%d" % i for i in range(20))
        replies.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, b"slow")
            await wait_until(lambda: b"slow" in seen)
            nursery.start_soon(ask, b"fast")
        assert replies == [b"fast", b"slow"]
        assert len(opened) == 1


async def test_a_peer_without_the_mux_protocol_is_asked_one_stream_per_request() -> None:
    """An older node serves only the per-request format: requests still reach it, each on its own stream."""
    served: list[bytes] = []
    async with open_nodes(1) as [node], open_stranger() as stranger:

        async def old_echo(stream: INetStream) -> None:
            msgio = VarIntLengthMsgReadWriter(stream, 1024)
            served.append(await msgio.read_msg())
            await msgio.write_msg(served[-1])
            await stream.close()

        stranger.host.set_stream_handler(TProtocol(ECHO), old_echo)
        await node.connect(stranger_addr(stranger))
        for payload in (b"one", b"two"):
            assert await node.request(stranger.peer_id, ECHO, payload, timeout=5) == payload
        assert served == [b"one", b"two"]
        with pytest.raises(PeerUnreachable):
            await node.request(stranger.peer_id, HOLD, b"not served", timeout=5)


async def test_held_mux_streams_cannot_starve_others() -> None:
    """A stranger holds mux streams open, one idle and one stopped mid-frame: they take no
    request slot, so an honest peer is served through the node's single slot; the half frame
    is a slow_request offence once the read deadline passes; a third stream is past the
    per-peer cap, and requests past the in-flight cap are refused and counted."""
    config = Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"], max_inbound_streams_per_peer=2,
                          max_concurrent_inbound=1, request_read_timeout_s=0.5)
    release = trio.Event()

    async def hold(peer: str, payload: bytes) -> bytes:
        await release.wait()
        return payload

    async with open_libp2p_transport(Identity.generate(), config) as node, open_nodes(1) as [honest]:
        node.set_handler(ECHO, echo)
        node.set_handler(HOLD, hold)
        node.set_membership(lambda peer: peer == honest.peer_id)
        await link(honest, node)
        async with open_stranger() as stranger:
            peer = await stranger.dial(node.listen_addrs()[0])
            idle = await stranger.open(peer, MUX_PROTOCOL)
            partial = await stranger.open(peer, MUX_PROTOCOL)
            await stranger.try_open(peer, MUX_PROTOCOL)  # past the per-peer cap: reset once negotiated
            await wait_for_offences(node, "too_many_streams", 1)
            await partial.write(frame(encode_request(1, ECHO, b"never finished"))[:6])
            for i in range(5):
                assert await honest.request(node.peer_id, ECHO, b"%d" % i, timeout=5) == b"%d" % i
            await wait_for_offences(node, "slow_request", 1)

            # in flight: the stranger's pool has slots (16), the per-peer cap is 2
            msgio = VarIntLengthMsgReadWriter(idle, 1024)
            for rid in (1, 2, 3):
                await msgio.write_msg(encode_request(rid, HOLD, b"held"))
            assert decode_reply(await msgio.read_msg()) == (3, None, "too many requests in flight")
            await wait_for_offences(node, "too_many_streams", 2)
            assert await honest.request(node.peer_id, ECHO, b"still served", timeout=5) == b"still served"
            release.set()
            assert sorted([decode_reply(await msgio.read_msg())[0] for _ in range(2)]) == [1, 2]


def mux_server(answer: Callable[..., object]) -> MuxServer:
    """A mux server with ``answer`` and room for everything (the defences are tested above)."""
    slots = trio.Semaphore(64)

    def admit(peer: str, protocol: str) -> trio.Semaphore:
        slots.acquire_nowait()
        return slots

    return MuxServer(answer=answer, admit=admit, report=lambda *a: None, max_request_bytes=1024,  # type: ignore[arg-type]
                     max_reply_bytes=1024, read_timeout_s=5, max_in_flight=8, write_timeout_s=5)


async def test_a_stream_that_stays_silent_through_a_timeout_is_replaced() -> None:
    """A peer's first mux stream reads requests and never answers (a stuck stream): the request on it
    times out, and the next request goes on a new stream and is answered (before, every later
    request to that peer waited on the silent stream until the connection closed)."""
    opened: list[int] = []
    async with open_nodes(1) as [node], open_stranger() as stranger:
        server = mux_server(_echoed)

        async def serve(stream: INetStream) -> None:
            opened.append(1)
            if len(opened) == 1:
                with contextlib.suppress(Exception):  # until our side resets it
                    while await stream.read(1024):  # swallow every request, answer none
                        pass
                return
            await server.serve(stream)

        stranger.host.set_stream_handler(TProtocol(MUX_PROTOCOL), serve)
        await node.connect(stranger_addr(stranger))
        with pytest.raises(RequestTimeout):
            await node.request(stranger.peer_id, ECHO, b"lost", timeout=0.5)
        assert await node.request(stranger.peer_id, ECHO, b"answered", timeout=5) == b"answered"
        assert len(opened) == 2


async def _echoed(peer: str, protocol: str, payload: bytes) -> bytes:
    return payload


async def test_a_timeout_on_a_slow_stream_lets_the_requests_already_on_it_finish() -> None:
    """A request that times out while nothing came back on its stream retires the stream, but a slower
    request already on it is still answered there (abandoning the stream on any timeout failed it);
    the next request opens a new stream."""
    opened: list[int] = []
    release = trio.Event()

    async def answer(peer: str, protocol: str, payload: bytes) -> bytes | None:
        if payload == b"hang":
            await trio.sleep_forever()
        await release.wait()
        return payload

    async with open_nodes(1) as [node], open_stranger() as stranger:
        server = mux_server(answer)

        async def serve(stream: INetStream) -> None:
            opened.append(1)
            await server.serve(stream)

        stranger.host.set_stream_handler(TProtocol(MUX_PROTOCOL), serve)
        await node.connect(stranger_addr(stranger))
        replies: list[bytes] = []

        async def slow() -> None:
            replies.append(await node.request(stranger.peer_id, ECHO, b"slow", timeout=10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            with pytest.raises(RequestTimeout):
                await node.request(stranger.peer_id, ECHO, b"hang", timeout=0.5)
            release.set()
        assert replies == [b"slow"]
        assert await node.request(stranger.peer_id, ECHO, b"next", timeout=5) == b"next"
        assert len(opened) == 2


async def test_bad_frames_on_a_mux_stream_are_each_their_own_offence() -> None:
    """The chunked frame reader keeps the stream's defences: a length over the limit, a length that
    is no varint, and a stream ending inside a frame are each counted against the peer on the mux
    protocol, and an honest peer is still served."""
    config = Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"], max_request_bytes=1024)
    bad = {
        "oversized_request": b"\xff\x7f" + b"x" * 8,  # 16,383 bytes announced
        "malformed_request": b"\xff" * 12,
        "truncated_request": frame(encode_request(1, ECHO, b"cut short"))[:9],
    }
    async with open_libp2p_transport(Identity.generate(), config) as node, open_nodes(1) as [honest]:
        node.set_handler(ECHO, echo)
        offences: list[TransportOffence] = []
        node.on_offence(offences.append)
        async with open_stranger() as stranger:
            peer = await stranger.dial(node.listen_addrs()[0])
            for data in bad.values():
                stream = await stranger.open(peer, MUX_PROTOCOL)
                await stream.write(data)
                await stream.close()
            await wait_until(lambda: {o.reason for o in offences} >= set(bad))
        assert {o.protocol for o in offences} == {MUX_PROTOCOL}
        await link(honest, node)
        assert await honest.request(node.peer_id, ECHO, b"still served", timeout=5) == b"still served"


class _SilentStream:
    """A stream (the edge of this unit test) that takes every write, answers nothing and ends its read
    with ``StreamReset`` once reset; counts the resets."""

    def __init__(self) -> None:
        self.resets = 0
        self._reset = trio.Event()

    async def write(self, data: bytes) -> None:
        pass

    async def read(self, n: int | None = None) -> bytes:
        await self._reset.wait()
        raise StreamReset("reset")

    async def reset(self) -> None:
        self.resets += 1
        self._reset.set()


async def test_a_retired_stream_is_reset_once(autojump_clock) -> None:
    """A request that times out on a silent stream retires it; its reset ends the stream's reader,
    which must not reset it a second time (it did: once by the request, once by the reader)."""
    stream = _SilentStream()

    async def open_stream(peer: ID) -> INetStream:
        return stream  # type: ignore[return-value]

    async with trio.open_nursery() as nursery:
        client = MuxClient(open_stream, nursery.start_soon, max_reply_bytes=1024)
        with trio.move_on_after(1):
            await client.request(ID(b"peer"), ECHO, b"lost")
    assert client.abandoned == 1 and stream.resets == 1
