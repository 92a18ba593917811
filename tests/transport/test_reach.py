"""Circuit relay v2 through the libp2p engine, on 127.0.0.1 (the NAT test bed is tests/e2e/test_nat.py)."""

from __future__ import annotations

import pytest

from symphony.errors import ConfigError, PeerUnreachable
from symphony.protocol.identity import Identity
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
            open_libp2p_transport(Identity.generate(), _config(relays=(relay_addr,))) as dest,
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
        async with open_libp2p_transport(Identity.generate(), _config(relays=(plain.listen_addrs()[0],))) as dest:
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


def test_relays_must_be_peer_addresses() -> None:
    with pytest.raises(ConfigError):
        _config(relays=("/ip4/127.0.0.1/tcp/1",))
    assert RelayServiceLimits().to_libp2p().max_reservations == 64
