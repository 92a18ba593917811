"""The memory engine: Transport semantics, link models, partitions, crashes, gossip at scale."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from symphony.errors import ConfigError, PeerUnreachable, RequestTimeout
from symphony.protocol.identity import Identity
from symphony.transport.base import PeerEvent, Transport
from symphony.transport.memory import LinkModel, MemoryNetwork, MemoryTransport

PROTO = "/test/echo/1"
TOPIC = "test-topic"


def identity(i: int) -> Identity:
    return Identity(i.to_bytes(32, "big"))


@asynccontextmanager
async def open_nodes(network: MemoryNetwork, count: int) -> AsyncIterator[list[MemoryTransport]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(network.open_node(identity(i))) for i in range(count)
        ]


async def link(a: MemoryTransport, b: MemoryTransport) -> None:
    await a.connect(b.listen_addrs()[0])


async def echo(peer: str, payload: bytes) -> bytes:
    return b"echo:" + payload


async def ignore(source: str, data: bytes) -> None:
    pass


class Recorder:
    """A pubsub handler that remembers what it got and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = trio.Event()

    async def __call__(self, source: str, data: bytes) -> None:
        self.items.append((source, data))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while len(self.items) < count:
                await self._changed.wait()


class Deliveries:
    """An ``on_deliver`` hook that records deliveries and can wait for a number of them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, int, float]] = []
        self._target = math.inf
        self._reached = trio.Event()

    def __call__(self, msg_id: str, receiver: str, hops: int, time: float) -> None:
        self.log.append((msg_id, receiver, hops, time))
        if len(self.log) >= self._target:
            self._reached.set()

    async def wait_for(self, count: int, timeout: float = 60) -> None:
        self._target = count
        if len(self.log) < count:
            with trio.fail_after(timeout):
                await self._reached.wait()


def as_transport(node: MemoryTransport) -> Transport:
    return node  # mypy checks that MemoryTransport satisfies the Transport protocol


def test_memory_transport_has_every_transport_member() -> None:
    """Every public member of the Transport protocol exists on MemoryTransport."""
    members = {name for name in vars(Transport) if not name.startswith("_")}
    assert members and all(hasattr(MemoryTransport, name) for name in members)


# -- request/response --------------------------------------------------------------------


async def test_request_returns_reply_and_counts_payload_bytes() -> None:
    """A request gets the handler's reply; both ends count payload bytes and messages."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        assert await a.request(b.peer_id, PROTO, b"hello", timeout=1) == b"echo:hello"
        assert a.stats.snapshot() == {
            "bytes_sent": {PROTO: 5},
            "bytes_received": {PROTO: 10},
            "messages_sent": {PROTO: 1},
            "messages_received": {PROTO: 1},
            "offences": {},
            "refused": {},
        }
        assert b.stats.bytes_received[PROTO] == 5 and b.stats.bytes_sent[PROTO] == 10


async def test_handler_sees_the_authenticated_caller() -> None:
    """The handler's ``peer`` argument is the caller's peer ID."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):

        async def whoami(peer: str, payload: bytes) -> bytes:
            return peer.encode()

        b.set_handler(PROTO, whoami)
        await link(a, b)
        assert await a.request(b.peer_id, PROTO, b"", timeout=1) == a.peer_id.encode()


async def test_request_takes_exactly_one_round_trip_of_latency(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With 50 ms each way, a request returns exactly 100 ms after it was sent."""
    async with open_nodes(MemoryNetwork(link=LinkModel(latency_s=0.05)), 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        start = trio.current_time()
        await a.request(b.peer_id, PROTO, b"x", timeout=1)
        assert trio.current_time() == start + 0.05 + 0.05


async def test_bandwidth_adds_transfer_time(autojump_clock: trio.abc.Clock) -> None:
    """1000 bytes at 8000 bit/s take 1 s more than latency; the 1005-byte reply 1.005 s."""
    network = MemoryNetwork(link=LinkModel(latency_s=0.25, bandwidth_bps=8000))
    async with open_nodes(network, 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        start = trio.current_time()
        await a.request(b.peer_id, PROTO, bytes(1000), timeout=10)
        assert trio.current_time() == start + (0.25 + 1.0) + (0.25 + 1005 * 8 / 8000)


async def test_connect_takes_one_round_trip(autojump_clock: trio.abc.Clock) -> None:
    """A dial costs one round trip of the link's latency."""
    async with open_nodes(MemoryNetwork(link=LinkModel(latency_s=0.125)), 2) as (a, b):
        start = trio.current_time()
        await link(a, b)
        assert trio.current_time() == start + 0.25


async def test_set_link_overrides_one_pair(autojump_clock: trio.abc.Clock) -> None:
    """A per-pair link model applies in both directions, also to a live connection."""
    network = MemoryNetwork(link=LinkModel(latency_s=1.0))
    async with open_nodes(network, 3) as (a, b, c):
        for server in (b, c):
            server.set_handler(PROTO, echo)
        await link(a, b)
        await link(a, c)
        network.set_link(b.peer_id, a.peer_id, LinkModel(latency_s=0.5))
        start = trio.current_time()
        await a.request(b.peer_id, PROTO, b"", timeout=10)
        assert trio.current_time() == start + 0.5 + 0.5
        start = trio.current_time()
        await a.request(c.peer_id, PROTO, b"", timeout=10)
        assert trio.current_time() == start + 1.0 + 1.0


async def test_total_loss_times_out_a_request(autojump_clock: trio.abc.Clock) -> None:
    """With loss=1.0 a request raises RequestTimeout at its deadline."""
    network = MemoryNetwork(link=LinkModel(loss=1.0))
    async with open_nodes(network, 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        start = trio.current_time()
        with pytest.raises(RequestTimeout, match=r"^no reply from .* on '/test/echo/1' in 2 s$"):
            await a.request(b.peer_id, PROTO, b"x", timeout=2)
        assert trio.current_time() == start + 2
        assert network.dropped["loss"] == 1
        assert b.stats.messages_received[PROTO] == 0


async def test_partial_loss_is_drawn_per_message_from_the_seeded_rng(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With loss=0.5 some requests of many get through and some do not."""
    network = MemoryNetwork(link=LinkModel(loss=0.5), rng=random.Random(7))
    async with open_nodes(network, 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        outcomes = []
        for _ in range(40):
            try:
                await a.request(b.peer_id, PROTO, b"", timeout=0.01)
                outcomes.append(True)
            except RequestTimeout:
                outcomes.append(False)
        assert 0 < sum(outcomes) < 40


async def test_unknown_protocol_is_unreachable() -> None:
    """A request for a protocol the peer does not serve fails with PeerUnreachable."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        await link(a, b)
        with pytest.raises(PeerUnreachable, match=r"has no handler for '/nope'$"):
            await a.request(b.peer_id, "/nope", b"", timeout=1)


async def test_handler_error_fails_the_call_and_server_keeps_serving() -> None:
    """A raising handler fails that request only; the next request is served."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):

        async def flaky(peer: str, payload: bytes) -> bytes:
            if payload == b"boom":
                raise RuntimeError("handler bug")
            return payload

        b.set_handler(PROTO, flaky)
        await link(a, b)
        with pytest.raises(PeerUnreachable, match=r"handler for '/test/echo/1' failed$"):
            await a.request(b.peer_id, PROTO, b"boom", timeout=1)
        assert await a.request(b.peer_id, PROTO, b"fine", timeout=1) == b"fine"


async def test_handler_returning_non_bytes_fails_the_call() -> None:
    """A reply that is not bytes is a handler failure, not a crash."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):

        async def wrong(peer: str, payload: bytes) -> bytes:
            return "text"  # type: ignore[return-value]

        b.set_handler(PROTO, wrong)
        await link(a, b)
        with pytest.raises(PeerUnreachable):
            await a.request(b.peer_id, PROTO, b"", timeout=1)


async def test_request_to_unconnected_peer_is_unreachable() -> None:
    """Requests need a direct connection."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        b.set_handler(PROTO, echo)
        with pytest.raises(PeerUnreachable, match=r"is not connected to"):
            await a.request(b.peer_id, PROTO, b"", timeout=1)


async def test_slow_handler_times_out_and_late_reply_is_not_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A reply after the deadline is discarded without being counted as received."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b):
        finishing = trio.Event()

        async def slow(peer: str, payload: bytes) -> bytes:
            await trio.sleep(5)
            finishing.set()
            return b"late"

        b.set_handler(PROTO, slow)
        await link(a, b)
        with pytest.raises(RequestTimeout):
            await a.request(b.peer_id, PROTO, b"", timeout=1)
        await finishing.wait()
        await trio.testing.wait_all_tasks_blocked()  # the reply is now on the wire
        await network.wait_idle()
        assert b.stats.messages_sent[PROTO] == 1
        assert a.stats.messages_received[PROTO] == 0


# -- connections, partitions, crashes -----------------------------------------------------


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW",
        "/memory/x/p2p/abc",
        "/memory/1/p2p/",
        "/memory/1",
    ],
)
async def test_malformed_address_is_config_error(addr: str) -> None:
    """Only /memory/<index>/p2p/<peer_id> is dialable."""
    async with open_nodes(MemoryNetwork(), 1) as (a,):
        with pytest.raises(ConfigError, match=r"^not a memory address"):
            await a.connect(addr)


async def test_dialing_own_address_is_config_error() -> None:
    """A node cannot connect to itself."""
    async with open_nodes(MemoryNetwork(), 1) as (a,):
        with pytest.raises(ConfigError, match=r"own address$"):
            await a.connect(a.listen_addrs()[0])


async def test_dialing_a_missing_node_is_unreachable() -> None:
    """A well-formed address with no node behind it, or another node's ID, fails to dial."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        with pytest.raises(PeerUnreachable, match=r"^no node"):
            await a.connect(f"/memory/99/p2p/{b.peer_id}")
        with pytest.raises(PeerUnreachable, match=r"^no node"):
            await a.connect(b.listen_addrs()[0].replace("/memory/1/", "/memory/0/"))


async def test_connect_fires_join_on_both_sides_before_returning() -> None:
    """Both ends see a join event by the time connect returns; a redial is a no-op."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        seen_a: list[PeerEvent] = []
        seen_b: list[PeerEvent] = []
        a.on_peer_event(seen_a.append)
        b.on_peer_event(seen_b.append)
        assert await a.connect(b.listen_addrs()[0]) == b.peer_id
        assert seen_a == [PeerEvent("join", b.peer_id)]
        assert seen_b == [PeerEvent("join", a.peer_id)]
        assert a.peers() == [b.peer_id] and b.peers() == [a.peer_id]
        await b.connect(a.listen_addrs()[0])
        assert len(seen_a) == len(seen_b) == 1


async def test_simultaneous_dials_make_one_connection(autojump_clock: trio.abc.Clock) -> None:
    """A dialing B while B dials A yields one connection and one join event per side."""
    async with open_nodes(MemoryNetwork(link=LinkModel(latency_s=0.1)), 2) as (a, b):
        joins: list[PeerEvent] = []
        a.on_peer_event(joins.append)
        b.on_peer_event(joins.append)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link, a, b)
            nursery.start_soon(link, b, a)
        assert sorted(e.peer_id for e in joins) == sorted([a.peer_id, b.peer_id])
        assert a.peers() == [b.peer_id] and b.peers() == [a.peer_id]


async def test_raising_peer_event_handler_does_not_break_connect() -> None:
    """A peer event handler that raises is logged; the connection still opens."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):

        def broken(event: PeerEvent) -> None:
            raise RuntimeError("listener bug")

        b.on_peer_event(broken)
        await link(a, b)
        assert b.peers() == [a.peer_id]


async def test_partition_closes_cross_links_with_leave_events() -> None:
    """Cross-group connections close with leave events on both ends; in-group ones stay."""
    network = MemoryNetwork()
    async with open_nodes(network, 3) as (a, b, c):
        await link(a, b)
        await link(a, c)
        events: dict[str, list[PeerEvent]] = {n.peer_id: [] for n in (a, b, c)}
        for n in (a, b, c):
            n.on_peer_event(events[n.peer_id].append)
        network.partition([a.peer_id, b.peer_id])  # c is left alone in the unlisted group
        assert a.peers() == [b.peer_id]
        assert events[a.peer_id] == [PeerEvent("leave", c.peer_id)]
        assert events[c.peer_id] == [PeerEvent("leave", a.peer_id)]
        assert events[b.peer_id] == []


async def test_partition_blocks_dials_and_heal_lets_redials_through() -> None:
    """Dials across a partition fail; after heal nothing reconnects until a node redials."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        network.partition([a.peer_id], [b.peer_id])
        with pytest.raises(PeerUnreachable, match=r"partitioned away"):
            await link(a, b)
        with pytest.raises(PeerUnreachable):
            await a.request(b.peer_id, PROTO, b"", timeout=1)
        network.heal()
        assert a.peers() == []
        await link(a, b)
        assert await a.request(b.peer_id, PROTO, b"again", timeout=1) == b"echo:again"


async def test_partition_fails_requests_in_flight_at_once(autojump_clock: trio.abc.Clock) -> None:
    """A request on a connection cut by a partition fails when the cut happens."""
    network = MemoryNetwork(link=LinkModel(latency_s=1.0))
    async with open_nodes(network, 2) as (a, b), trio.open_nursery() as nursery:
        b.set_handler(PROTO, echo)
        await link(a, b)
        start = trio.current_time()

        async def cut_later() -> None:
            await trio.sleep(0.5)
            network.partition([a.peer_id])

        nursery.start_soon(cut_later)
        with pytest.raises(PeerUnreachable, match=r"closed$"):
            await a.request(b.peer_id, PROTO, b"", timeout=10)
        assert trio.current_time() == start + 0.5
        await network.wait_idle()
        assert network.dropped["disconnected"] == 1
        assert b.stats.messages_received[PROTO] == 0


async def test_partition_blocks_gossip_until_heal_and_redial() -> None:
    """Pubsub does not cross a partition; after heal and redial it flows again."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b):
        got = Recorder()
        await b.subscribe(TOPIC, got)
        await a.subscribe(TOPIC, ignore)
        await link(a, b)
        network.partition([a.peer_id])
        await a.publish(TOPIC, b"lost")
        await network.wait_idle()
        network.heal()
        await link(a, b)
        await a.publish(TOPIC, b"found")
        await got.wait_for(1)
        assert got.items == [(a.peer_id, b"found")]


@pytest.mark.parametrize("groups", [(["x"], ["x"]), ("ab",)])
async def test_bad_partition_groups_are_config_errors(groups: tuple[list[str], ...]) -> None:
    """A peer in two groups, or a bare string as a group, is refused."""
    with pytest.raises(ConfigError):
        MemoryNetwork().partition(*groups)


async def test_kill_sends_leave_events_and_makes_the_node_unreachable() -> None:
    """Peers of a killed node see it leave; requests and dials to it fail."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        events: list[PeerEvent] = []
        a.on_peer_event(events.append)
        network.kill(b.peer_id)
        assert events == [PeerEvent("leave", b.peer_id)]
        with pytest.raises(PeerUnreachable):
            await a.request(b.peer_id, PROTO, b"", timeout=1)
        with pytest.raises(PeerUnreachable, match=r"^no node"):
            await link(a, b)
        with pytest.raises(PeerUnreachable, match=r"off the network"):
            await link(b, a)
        with pytest.raises(ConfigError):
            network.kill(b.peer_id)


async def test_kill_fails_a_request_being_served(autojump_clock: trio.abc.Clock) -> None:
    """A crash in the middle of serving fails the caller at once and cancels the handler."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b), trio.open_nursery() as nursery:
        handler_cancelled = trio.Event()

        async def stuck(peer: str, payload: bytes) -> bytes:
            try:
                await trio.sleep_forever()
            finally:
                handler_cancelled.set()
            raise AssertionError("unreachable")

        b.set_handler(PROTO, stuck)
        await link(a, b)
        start = trio.current_time()

        async def kill_later() -> None:
            await trio.sleep(1)
            network.kill(b.peer_id)

        nursery.start_soon(kill_later)
        with pytest.raises(PeerUnreachable):
            await a.request(b.peer_id, PROTO, b"", timeout=10)
        assert trio.current_time() == start + 1
        with trio.fail_after(1):
            await handler_cancelled.wait()


async def test_killed_node_is_inert_but_does_not_crash_its_code() -> None:
    """A killed node's own code may go on calling it: publishing reaches no one."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b):
        got = Recorder()
        await a.subscribe(TOPIC, got)
        await b.subscribe(TOPIC, ignore)
        await link(a, b)
        network.kill(b.peer_id)
        await b.publish(TOPIC, b"ghost")
        await b.subscribe("other", ignore)
        await network.wait_idle()
        assert b.peers() == [] and got.items == []
        with pytest.raises(PeerUnreachable):
            await b.request(a.peer_id, PROTO, b"", timeout=1)


async def test_killed_node_reopens_at_the_same_address() -> None:
    """After a crash the same identity can rejoin, and its old address reaches it."""
    network = MemoryNetwork()
    async with open_nodes(network, 1) as (a,):
        async with network.open_node(identity(1)) as b:
            addr = b.listen_addrs()[0]
            network.kill(b.peer_id)
        async with network.open_node(identity(1)) as b2:
            assert b2.listen_addrs() == [addr]
            assert await a.connect(addr) == b2.peer_id


async def test_opening_a_live_identity_twice_is_config_error() -> None:
    """Two live nodes cannot share an identity."""
    network = MemoryNetwork()
    async with network.open_node(identity(0)):
        with pytest.raises(ConfigError, match=r"already on this network$"):
            async with network.open_node(identity(0)):
                pass


async def test_graceful_close_sends_leave_event() -> None:
    """Leaving the open_node block closes the node's connections."""
    network = MemoryNetwork()
    async with network.open_node(identity(0)) as a:
        events: list[PeerEvent] = []
        a.on_peer_event(events.append)
        async with network.open_node(identity(1)) as b:
            await link(b, a)
        assert events == [PeerEvent("join", b.peer_id), PeerEvent("leave", b.peer_id)]
        assert a.peers() == []


async def test_errors_leave_open_node_unwrapped() -> None:
    """An exception raised inside the block comes out as itself, not in an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with MemoryNetwork().open_node(identity(0)):
            raise KeyError("mine")


def test_network_settings_validate() -> None:
    """A mesh degree below 1 and a link from a peer to itself are refused."""
    with pytest.raises(ConfigError, match=r"^mesh_degree must be >= 1, not 0$"):
        MemoryNetwork(mesh_degree=0)
    with pytest.raises(ConfigError, match=r"to itself$"):
        MemoryNetwork().set_link("x", "x", LinkModel())


def test_link_model_validates() -> None:
    """Negative latency, non-positive bandwidth and loss outside [0, 1] are refused."""
    bad_values = [
        {"latency_s": -1},
        {"latency_s": math.inf},
        {"bandwidth_bps": 0},
        {"loss": 1.5},
        {"loss": math.nan},
    ]
    for bad in bad_values:
        with pytest.raises(ConfigError):
            LinkModel(**bad)  # type: ignore[arg-type]


# -- pubsub -------------------------------------------------------------------------------


async def test_gossip_on_a_line_reaches_the_far_end_once_and_not_the_publisher(
    autojump_clock: trio.abc.Clock,
) -> None:
    """On A-B-C a message from A reaches B in 1 hop and C in 2, once each, never A."""
    network = MemoryNetwork(link=LinkModel(latency_s=0.01))
    deliveries = Deliveries()
    network.on_deliver = deliveries
    async with open_nodes(network, 3) as (a, b, c):
        got = {n.peer_id: Recorder() for n in (a, b, c)}
        for n in (a, b, c):
            await n.subscribe(TOPIC, got[n.peer_id])
        await link(a, b)
        await link(b, c)
        start = trio.current_time()
        await a.publish(TOPIC, b"news")
        await got[c.peer_id].wait_for(1)
        await network.wait_idle()
        assert got[c.peer_id].items == [(a.peer_id, b"news")]
        assert got[b.peer_id].items == [(a.peer_id, b"news")]
        assert got[a.peer_id].items == []
        assert [(r, h, t) for _, r, h, t in deliveries.log] == [
            (b.peer_id, 1, start + 0.01),
            (c.peer_id, 2, start + 0.01 + 0.01),
        ]
        assert {m for m, *_ in deliveries.log} == {f"{a.peer_id}/1"}


async def test_gossip_duplicates_are_counted_but_delivered_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    """In a triangle both B and C get the message twice on the wire, once to the handler."""
    network = MemoryNetwork()
    async with open_nodes(network, 3) as (a, b, c):
        got = {n.peer_id: Recorder() for n in (a, b, c)}
        for n in (a, b, c):
            await n.subscribe(TOPIC, got[n.peer_id])
        await link(a, b)
        await link(a, c)
        await link(b, c)
        await a.publish(TOPIC, b"12345")
        await network.wait_idle()
        await got[b.peer_id].wait_for(1)
        await got[c.peer_id].wait_for(1)
        for n in (b, c):
            assert len(got[n.peer_id].items) == 1
            assert n.stats.messages_received[TOPIC] == 2
            assert n.stats.bytes_received[TOPIC] == 10
            assert n.stats.messages_sent[TOPIC] == 1  # forwarded to the other, not back to A
        assert a.stats.messages_sent[TOPIC] == 2 and a.stats.messages_received[TOPIC] == 0
        assert got[a.peer_id].items == []


async def test_publisher_outside_the_topic_uses_fanout() -> None:
    """A node that publishes without subscribing reaches the subscribers."""
    async with open_nodes(MemoryNetwork(), 3) as (a, b, c):
        got = Recorder()
        await b.subscribe(TOPIC, ignore)
        await c.subscribe(TOPIC, got)
        await link(a, b)
        await link(b, c)
        await a.publish(TOPIC, b"from outside")
        await got.wait_for(1)
        assert got.items == [(a.peer_id, b"from outside")]


async def test_total_loss_drops_gossip() -> None:
    """With loss=1.0 no gossip hop arrives."""
    network = MemoryNetwork(link=LinkModel(loss=1.0))
    async with open_nodes(network, 2) as (a, b):
        got = Recorder()
        await a.subscribe(TOPIC, ignore)
        await b.subscribe(TOPIC, got)
        await link(a, b)
        await a.publish(TOPIC, b"gone")
        await network.wait_idle()
        assert got.items == [] and network.dropped["loss"] == 1
        assert a.stats.messages_sent[TOPIC] == 1 and b.stats.messages_received[TOPIC] == 0


async def test_raising_pubsub_handler_keeps_its_subscription() -> None:
    """A handler error loses that message only; later messages still arrive."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        got = Recorder()

        async def fussy(source: str, data: bytes) -> None:
            if data == b"bad":
                raise ValueError("handler bug")
            await got(source, data)

        await a.subscribe(TOPIC, ignore)
        await b.subscribe(TOPIC, fussy)
        await link(a, b)
        await a.publish(TOPIC, b"bad")
        await a.publish(TOPIC, b"good")
        await got.wait_for(1)
        assert got.items == [(a.peer_id, b"good")]


async def test_a_stuck_subscriber_drops_messages_past_its_inbox() -> None:
    """While a handler is stuck, at most 1,024 more messages wait; the rest are counted."""
    network = MemoryNetwork()
    async with open_nodes(network, 2) as (a, b):
        release = trio.Event()
        got = Recorder()

        async def stuck(source: str, data: bytes) -> None:
            await release.wait()
            await got(source, data)

        await a.subscribe(TOPIC, ignore)
        await b.subscribe(TOPIC, stuck)
        await link(a, b)
        for _ in range(1100):
            await a.publish(TOPIC, b"m")
        await network.wait_idle()
        dropped = network.dropped["inbox_full"]
        assert 1100 - 1025 <= dropped < 1100
        release.set()
        await got.wait_for(1100 - dropped)


async def test_resubscribing_replaces_the_handler() -> None:
    """A second subscribe to a topic swaps the handler instead of adding one."""
    async with open_nodes(MemoryNetwork(), 2) as (a, b):
        first, second = Recorder(), Recorder()
        await a.subscribe(TOPIC, ignore)
        await b.subscribe(TOPIC, first)
        await b.subscribe(TOPIC, second)
        await link(a, b)
        await a.publish(TOPIC, b"m")
        await second.wait_for(1)
        assert first.items == []


async def test_mesh_regrafts_when_a_mesh_peer_leaves() -> None:
    """A subscriber left out of a full mesh is grafted once a mesh peer leaves.

    With D=1 (D_hi=2), hub A meshes with B and C; E, subscribing last, finds A full
    and misses messages (there is no IHAVE/IWANT repair) until B crashes.
    """
    network = MemoryNetwork(mesh_degree=1)
    async with open_nodes(network, 4) as (a, b, c, e):
        got = Recorder()
        for n in (b, c, e):
            await link(a, n)
        for n in (a, b, c):
            await n.subscribe(TOPIC, ignore)
        await e.subscribe(TOPIC, got)
        await a.publish(TOPIC, b"before")
        await network.wait_idle()
        assert e.stats.messages_received[TOPIC] == 0
        network.kill(b.peer_id)
        await a.publish(TOPIC, b"after")
        await got.wait_for(1)
        assert got.items == [(a.peer_id, b"after")]


def random_topology(count: int, rng: random.Random, k: int) -> list[tuple[int, int]]:
    """Pairs (i, j): each of ``count`` nodes dials ``k`` random others."""
    return [(i, j) for i in range(count) for j in rng.sample(range(count), k) if j != i]


async def flood(network: MemoryNetwork, count: int, *, dials: int, seed: int) -> Deliveries:
    """Open ``count`` nodes on a random topology, publish once from node 0, wait for all."""
    deliveries = Deliveries()
    network.on_deliver = deliveries
    async with open_nodes(network, count) as nodes:
        for node in nodes:
            await node.subscribe(TOPIC, ignore)
        for i, j in random_topology(count, random.Random(seed), dials):
            await nodes[i].connect(nodes[j].listen_addrs()[0])
        await nodes[0].publish(TOPIC, b"flood")
        await deliveries.wait_for(count - 1)
        await network.wait_idle()
    return deliveries


async def test_gossip_over_1000_nodes_reaches_all_in_few_hops(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Over 1,000 nodes with ~8 random dials each, everyone gets it once, in < 2*log2(N) hops."""
    network = MemoryNetwork(link=LinkModel(latency_s=0.01), rng=random.Random(1))
    deliveries = await flood(network, 1000, dials=8, seed=1)
    receivers = [r for _, r, _, _ in deliveries.log]
    assert len(receivers) == len(set(receivers)) == 999
    assert identity(0).agent_id not in receivers
    assert max(h for *_, h, _ in deliveries.log) < 2 * math.log2(1000)


async def test_same_seed_replays_the_same_deliveries(autojump_clock: trio.abc.Clock) -> None:
    """Two runs with equal seeds, latencies and loss deliver identically."""

    async def run() -> list[tuple[str, str, int, float]]:
        network = MemoryNetwork(link=LinkModel(latency_s=0.01, loss=0.2), rng=random.Random(5))
        deliveries = Deliveries()
        network.on_deliver = deliveries
        async with open_nodes(network, 60) as nodes:
            for node in nodes:
                await node.subscribe(TOPIC, ignore)
            for i, j in random_topology(len(nodes), random.Random(5), 5):
                await nodes[i].connect(nodes[j].listen_addrs()[0])
            start = trio.current_time()
            for node in nodes[:5]:
                await node.publish(TOPIC, b"x")
            await network.wait_idle()
        return [(m, r, h, t - start) for m, r, h, t in deliveries.log]

    first = await run()
    assert len(first) > 100
    assert first == await run()


async def test_ten_thousand_nodes_open_and_flood(autojump_clock: trio.abc.Clock) -> None:
    """10,000 nodes open, connect (4 dials each) and flood one message to all."""
    network = MemoryNetwork(link=LinkModel(latency_s=0.01), rng=random.Random(2))
    deliveries = await flood(network, 10_000, dials=4, seed=2)
    assert len({r for _, r, _, _ in deliveries.log}) == 9_999
    assert max(h for *_, h, _ in deliveries.log) < 2 * math.log2(10_000)


async def test_works_on_the_real_clock() -> None:
    """Without a mock clock a 10 ms link still answers, taking at least 20 ms."""
    async with open_nodes(MemoryNetwork(link=LinkModel(latency_s=0.01)), 2) as (a, b):
        b.set_handler(PROTO, echo)
        await link(a, b)
        start = trio.current_time()
        assert await a.request(b.peer_id, PROTO, b"", timeout=5) == b"echo:"
        assert trio.current_time() - start >= 0.02
