"""The libp2p engine against real hosts on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from libp2p.network.stream.exceptions import StreamEOF, StreamReset

from symphony.errors import ConfigError, PeerUnreachable, RequestTimeout, TransportError
from symphony.protocol.identity import Identity
from symphony.transport.base import PeerEvent, Transport, TransportOffence
from symphony.transport.libp2p import Libp2pConfig, Libp2pTransport, check_port_free, open_libp2p_transport
from symphony.transport.stranger import (
    GARBAGE,
    NON_UTF8_PROTOCOL_LINE,
    forged_publish,
    frame,
    open_stranger,
    write_and_close,
)

LOOPBACK = Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"])
ECHO = "/symphony/test-echo/1.0.0"
TOPIC = "symphony/test"


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.05)


@asynccontextmanager
async def open_nodes(count: int) -> AsyncIterator[list[Libp2pTransport]]:
    async with AsyncExitStack() as stack:
        nodes = [open_libp2p_transport(Identity.generate(), LOOPBACK) for _ in range(count)]
        yield [await stack.enter_async_context(node) for node in nodes]


async def link(dialer: Libp2pTransport, listener: Libp2pTransport) -> None:
    """Connect ``dialer`` to ``listener`` and wait until both sides list each other."""
    assert await dialer.connect(listener.listen_addrs()[0]) == listener.peer_id
    await wait_until(lambda: dialer.peer_id in listener.peers() and listener.peer_id in dialer.peers())


class Inbox:
    """Records pubsub deliveries as ``(source, data)``."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    async def __call__(self, source: str, data: bytes) -> None:
        self.items.append((source, data))

    def data(self) -> list[bytes]:
        return [data for _, data in self.items]


async def echo(peer: str, payload: bytes) -> bytes:
    return payload


# -- identity and addresses --------------------------------------------------------


async def test_peer_id_is_the_agent_id() -> None:
    """The libp2p peer ID equals the identity's agent ID."""
    identity = Identity.generate()
    async with open_libp2p_transport(identity, LOOPBACK) as node:
        assert node.peer_id == identity.agent_id
        assert node.listen_addrs()[0].endswith(f"/p2p/{identity.agent_id}")


async def test_listen_addrs_show_the_bound_port() -> None:
    """Asking for tcp/0 reports the real port, with our /p2p suffix."""
    async with open_nodes(1) as [node]:
        [addr] = node.listen_addrs()
        _, ip4, host, tcp, port, p2p, peer_id = addr.split("/")
        assert (ip4, host, tcp, p2p, peer_id) == ("ip4", "127.0.0.1", "tcp", "p2p", node.peer_id)
        assert int(port) > 0


async def test_implements_the_transport_interface() -> None:
    """Libp2pTransport fits the Transport protocol (checked by mypy) and is usable as one."""
    async with open_nodes(1) as [node]:
        transport: Transport = node
        assert transport.peers() == []


# -- connections and peer events ---------------------------------------------------


async def test_connect_emits_join_on_both_sides() -> None:
    """Both ends see one join event naming the other and list it in peers()."""
    async with open_nodes(2) as [a, b]:
        a_events: list[PeerEvent] = []
        b_events: list[PeerEvent] = []
        a.on_peer_event(a_events.append)
        b.on_peer_event(b_events.append)
        await link(a, b)
        await wait_until(lambda: bool(a_events) and bool(b_events))
        assert a_events == [PeerEvent("join", b.peer_id)]
        assert b_events == [PeerEvent("join", a.peer_id)]
        assert a.peers() == [b.peer_id] and b.peers() == [a.peer_id]


async def test_closing_a_peer_emits_leave() -> None:
    """When a peer's transport closes, the other side gets a leave event."""
    async with open_nodes(1) as [a]:
        events: list[PeerEvent] = []
        a.on_peer_event(events.append)
        async with open_nodes(1) as [b]:
            await link(a, b)
            b_id = b.peer_id
        await wait_until(lambda: PeerEvent("leave", b_id) in events)
        assert events == [PeerEvent("join", b_id), PeerEvent("leave", b_id)]
        assert a.peers() == []


async def test_failing_peer_event_handler_does_not_stop_others() -> None:
    """A raising event handler is logged; later handlers still run."""
    async with open_nodes(2) as [a, b]:
        events: list[PeerEvent] = []

        def broken(event: PeerEvent) -> None:
            raise RuntimeError("handler bug")

        a.on_peer_event(broken)
        a.on_peer_event(events.append)
        await link(a, b)
        await wait_until(lambda: bool(events))
        assert events == [PeerEvent("join", b.peer_id)]


@pytest.mark.parametrize(
    "addr",
    [
        "not-a-multiaddr",
        "/ip4/999.0.0.1/tcp/4001/p2p/12D3KooWBY6sdkyGFL8rnoMjDxkv4LxEgVwTWVPrQQCbvi5vok7W",
        "/ip4/127.0.0.1/tcp/4001",
        "",
    ],
)
async def test_malformed_multiaddr_raises_config_error(addr: str) -> None:
    """A malformed address or one without /p2p/<id> is a local error."""
    async with open_nodes(1) as [node]:
        with pytest.raises(ConfigError):
            await node.connect(addr)


async def test_a_dial_returns_once_connected_without_waiting_out_the_happy_eyeballs_head_start(
    mock_clock: trio.testing.MockClock,
) -> None:
    """py-libp2p's ``Swarm.dial_peer`` waited its 250 ms head start even after the dial connected;
    ours returns when it connects. Virtual time advances only while every task has been idle for
    50 ms of real time (a loopback handshake never is), so the dial's virtual duration is exactly
    the timers it waited out."""
    mock_clock.autojump_threshold = 0.05
    async with open_nodes(2) as (a, b):
        started = trio.current_time()
        assert await a.connect(b.listen_addrs()[0]) == b.peer_id
        assert trio.current_time() - started < 0.25
        assert b.peer_id in a.peers()


async def test_connect_to_self_raises_config_error() -> None:
    """Dialling our own address is refused."""
    async with open_nodes(1) as [node]:
        with pytest.raises(ConfigError, match="own peer id"):
            await node.connect(node.listen_addrs()[0])


async def test_connect_to_a_closed_node_raises_peer_unreachable() -> None:
    """Dialling an address nobody listens on any more fails with PeerUnreachable."""
    async with open_nodes(1) as [gone]:
        addr = gone.listen_addrs()[0]
    async with open_nodes(1) as [node]:
        with pytest.raises(PeerUnreachable):
            await node.connect(addr)
        assert node.peers() == []


async def test_connect_with_the_wrong_peer_id_raises_peer_unreachable() -> None:
    """Noise rejects a listener whose key does not match the /p2p/ ID we asked for."""
    async with open_nodes(2) as [a, b]:
        impostor = Identity.generate().agent_id
        addr = b.listen_addrs()[0].replace(b.peer_id, impostor)
        with pytest.raises(PeerUnreachable):
            await a.connect(addr)
        assert impostor not in a.peers()


# -- request/response --------------------------------------------------------------


async def test_request_round_trip_counts_payload_bytes_on_both_sides() -> None:
    """The reply comes back and both sides count exactly the payload sizes."""
    async with open_nodes(2) as [client, server]:

        async def handler(peer: str, payload: bytes) -> bytes:
            assert peer == client.peer_id
            return b"r" * 300

        server.set_handler(ECHO, handler)
        await link(client, server)
        reply = await client.request(server.peer_id, ECHO, b"q" * 1000, timeout=5)
        assert reply == b"r" * 300
        assert client.stats.snapshot() == {
            "bytes_sent": {ECHO: 1000},
            "bytes_received": {ECHO: 300},
            "messages_sent": {ECHO: 1},
            "messages_received": {ECHO: 1},
            "offences": {},
            "refused": {},
        }
        assert server.stats.snapshot() == {
            "bytes_sent": {ECHO: 300},
            "bytes_received": {ECHO: 1000},
            "messages_sent": {ECHO: 1},
            "messages_received": {ECHO: 1},
            "offences": {},
            "refused": {},
        }


async def test_handler_set_after_connecting_is_served() -> None:
    """Handlers can be registered after peers are already connected."""
    async with open_nodes(2) as [client, server]:
        await link(client, server)
        server.set_handler(ECHO, echo)
        assert await client.request(server.peer_id, ECHO, b"late", timeout=5) == b"late"


async def test_failing_handler_fails_the_request_and_server_keeps_serving() -> None:
    """A raising or non-bytes handler surfaces as a TransportError; the next request succeeds."""
    async with open_nodes(2) as [client, server]:

        async def handler(peer: str, payload: bytes) -> bytes:
            if payload == b"boom":
                raise RuntimeError("handler bug")
            if payload == b"text":
                return "not bytes"  # type: ignore[return-value]
            return payload

        server.set_handler(ECHO, handler)
        await link(client, server)
        for bad in (b"boom", b"text"):
            with pytest.raises(TransportError):
                await client.request(server.peer_id, ECHO, bad, timeout=5)
        assert await client.request(server.peer_id, ECHO, b"fine", timeout=5) == b"fine"


async def test_request_for_an_unserved_protocol_raises_peer_unreachable() -> None:
    """Asking a peer for a protocol it has no handler for fails."""
    async with open_nodes(2) as [client, server]:
        await link(client, server)
        with pytest.raises(PeerUnreachable, match="does not serve"):
            await client.request(server.peer_id, "/symphony/nothing/1.0.0", b"x", timeout=5)


@pytest.mark.parametrize("peer", [Identity.generate().agent_id, "not a peer id"])
async def test_request_to_an_unknown_peer_raises_peer_unreachable(peer: str) -> None:
    """A peer we never connected to is unreachable; nothing is dialled."""
    async with open_nodes(1) as [node]:
        with pytest.raises(PeerUnreachable):
            await node.request(peer, ECHO, b"x", timeout=5)
        assert node.stats.snapshot()["bytes_sent"] == {}


async def test_request_after_the_peer_left_raises_peer_unreachable() -> None:
    """Once a peer's connection is gone, requests fail instead of redialling it."""
    async with open_nodes(1) as [client]:
        async with open_nodes(1) as [server]:
            server.set_handler(ECHO, echo)
            await link(client, server)
            server_id = server.peer_id
        await wait_until(lambda: client.peers() == [])
        with pytest.raises(PeerUnreachable):
            await client.request(server_id, ECHO, b"x", timeout=5)


async def test_slow_handler_raises_request_timeout() -> None:
    """No reply before the deadline raises RequestTimeout."""
    async with open_nodes(2) as [client, server]:
        release = trio.Event()

        async def stuck(peer: str, payload: bytes) -> bytes:
            await release.wait()
            return payload

        server.set_handler(ECHO, stuck)
        await link(client, server)
        with pytest.raises(RequestTimeout):
            await client.request(server.peer_id, ECHO, b"x", timeout=0.3)
        release.set()


async def test_request_bad_arguments_raise_config_error() -> None:
    """A non-positive timeout or an oversized payload is a local error."""
    async with open_nodes(2) as [client, server]:
        await link(client, server)
        with pytest.raises(ConfigError, match="timeout"):
            await client.request(server.peer_id, ECHO, b"x", timeout=0)
        with pytest.raises(ConfigError, match="max_request_bytes"):
            await client.request(server.peer_id, ECHO, b"x" * (LOOPBACK.max_request_bytes + 1), timeout=5)


# -- publish/subscribe -------------------------------------------------------------


async def test_pubsub_crosses_a_line_exactly_once_and_skips_the_publisher() -> None:
    """A-B-C line: A's message reaches C through B once, and never A itself.

    Everyone subscribes before connecting, so the mesh must form on connection.
    """
    async with open_nodes(3) as [a, b, c]:
        inbox = {node.peer_id: Inbox() for node in (a, b, c)}
        for node in (a, b, c):
            await node.subscribe(TOPIC, inbox[node.peer_id])
        await link(a, b)
        await link(c, b)
        await wait_until(lambda: a.mesh_peers(TOPIC) == [b.peer_id] and c.mesh_peers(TOPIC) == [b.peer_id])
        await wait_until(lambda: set(b.mesh_peers(TOPIC)) == {a.peer_id, c.peer_id})

        await a.publish(TOPIC, b"from-a")
        # A later message on the same path flushes any duplicate of the first one.
        await a.publish(TOPIC, b"marker-a")
        await wait_until(lambda: b"marker-a" in inbox[c.peer_id].data())
        assert inbox[c.peer_id].items == [(a.peer_id, b"from-a"), (a.peer_id, b"marker-a")]
        await wait_until(lambda: b"marker-a" in inbox[b.peer_id].data())
        assert inbox[b.peer_id].data() == [b"from-a", b"marker-a"]

        await c.publish(TOPIC, b"marker-c")
        await wait_until(lambda: b"marker-c" in inbox[a.peer_id].data())
        assert inbox[a.peer_id].items == [(c.peer_id, b"marker-c")]
        assert c.stats.messages_received[TOPIC] == 2 and c.stats.bytes_received[TOPIC] == len(b"from-amarker-a")
        assert a.stats.messages_sent[TOPIC] == 2 and a.stats.bytes_sent[TOPIC] == len(b"from-amarker-a")


async def test_twenty_quick_messages_all_arrive() -> None:
    """A burst beyond py-libp2p's default 10 msg/s spam limit is delivered in full."""
    async with open_nodes(2) as [a, b]:
        inbox = Inbox()
        await b.subscribe(TOPIC, inbox)
        await a.subscribe(TOPIC, Inbox())
        await link(a, b)
        await wait_until(lambda: a.mesh_peers(TOPIC) == [b.peer_id])
        sent = [b"msg-%02d" % i for i in range(20)]
        for data in sent:
            await a.publish(TOPIC, data)
        await wait_until(lambda: len(inbox.items) >= 20)
        assert sorted(inbox.data()) == sent


async def test_pubsub_handler_error_does_not_stop_delivery() -> None:
    """A message handler that raises is logged and the next message still arrives."""
    async with open_nodes(2) as [a, b]:
        received: list[bytes] = []

        async def flaky(source: str, data: bytes) -> None:
            received.append(data)
            if data == b"first":
                raise RuntimeError("handler bug")

        await b.subscribe(TOPIC, flaky)
        await a.subscribe(TOPIC, Inbox())
        await link(a, b)
        await wait_until(lambda: a.mesh_peers(TOPIC) == [b.peer_id])
        await a.publish(TOPIC, b"first")
        await a.publish(TOPIC, b"second")
        await wait_until(lambda: b"second" in received)
        assert received == [b"first", b"second"]


async def test_subscribing_again_replaces_the_handler() -> None:
    """A second subscribe to the same topic swaps the handler; no double delivery."""
    async with open_nodes(2) as [a, b]:
        old, new = Inbox(), Inbox()
        await b.subscribe(TOPIC, old)
        await b.subscribe(TOPIC, new)
        await a.subscribe(TOPIC, Inbox())
        await link(a, b)
        await wait_until(lambda: a.mesh_peers(TOPIC) == [b.peer_id])
        await a.publish(TOPIC, b"hello")
        await wait_until(lambda: bool(new.items))
        assert new.data() == [b"hello"] and old.items == []


async def test_oversized_publish_raises_config_error() -> None:
    """Publishing above max_publish_bytes is refused locally."""
    async with open_nodes(1) as [node]:
        with pytest.raises(ConfigError, match="max_publish_bytes"):
            await node.publish(TOPIC, b"x" * (LOOPBACK.max_publish_bytes + 1))


# -- configuration and lifecycle ---------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"listen": []},
        {"listen": ["garbage"]},
        {"listen": ["/ip4/127.0.0.1/udp/0"]},
        {"listen": ["/ip4/127.0.0.1/tcp/0"], "gossip_degree": 0},
        {"listen": ["/ip4/127.0.0.1/tcp/0"], "max_publish_bytes": 2 * 1024 * 1024},
    ],
)
def test_bad_config_raises_config_error(kwargs: dict[str, object]) -> None:
    """Libp2pConfig rejects bad values when constructed."""
    with pytest.raises(ConfigError):
        Libp2pConfig(**kwargs)  # type: ignore[arg-type]


def _task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_closing_leaves_no_tasks_behind() -> None:
    """After busy nodes close, the task tree is back to its size before they opened."""
    before = _task_count()
    async with open_nodes(2) as [a, b]:
        b.set_handler(ECHO, echo)
        await a.subscribe(TOPIC, Inbox())
        await b.subscribe(TOPIC, Inbox())
        await link(a, b)
        await a.request(b.peer_id, ECHO, b"x", timeout=5)
        await a.publish(TOPIC, b"x")
    assert _task_count() == before


def test_heartbeat_backs_off_from_the_peers_it_prunes() -> None:
    """An oversubscribed mesh is pruned to D and the pruned peers are in backoff, so the next
    heartbeat with an empty mesh grafts others instead of re-grafting them (which the pruned
    peers would punish as a GRAFT flood). The router's pubsub is a stub holding only the
    topic's peer list, the one thing the heartbeat reads from it."""
    from types import SimpleNamespace

    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

    from symphony.transport.libp2p import _build_router

    router = _build_router(Libp2pConfig(["/ip4/127.0.0.1/tcp/0"], gossip_degree=3))
    peers = {ID.from_pubkey(create_new_key_pair(bytes([i + 1]) * 32).public_key) for i in range(10)}
    router.pubsub = SimpleNamespace(peer_topics={TOPIC: set(peers)})  # type: ignore[assignment]
    router.peer_protocol.update(dict.fromkeys(peers, PROTOCOL_ID_V11))
    router.mesh[TOPIC] = set(peers)

    _, pruned = router.mesh_heartbeat()
    assert len(router.mesh[TOPIC]) == 3 and len(pruned) == 7
    assert all(router._check_back_off(peer, TOPIC) for peer in pruned)

    router.mesh[TOPIC] = set()
    grafted, _ = router.mesh_heartbeat()
    assert grafted and not set(grafted) & set(pruned)


# -- hostile peers -----------------------------------------------------------------


async def wait_for_offences(node: Libp2pTransport, reason: str, count: int) -> None:
    await wait_until(lambda: node.stats.offences[reason] >= count)


async def test_every_served_protocol_survives_every_kind_of_garbage() -> None:
    """A stranger writes each kind of garbage on every protocol the node serves (read from the
    node's own handler table) and on an unnegotiated stream: the node resets what it cannot
    parse, counts it against the stranger, and two honest nodes still talk through it."""
    async with open_nodes(2) as [node, honest], open_stranger() as stranger:
        node.set_handler(ECHO, echo)
        await node.subscribe(TOPIC, Inbox())
        offences: list[TransportOffence] = []
        node.on_offence(offences.append)
        peer = await stranger.dial(node.listen_addrs()[0])
        protocols = node.served_protocols()
        assert {ECHO, "/meshsub/1.0.0", "/meshsub/1.1.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(protocols)
        for protocol in protocols:
            for data in GARBAGE.values():
                await write_and_close(await stranger.open(peer, protocol), data)
        await write_and_close(await stranger.open_unnegotiated(peer), NON_UTF8_PROTOCOL_LINE)
        for seqno, protocol in enumerate(("/meshsub/1.0.0", "/meshsub/1.1.0")):
            await write_and_close(await stranger.open(peer, protocol), forged_publish(TOPIC, seqno))

        # Deterministic outcomes: protobuf parse errors on both gossipsub versions, the
        # non-UTF-8 negotiation line, the two forged messages, and a too-large and a
        # truncated request on ECHO.
        await wait_for_offences(node, "protocol_error", 3)
        await wait_for_offences(node, "invalid_message", 2)
        await wait_for_offences(node, "oversized_request", 1)
        await wait_for_offences(node, "truncated_request", 1)
        assert {o.peer_id for o in offences} == {stranger.peer_id}
        assert {"/meshsub/1.0.0", "/meshsub/1.1.0", "/multistream/1.0.0"} <= {o.protocol for o in offences}

        inbox = Inbox()
        await honest.subscribe(TOPIC, inbox)
        await link(honest, node)
        assert await honest.request(node.peer_id, ECHO, b"still here", timeout=5) == b"still here"
        await wait_until(lambda: node.mesh_peers(TOPIC) == [honest.peer_id])
        await node.publish(TOPIC, b"and gossiping")
        await wait_until(lambda: inbox.data() == [b"and gossiping"])


async def test_a_peer_cannot_hold_more_than_its_share_of_a_protocol() -> None:
    """Silent streams beyond the per-peer cap are reset and counted; an honest request on the
    same protocol is still served, and the stranger is served again once its streams end."""
    config = Libp2pConfig(
        listen=LOOPBACK.listen, max_inbound_streams_per_peer=3, max_concurrent_inbound=4, request_read_timeout_s=3600
    )
    async with open_libp2p_transport(Identity.generate(), config) as node, open_nodes(1) as [honest]:
        node.set_handler(ECHO, echo)
        async with open_stranger() as stranger:
            peer = await stranger.dial(node.listen_addrs()[0])
            # The node resets streams past the cap as soon as they are negotiated, which may
            # be before the stranger's side has finished negotiating: such opens fail.
            silent = [await stranger.try_open(peer, ECHO) for _ in range(10)]
            await wait_for_offences(node, "too_many_streams", 7)
            await link(honest, node)
            assert await honest.request(node.peer_id, ECHO, b"mine", timeout=5) == b"mine"
            for stream in silent:
                if stream is not None:
                    await stream.reset()
            stream = await stranger.open(peer, ECHO)
            await stream.write(frame(b"now polite"))
            assert await stream.read() == frame(b"now polite")
        assert node.stats.offences["too_many_streams"] == 7


async def test_requests_past_a_protocols_slots_are_refused_and_counted() -> None:
    """When every slot of a protocol is taken, the next stream is reset and counted as refused
    (local overload, not an offence of the peer)."""
    config = Libp2pConfig(listen=LOOPBACK.listen, max_concurrent_inbound=2, request_read_timeout_s=3600)
    async with open_libp2p_transport(Identity.generate(), config) as node, open_stranger() as stranger:
        node.set_handler(ECHO, echo)
        peer = await stranger.dial(node.listen_addrs()[0])
        for _ in range(3):
            await stranger.try_open(peer, ECHO)
        await wait_until(lambda: node.stats.refused[ECHO] == 1)
        assert node.stats.offences == {}


async def test_strangers_cannot_take_a_members_slot() -> None:
    """Strangers that fill their own pool are refused, while a member's request is still served."""
    config = Libp2pConfig(listen=LOOPBACK.listen, max_concurrent_inbound_strangers=2, request_read_timeout_s=3600)
    member = Identity.generate()
    async with (open_libp2p_transport(Identity.generate(), config) as node, open_stranger() as stranger,
                open_libp2p_transport(member, LOOPBACK) as honest):
        node.set_handler(ECHO, echo)
        node.set_membership(lambda peer: peer == member.agent_id)
        peer = await stranger.dial(node.listen_addrs()[0])
        for _ in range(3):
            await stranger.try_open(peer, ECHO)
        await wait_until(lambda: node.stats.refused[f"{ECHO} (strangers)"] == 1)
        await honest.connect(node.listen_addrs()[0])
        assert await honest.request(node.peer_id, ECHO, b"member", timeout=10) == b"member"
        assert node.stats.refused[ECHO] == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "slow_request"),
        (b"", "truncated_request"),
        (GARBAGE["truncated_frame"], "truncated_request"),
        (GARBAGE["huge_length_prefix"], "oversized_request"),
        (b"\xff" * 11, "malformed_request"),
    ],
)
async def test_a_request_not_sent_in_time_and_in_shape_is_reset(data: bytes | None, reason: str) -> None:
    """A silent, truncated, oversized or unparseable request never reaches the handler: the
    stream is reset and the sender reported, within the short read deadline."""
    config = Libp2pConfig(listen=LOOPBACK.listen, request_read_timeout_s=0.2)
    async with open_libp2p_transport(Identity.generate(), config) as node, open_stranger() as stranger:
        called: list[bytes] = []

        async def handler(peer: str, payload: bytes) -> bytes:
            called.append(payload)
            return payload

        node.set_handler(ECHO, handler)
        offences: list[TransportOffence] = []
        node.on_offence(offences.append)
        stream = await stranger.open(await stranger.dial(node.listen_addrs()[0]), ECHO)
        if data is not None:
            await write_and_close(stream, data)
        with pytest.raises((StreamReset, StreamEOF)):
            while True:  # until the node resets the stream
                if not await stream.read():
                    raise StreamEOF
        assert offences == [TransportOffence(stranger.peer_id, ECHO, reason)] and called == []


def test_port_probe_sees_a_live_listener_but_not_time_wait() -> None:
    """check_port_free refuses a port someone listens on, and accepts one whose only sockets
    are connections in TIME_WAIT (what a crashed node leaves)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(ConfigError, match="another process holds the port"):
            check_port_free(f"/ip4/127.0.0.1/tcp/{port}")
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
    accepted.close()  # the side that closes first keeps the port in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    check_port_free(f"/ip4/127.0.0.1/tcp/{port}")
