"""Circuit relay v2 through the libp2p engine, on 127.0.0.1 (the NAT test bed is tests/e2e/test_nat.py)."""

from __future__ import annotations

import socket

import pytest
from libp2p.discovery.rendezvous import RendezvousClient
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID
from multiaddr import Multiaddr  # type: ignore[import-untyped]

from symphony.errors import ConfigError, PeerUnreachable
from symphony.protocol.identity import Identity
from symphony.protocol.messages import MAX_ADDRS
from symphony.transport.libp2p import Libp2pConfig, open_libp2p_transport
from symphony.transport.reach import RelayServiceLimits
from tests.transport.test_libp2p import ECHO, LOOPBACK, link, wait_until


def _config(**kwargs: object) -> Libp2pConfig:
    return Libp2pConfig(listen=["/ip4/127.0.0.1/tcp/0"], **kwargs)  # type: ignore[arg-type]


async def _echo(peer: str, payload: bytes) -> bytes:
    return b"echo:" + payload


async def test_a_peer_reached_only_through_a_relay_answers_requests() -> None:
    """The destination holds a slot on the relay and lists its circuit address first; the
    source dials that address, the request goes through, and both call it relayed."""
    async with open_libp2p_transport(Identity.generate(), _config(relay_service=True)) as relay:
        relay_addr = relay.listen_addrs()[0]
        async with (
            open_libp2p_transport(Identity.generate(), _config(relays=(relay_addr,), reachability="private")) as dest,
            open_libp2p_transport(Identity.generate(), LOOPBACK) as source,
        ):
            dest.set_handler(ECHO, _echo)
            await link(dest, relay)
            await wait_until(lambda: dest.relay_slots() == {relay.peer_id: "granted"})
            circuit = dest.listen_addrs()[0]
            assert circuit == f"{relay_addr}/p2p-circuit/p2p/{dest.peer_id}"
            await link(source, relay)
            assert await source.connect(circuit) == dest.peer_id
            assert await source.request(dest.peer_id, ECHO, b"hi", timeout=10) == b"echo:hi"
            assert source.connection_kinds()[dest.peer_id] == "relayed"
            assert source.connection_kinds()[relay.peer_id] == "direct"
            await wait_until(lambda: dest.connection_kinds().get(source.peer_id) == "relayed")


async def test_a_node_without_relay_service_grants_no_slot() -> None:
    """Asking an ordinary node for a slot fails quietly: no circuit address appears."""
    async with open_libp2p_transport(Identity.generate(), LOOPBACK) as plain:
        config = _config(relays=(plain.listen_addrs()[0],), reachability="private")
        async with open_libp2p_transport(Identity.generate(), config) as dest:
            await link(dest, plain)
            await wait_until(lambda: dest.relay_slots() == {plain.peer_id: "refused"})
            assert all("/p2p-circuit" not in addr for addr in dest.listen_addrs())


async def test_dialing_a_circuit_to_a_peer_without_a_slot_fails() -> None:
    """The relay refuses to connect us to a peer holding no slot: PeerUnreachable."""
    async with open_libp2p_transport(Identity.generate(), _config(relay_service=True)) as relay:
        async with open_libp2p_transport(Identity.generate(), LOOPBACK) as source:
            await link(source, relay)
            ghost = Identity.generate().agent_id
            with pytest.raises(PeerUnreachable):
                await source.connect(f"{relay.listen_addrs()[0]}/p2p-circuit/p2p/{ghost}")


async def test_a_node_the_relay_dials_back_is_public_and_takes_no_slot() -> None:
    """AutoNAT: the relay dials our listen address back, so we are public and need no slot."""
    async with open_libp2p_transport(Identity.generate(), _config(relay_service=True)) as relay:
        async with open_libp2p_transport(Identity.generate(), _config(relays=(relay.listen_addrs()[0],))) as node:
            assert node.reach_status()["reachability"] == "unknown"
            await link(node, relay)
            await wait_until(lambda: node.relay_slots() == {relay.peer_id: "not needed"})
            assert node.reach_status()["reachability"] == "public"
            assert all("/p2p-circuit" not in addr for addr in node.listen_addrs())


async def test_autonat_dial_back_really_dials() -> None:
    """An address nobody listens on is reported unreachable. py-libp2p's own server answered
    OK without dialing, because the asker is always connected already (``_DialBack``)."""
    async with open_libp2p_transport(Identity.generate(), LOOPBACK) as server:
        async with open_libp2p_transport(Identity.generate(), LOOPBACK) as asker:
            await link(asker, server)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                closed = Multiaddr(f"/ip4/127.0.0.1/tcp/{sock.getsockname()[1]}")
            autonat = asker._reach._autonat  # the edge under test: one AutoNAT query with a chosen address
            status, _ = await autonat.query_server(ID.from_base58(server.peer_id), addrs=[closed.to_bytes()])
            assert status == Message.E_DIAL_ERROR
            status, _ = await autonat.query_server(ID.from_base58(server.peer_id))
            assert status == Message.OK


def test_relays_must_be_peer_addresses() -> None:
    with pytest.raises(ConfigError):
        _config(relays=("/ip4/127.0.0.1/tcp/1",))
    with pytest.raises(ConfigError):
        _config(reachability="behind a NAT")
    assert RelayServiceLimits().to_libp2p().max_reservations == 64


async def test_observed_addresses_feed_hole_punching_but_are_never_advertised(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address peers claim to see us at (identify's observations, here as if four peers had
    confirmed it) reaches DCUtR's address offer, with our listen port, but not what the host
    advertises (``_BoundAddrsOnly``). The address is a documentation one and is never dialed."""
    async with open_libp2p_transport(Identity.generate(), LOOPBACK) as node:
        host = node._host
        claimed = Multiaddr("/ip4/203.0.113.9/tcp/40404")
        manager = host._observed_addr_manager
        assert manager is not None  # identify address discovery is on
        monkeypatch.setattr(manager, "addrs", lambda min_observers=4: [claimed])
        port = host.get_transport_addrs()[0].value_for_protocol("tcp")
        offered = [Multiaddr(raw) for raw in await node._reach._dcutr._get_observed_addrs()]
        assert offered == [Multiaddr(f"/ip4/203.0.113.9/tcp/{port}")]
        assert all("203.0.113.9" not in str(addr) for addr in host.get_addrs())
        assert [str(a) for a in host.get_addrs()] == [f"{a}/p2p/{node.peer_id}" for a in host.get_transport_addrs()]


async def test_a_rendezvous_point_serves_only_the_symphony_namespace() -> None:
    """Registering under any other namespace is refused and counted (py-libp2p's service does
    not bound the namespaces); under ``symphony`` the peer is registered and discovered."""
    from libp2p.discovery.rendezvous import InvalidNamespaceError

    async with open_libp2p_transport(Identity.generate(), _config(rendezvous_service=True)) as point:
        async with open_libp2p_transport(Identity.generate(), LOOPBACK) as peer:
            await link(peer, point)
            client = RendezvousClient(peer._host, ID.from_base58(point.peer_id))
            with pytest.raises(InvalidNamespaceError):
                await client.register("spam-0001")
            await client.register("symphony")
            found, _ = await client.discover("symphony")
            assert [info.peer_id.to_base58() for info in found] == [peer.peer_id]
            assert point.reach_status()["rendezvous"]["refused"] == 1


async def test_rendezvous_registers_the_relayed_address_first_and_a_finder_dials_it() -> None:
    """A node holding a relay slot registers what its record publishes, the ``/p2p-circuit``
    address first (py-libp2p's client would register only the bound ones); a node that knows
    only the point discovers it there and connects through the relay."""
    serving = _config(relay_service=True, rendezvous_service=True)
    async with open_libp2p_transport(Identity.generate(), serving) as point:
        point_addr = point.listen_addrs()[0]
        joining = _config(relays=(point_addr,), rendezvous=True, reachability="private")
        async with open_libp2p_transport(Identity.generate(), joining) as hidden:
            await link(hidden, point)
            await wait_until(lambda: hidden.reach_status()["rendezvous"]["registered"] == [point.peer_id], timeout=30)
            registered = point._rendezvous._service.registrations["symphony"][ID.from_base58(hidden.peer_id)]
            assert str(Multiaddr(registered.addrs[0])) == f"{point_addr}/p2p-circuit"
            async with open_libp2p_transport(Identity.generate(), joining) as finder:
                await link(finder, point)
                await wait_until(lambda: hidden.peer_id in finder.peers(), timeout=30)
                assert finder.reach_status()["rendezvous"]["dialed"] == 1
                assert finder.connection_kinds()[hidden.peer_id] == "relayed"


async def test_a_rendezvous_point_refuses_a_registration_with_too_many_addresses() -> None:
    """More addresses than a record holds are refused and counted (py-libp2p bounds only each one's length)."""
    from libp2p.discovery.rendezvous.messages import create_register_message

    async with (
        open_libp2p_transport(Identity.generate(), _config(rendezvous_service=True)) as point,
        open_libp2p_transport(Identity.generate(), LOOPBACK) as peer,
    ):
        await link(peer, point)
        client = RendezvousClient(peer._host, ID.from_base58(point.peer_id))
        addrs = [Multiaddr(f"/ip4/127.0.0.1/tcp/{port}") for port in range(1000, 1000 + MAX_ADDRS + 1)]
        message = create_register_message("symphony", peer._host.get_id(), addrs, 7200)
        answer = await client._send_message(message)
        assert answer is not None
        assert answer.registerResponse.status == answer.ResponseStatus.E_INVALID_PEER_INFO
        assert point.reach_status()["rendezvous"]["refused"] == 1
        assert not point._rendezvous._service.registrations.get("symphony")
