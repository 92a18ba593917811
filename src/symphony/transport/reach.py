"""Network reach for the libp2p transport: circuit relay v2, AutoNAT, DCUtR hole punching, mDNS.

Only ``symphony.transport.libp2p`` uses this module (nothing above the transport imports
libp2p). It wires py-libp2p's ``libp2p.relay.circuit_v2`` into a host built by
``_build_host``:

- **Every node** runs ``CircuitV2Protocol`` without the hop role: it registers the STOP
  protocol, so a peer behind NAT accepts connections a relay forwards to it
  (``CircuitV2Protocol.handle_incoming_connection`` upgrades them into the swarm).
- **A relay** (``relay_service``) also serves the HOP protocol, with ``RelayLimits``:
  reservations held at once, circuits at once, bytes and seconds per circuit.
- **AutoNAT** (``libp2p.host.autonat``, every node serves it): after ``connect`` reaches a
  peer named in ``relays``, the node first asks it to dial us back. Reached: we are
  ``public`` and take no slot. Not reached: ``private``. No answer (a peer that does not
  serve AutoNAT): ``unknown``, and we take a slot anyway (being reachable matters more
  than one slot). One relay's word is enough (``confirmations=1``; the spec asks for more
  than three servers, but a node knows only its few bootstrap peers and trusts them to
  relay already). ``_DialBack`` fixes py-libp2p's server, which never dialed.
- **Reservations**: a node not found ``public`` asks the relay for a slot
  (``CircuitV2Transport.reserve``). A granted slot makes
  ``<relay addr>/p2p-circuit/p2p/<us>`` one of our addresses.
- **Dialing** a ``/p2p-circuit`` address goes through ``CircuitV2Transport.dial``: the
  swarm skips such addresses (``Swarm.dial_peer``), so ``host.connect`` cannot.
- **DCUtR** (``DCUtRProtocol``) runs on every node and tries to upgrade each relayed
  connection to a direct one in the background (its ``_auto_drive_loop``). Both sides
  send the other an address to dial: the IP a peer saw us at over a *direct* connection
  (identify's observed address, recorded by the host's ``ObservedAddrManager``; identify
  ignores observations over relayed connections) with our own listen port, then both
  dial at once from that port (TCP simultaneous open through both NATs). Without
  observations (``disable_identify_address_discovery=True``, as before issue 20) each
  side only offered its private listen address and no punch could succeed.

Trust: one directly connected peer's observation is enough for DCUtR
(``manager.addrs(min_observers=1)``), so a lying peer can make us tell hole-punch
partners a wrong IP (they dial it at our listen port, at most 3 rounds, and fail). A
DCUtR partner can likewise make us dial the addresses it sends (the protocol's nature).
Observed addresses never enter our signed ledger record nor what identify advertises
(``_BoundAddrsOnly`` in ``transport.libp2p``).

- **mDNS** (``mdns``, off by default: it announces us on the LAN): ``LanDiscovery`` runs
  py-libp2p's ``MDNSDiscovery`` under the service ``_p2p-symphony._udp.local.``, so only
  Symphony nodes answer, and dials each peer it hears of once (``discover_lan``).

- **Rendezvous** (``libp2p.discovery.rendezvous``): a node with ``rendezvous_service``
  serves it; a node with ``rendezvous`` registers under ``RENDEZVOUS_NAMESPACE`` at each
  of its relays (its bootstrap peers) once ``connect`` reaches it, every
  ``RENDEZVOUS_INTERVAL_S`` after, and dials the peers registered there (``Rendezvous``):
  peers beyond what one ledger holds (sharded ledgers, other bootstrap nodes' networks).

- **UPnP** (``upnp``, off by default: it asks the router on the LAN): ``PortMapping`` asks the
  home router (an Internet Gateway Device) to forward our listen port and publishes the
  router's external address first, so peers dial us directly and AutoNAT finds us public.

py-libp2p's ``RelayDiscovery`` (which probes every connected peer for the hop protocol)
is not run: the node contacts only the relays it is told about.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery, create_mdns_discovery
from libp2p.discovery.rendezvous import RendezvousClient, RendezvousService
from libp2p.discovery.rendezvous.config import MIN_TTL
from libp2p.discovery.rendezvous.messages import create_register_response_message
from libp2p.discovery.rendezvous.pb.rendezvous_pb2 import Message as RendezvousMessage
from libp2p.discovery.upnp.upnp import UpnpManager
from libp2p.host.autonat.autonat import AutoNATService, AutoNATStatus
from libp2p.host.basic_host import BasicHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr  # type: ignore[import-untyped]

from symphony.protocol.messages import MAX_ADDRS, record_addrs

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
#: how long an AutoNAT dial-back may take (the asker waits twice that for the verdict). A NAT drops
#: the dial-back's SYN without a word, so a node behind one learns it is private only when this runs
#: out, and only then asks for the relay slot that makes it reachable: kept short. A dial-back over
#: a slow link that takes longer makes a public node take a slot it did not need, no worse.
DIAL_BACK_TIMEOUT_S = 2.0
#: LAN peers heard of by mDNS and not dialed yet; more are dropped (and counted)
_LAN_QUEUE = 16
#: the rendezvous namespace Symphony nodes register under
RENDEZVOUS_NAMESPACE = "symphony"
#: seconds between two registrations (and discoveries) at one rendezvous point
RENDEZVOUS_INTERVAL_S = 60.0
#: a registration lives twice the interval (py-libp2p's server refuses less than MIN_TTL)
_RENDEZVOUS_TTL = max(MIN_TTL, int(2 * RENDEZVOUS_INTERVAL_S))
#: how long one registration plus discovery may take (py-libp2p's own is 30 s per message)
_RENDEZVOUS_TIMEOUT_S = 10.0
#: peers taken from one discovery answer; a point may answer up to 1000
_RENDEZVOUS_LIMIT = 50
_REACHABILITY = {AutoNATStatus.UNKNOWN: "unknown", AutoNATStatus.PUBLIC: "public", AutoNATStatus.PRIVATE: "private"}


@dataclass(frozen=True)
class RelayServiceLimits:
    """What a relay grants (``--relay-service``), so it cannot be abused as a free pipe.

    Attributes:
        max_reservations: Peers holding a slot at once.
        max_circuits: Relayed connections open at once.
        circuit_bytes: Bytes one relayed connection may carry before it is cut.
        circuit_seconds: Lifetime of one relayed connection.
        reservation_seconds: Lifetime of a slot (the holder refreshes it).
    """

    max_reservations: int = 64
    max_circuits: int = 64
    circuit_bytes: int = 64 * _MIB
    circuit_seconds: int = 3600
    reservation_seconds: int = 3600

    def to_libp2p(self) -> RelayLimits:
        return RelayLimits(duration=self.circuit_seconds, data=self.circuit_bytes,
                           max_circuit_conns=self.max_circuits, max_reservations=self.max_reservations,
                           reservation_ttl=self.reservation_seconds)


class _DialBack(AutoNATService):
    """py-libp2p's AutoNAT server with a dial-back that dials.

    ``AutoNATService._try_dial`` calls ``host.connect``, which returns at once when the peer
    is connected (``BasicHost.connect``), and the requester always is: it asked over a
    stream. So every requester whose address matched its observed IP was told "reached"
    without a dial, a node behind a firewall included. This one opens a fresh connection
    (``Swarm.dial_addr``, as DCUtR's ``_dial_peer`` does) and closes it again.
    """

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        for addr in addrs:  # already limited to the requester's observed IP by the caller
            try:
                with trio.fail_after(DIAL_BACK_TIMEOUT_S):
                    conn = await self.host.get_network().dial_addr(Multiaddr(addr), peer_id)
            except Exception:  # py-libp2p raises several unrelated types here; unreachable is the answer
                continue
            await conn.close()
            return addr
        return None


class _PunchMemory(DCUtRProtocol):
    """py-libp2p's DCUtR, remembering which peers it hole-punched while we stay connected.

    ``DCUtRProtocol._direct_connections`` forgets a peer whenever *any* connection to it closes
    (``on_peer_disconnected``), including the relayed one DCUtR itself closes once the direct one
    works (``_close_relayed_conns_after_grace``): a punched peer then looked merely "direct"
    seconds after the punch. ``punched`` keeps it until the last connection to the peer closes.
    """

    def __init__(self, host: IHost) -> None:
        super().__init__(host)
        self.punched: set[ID] = set()

    async def _perform_hole_punch(self, peer_id: ID, addrs: list[Multiaddr], as_responder: bool = False) -> bool:
        succeeded = await super()._perform_hole_punch(peer_id, addrs, as_responder)
        if succeeded:
            self.punched.add(peer_id)
        return succeeded

    def on_peer_disconnected(self, peer_id: ID) -> None:
        super().on_peer_disconnected(peer_id)
        if not self.host.get_network().get_connections(peer_id):  # the swarm drops a closed one before notifying
            self.punched.discard(peer_id)


class Reach:
    """Relay (serve and use), AutoNAT and hole punching for one running host."""

    def __init__(self, host: IHost, *, relay_service: bool, limits: RelayServiceLimits, reachability: str) -> None:
        self._host = host
        self._forced = None if reachability == "auto" else reachability
        libp2p_limits = limits.to_libp2p()
        self._protocol = CircuitV2Protocol(host, limits=libp2p_limits, allow_hop=relay_service)
        roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if relay_service else RelayRole(0))
        self._circuits = CircuitV2Transport(host, self._protocol, RelayConfig(roles=roles, limits=libp2p_limits))
        self._dcutr = _PunchMemory(host)
        if not isinstance(host, BasicHost):
            raise TypeError(f"new_host built a {type(host).__name__}, not a BasicHost; update Reach")
        self._autonat = _DialBack(host, serve=True, confirmations=1)
        self._relay_addrs: dict[ID, str] = {}  # relay -> its address we dialed, for relays we hold a slot on
        self.slots: dict[str, str] = {}  # relay peer id -> "granted" or "refused" (the last answer)
        self._nursery: trio.Nursery | None = None
        self._addrs_changed = trio.Event()  # set (and replaced) when a slot adds a circuit address

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve STOP (and HOP on a relay) and DCUtR until cancelled."""
        async with background_trio_service(self._protocol), background_trio_service(self._dcutr):
            await self._protocol.event_started.wait()
            await self._dcutr.event_started.wait()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    async def dial_circuit(self, maddr: Multiaddr) -> None:
        """Connect through the relay named in ``maddr`` (``.../p2p/<relay>/p2p-circuit/p2p/<peer>``).

        Raises ``ConnectionError`` (py-libp2p's) when the relay refuses or the peer is not there.
        """
        await self._circuits.dial(maddr)

    @property
    def reachability(self) -> str:
        """What AutoNAT found: ``public``, ``private`` or ``unknown`` (not asked, or no answer);
        or what the node was told it is."""
        if self._forced is not None:
            return self._forced
        return _REACHABILITY.get(self._autonat.get_status(), "unknown")

    async def join_relay(self, relay: ID, relay_addr: str) -> None:
        """Ask ``relay`` (already connected) whether it can dial us back, and take a slot
        on it unless it could: a public node needs none."""
        if not self._forced:
            await self._identified(relay)
        found = self._forced or await self._ask_dial_back(relay)
        if found == "public":
            self.slots[relay.to_base58()] = "not needed"
            return
        await self.reserve(relay, relay_addr)

    async def _identified(self, relay: ID) -> None:
        """Wait until identify with ``relay`` has told us the address it sees us at, which the AutoNAT
        query offers (``_ask_dial_back``): a UPnP-forwarded port counts only at that address.
        ``BasicHost.connect`` only schedules identify in the background (``_schedule_identify``); it
        used to be done by the time ``connect`` returned, because ``Swarm.dial_peer`` waited its 250 ms
        happy-eyeballs head start after connecting, which ``transport.dial`` ends (issue #19). Runs its
        own identify when that one has not finished (a second identify stream to a relay, once)."""
        host = self._host
        if not isinstance(host, BasicHost) or relay in host._identified_peers:
            return
        with trio.move_on_after(DIAL_BACK_TIMEOUT_S):
            await host._identify_peer(relay, reason="autonat")

    async def _ask_dial_back(self, relay: ID) -> str:
        """One AutoNAT query; the new reachability, or ``unknown`` when ``relay`` did not answer."""
        # offer our listen ports on the IPs peers observed us at (DCUtR's NAT port prediction), so a
        # forwarded port counts; the server dials only addresses on the IP it sees us at
        addrs = [a.to_bytes() for a in self._host.get_addrs()] + await self._dcutr._get_observed_addrs()
        try:
            with trio.fail_after(2 * DIAL_BACK_TIMEOUT_S):
                await self._autonat.query_server(relay, addrs=addrs)
        except Exception as exc:  # py-libp2p raises several unrelated types here
            logger.info("%s gave no AutoNAT answer: %s", relay, exc)
            return "unknown"
        self._autonat.update_status()
        logger.info("AutoNAT via %s: %s", relay, self.reachability)
        return self.reachability

    async def reserve(self, relay: ID, relay_addr: str) -> bool:
        """Ask ``relay`` (already connected) for a slot; True once granted. Failures are
        logged and return False: a node without a slot is still a node."""
        if self._nursery is None:  # not reached by the transport, which runs ``run`` first; said if it ever is
            logger.warning("no relay slot asked of %s: the reach service is not running yet", relay)
            return False
        granted = await self._ask_slot(relay)
        self.slots[relay.to_base58()] = "granted" if granted else "refused"
        if granted:
            self._relay_addrs[relay] = relay_addr
            logger.info("holding a relay slot on %s", relay)
            changed, self._addrs_changed = self._addrs_changed, trio.Event()
            changed.set()
        return granted

    async def wait_addrs_changed(self) -> None:
        """Return once a relay slot adds a circuit address (an expired slot is not announced:
        the caller also looks on its own schedule)."""
        await self._addrs_changed.wait()

    async def _ask_slot(self, relay: ID) -> bool:
        assert self._nursery is not None
        try:
            stream = await self._host.new_stream(relay, [HOP_PROTOCOL_ID])
        except Exception as exc:  # py-libp2p raises several unrelated types here
            logger.info("%s offers no relay: %s", relay, exc)
            return False
        try:
            return await self._circuits.reserve(stream, relay, self._nursery)
        finally:
            await stream.close()

    def circuit_addrs(self, me: str) -> list[str]:
        """Our addresses through each relay we hold a live slot on."""
        live = self._circuits._reservations  # py-libp2p keeps slots (and drops expired ones) only here
        return [f"{addr}/p2p-circuit/p2p/{me}" for relay, addr in self._relay_addrs.items() if relay in live]

    def hole_punched(self) -> list[str]:
        """Peers DCUtR upgraded from relayed to direct."""
        return sorted(peer.to_base58() for peer in self._dcutr.punched)


class PortMapping:
    """UPnP port mapping (``symphony node --upnp``), with the external address published.

    py-libp2p's ``enable_upnp`` (``BasicHost.run``) maps the listen port through ``UpnpManager``
    but never adds the router's external address to the host's addresses: the mapping is there
    and nobody learns of it. Here the same ``UpnpManager`` finds the gateway and maps each TCP
    listen port (external port = internal port, as py-libp2p does), and ``addrs`` gives
    ``/ip4/<external IP>/tcp/<port>``, which ``Libp2pTransport.listen_addrs`` puts first.
    ``UpnpManager.discover`` refuses a gateway whose external address is private or reserved
    (double NAT: that mapping reaches no one outside). ``state`` says what happened:
    ``mapped``, ``no gateway`` (none answered, or only a double-NAT one) or ``refused`` (the
    gateway said no to every port).
    """

    def __init__(self) -> None:
        self._manager = UpnpManager()
        self._ports: list[int] = []
        self.state = "not started"

    async def start(self, ports: list[int]) -> None:
        """Find the gateway and map ``ports``; never raises (a node without a mapping is a node)."""
        if not await self._manager.discover():
            self.state = "no gateway"
            logger.warning("UPnP: no gateway answered; peers reach this node by relay only")
            return
        self._ports = [port for port in ports if await self._manager.add_port_mapping(port, "TCP")]
        self.state = "mapped" if self._ports else "refused"
        logger.info("UPnP: %s, external address %s", self.state, self._manager.get_external_ip())
        if self.state != "mapped":  # --upnp was asked for: say so beside /v1/node's reach.upnp
            logger.warning("UPnP: the gateway refused to map %s; peers reach this node by relay only", ports)

    def addrs(self) -> list[str]:
        """Our addresses on the router's external side, one per mapped port."""
        external = self._manager.get_external_ip()
        return [f"/ip4/{external}/tcp/{port}" for port in self._ports] if external else []

    def status(self) -> dict[str, object]:
        return {"state": self.state, "external": self.addrs()}

    async def stop(self) -> None:
        """Remove our mappings. py-libp2p's ``UpnpManager.add_port_mapping`` asks for no lease, so a
        crashed node's mappings stay on the router until it reboots."""
        ports, self._ports = self._ports, []
        for port in ports:
            await self._manager.remove_port_mapping(port, "TCP")


class LanDiscovery:
    """mDNS on the LAN (``symphony node --mdns``): announce us, dial the Symphony nodes heard of.

    py-libp2p's mDNS runs in zeroconf's own thread and reports each peer through a
    process-wide callback list (``peerDiscovery``); the callback hands the peer to our trio
    loop through a bounded queue. Anyone on the LAN can announce anything: a peer is dialed
    only once it passed py-libp2p's checks (a valid peer ID, ``PeerListener._extract_peer_info``),
    one at a time, and peers beyond the queue are dropped and counted.
    """

    def __init__(self, host: IHost) -> None:
        self._host = host
        self.found = 0  # LAN peers dialed
        self.dropped = 0  # announcements beyond the queue

    async def run(self, dial: Callable[[str], Awaitable[bool]]) -> None:
        """Announce and listen until cancelled; ``dial`` each peer heard of (True once connected)."""
        send, receive = trio.open_memory_channel[PeerInfo](_LAN_QUEUE)
        token = trio.lowlevel.current_trio_token()

        def heard(info: PeerInfo) -> None:  # in zeroconf's thread
            try:
                token.run_sync_soon(self._queue, send, info)
            except trio.RunFinishedError:
                pass

        # before the browser starts (in MDNSDiscovery's constructor), or its first answers are lost
        peerDiscovery.register_peer_discovered_handler(heard)
        try:
            # zeroconf binds its sockets and probes the LAN before registering: seconds of blocking calls
            discovery = await trio.to_thread.run_sync(self._start)
        except BaseException:
            peerDiscovery.unregister_peer_discovered_handler(heard)
            raise
        try:
            async for info in receive:
                if await dial_announced(self._host, info, dial):
                    self.found += 1
                    logger.info("mDNS: connected to %s", info.peer_id)
        finally:
            peerDiscovery.unregister_peer_discovered_handler(heard)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(discovery.stop)

    def _start(self) -> MDNSDiscovery:
        """Start announcing our bound addresses (``MDNSDiscovery.start`` would also spawn a
        cleanup task from this thread; the peerstore entries it cleans expire anyway)."""
        ports = [int(a.value_for_protocol("tcp")) for a in self._host.get_transport_addrs() if "/tcp/" in str(a)]
        discovery = create_mdns_discovery(self._host.get_network(), port=ports[0] if ports else 0,
                                          private_network_fingerprint="symphony", host=self._host)
        discovery.broadcaster.register()
        return discovery

    def _queue(self, send: trio.MemorySendChannel[PeerInfo], info: PeerInfo) -> None:
        try:
            send.send_nowait(info)
        except trio.WouldBlock:
            self.dropped += 1
            logger.info("mDNS: %s dropped, %d LAN peers already waiting to be dialed", info.peer_id, _LAN_QUEUE)


class RecordAddrsHost:
    """The host as a py-libp2p announcer sees it: ``get_addrs`` gives our record's addresses,
    reachable ones (``/p2p-circuit``) first; everything else is the real host.

    ``RendezvousClient.register`` (``libp2p.discovery.rendezvous.client``) and the DHT's
    ``ProviderStore.provide`` / ``_send_add_provider`` announce ``host.get_addrs()``: the bound
    addresses only (``_BoundAddrsOnly`` in ``transport.libp2p``), which nobody can dial when we
    are behind NAT."""

    def __init__(self, host: IHost, addrs: Callable[[], list[str]]) -> None:
        self._host = host
        self._addrs = addrs

    def get_addrs(self) -> list[Multiaddr]:
        return [Multiaddr(addr) for addr in record_addrs(self._addrs())]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


class _SymphonyRendezvous(RendezvousService):
    """``RendezvousService`` for ``RENDEZVOUS_NAMESPACE`` only: py-libp2p's caps registrations
    per namespace (1000) but not the namespaces, so one peer could fill our memory by
    registering itself under endless names; those are refused (``E_INVALID_NAMESPACE``)."""

    def __init__(self, host: IHost) -> None:
        super().__init__(host)
        self.refused = 0  # registrations under another namespace, or with more than MAX_ADDRS addresses

    def _handle_register(self, peer_id: ID, register_msg: RendezvousMessage.Register) -> RendezvousMessage:
        status = RendezvousMessage.ResponseStatus
        if register_msg.ns != RENDEZVOUS_NAMESPACE:
            self.refused += 1
            return create_register_response_message(status.E_INVALID_NAMESPACE,
                                                    f"only namespace {RENDEZVOUS_NAMESPACE!r} is served here")
        if len(register_msg.peer.addrs) > MAX_ADDRS:  # py-libp2p bounds each address's length, not their number
            self.refused += 1
            return create_register_response_message(status.E_INVALID_PEER_INFO, f"more than {MAX_ADDRS} addresses")
        return super()._handle_register(peer_id, register_msg)


class Rendezvous:
    """Rendezvous (``symphony node --rendezvous-service`` / ``--rendezvous``): serve it, and
    register at and discover from the rendezvous points we connect to.

    A point is a peer we trust already (a bootstrap peer); what it answers is still hostile
    input: at most ``_RENDEZVOUS_LIMIT`` peers per answer are dialed, one at a time, each
    through ``connect`` (the Noise handshake proves the peer ID). A point that does not serve
    rendezvous or answers garbage is counted (``failed``) and asked again next round.
    """

    def __init__(self, host: IHost, *, service: bool, addrs: Callable[[], list[str]]) -> None:
        self._host = host
        self._announcer = RecordAddrsHost(host, addrs)  # registers our record's addresses, not the bound ones
        self._service = _SymphonyRendezvous(host) if service else None
        self._points: set[ID] = set()  # points with a running registration loop
        self.registered: list[str] = []  # points that accepted our registration
        self.discovered: set[str] = set()  # peers the points told us of
        self.dialed = 0  # of those, connected to by us
        self.failed = 0  # rounds a point did not serve or answered badly

    def status(self) -> dict[str, object]:
        """What ``reach_status`` shows: serving, points, peers discovered, dialed, failed rounds."""
        return {"service": self._service is not None, "refused": self._service.refused if self._service else 0,
                "registered": sorted(self.registered),
                "discovered": len(self.discovered), "dialed": self.dialed, "failed": self.failed}

    async def join(self, point: ID, dial: Callable[[str], Awaitable[bool]]) -> None:
        """Register at ``point`` and dial whom it knows, every ``RENDEZVOUS_INTERVAL_S``, until
        cancelled (one loop per point, however often ``connect`` reaches it)."""
        if point in self._points:
            return
        self._points.add(point)
        try:
            while True:
                await self._round(point, dial)
                await trio.sleep(RENDEZVOUS_INTERVAL_S)
        finally:
            self._points.discard(point)

    async def _round(self, point: ID, dial: Callable[[str], Awaitable[bool]]) -> None:
        client = RendezvousClient(self._announcer, point)  # type: ignore[arg-type]  # an IHost in all it reads
        try:
            with trio.fail_after(_RENDEZVOUS_TIMEOUT_S):
                # create_register_message strips the last /p2p/<us> of each address (a circuit
                # address keeps its relay's /p2p/<relay>); no address at all is a ValueError
                await client.register(RENDEZVOUS_NAMESPACE, _RENDEZVOUS_TTL)
                peers, _ = await client.discover(RENDEZVOUS_NAMESPACE, limit=_RENDEZVOUS_LIMIT)
        # a point without the protocol fails stream negotiation; a refused registration is a
        # RendezvousError; a hostile point can make RendezvousClient.discover's parse_peer_info
        # raise on bad bytes (ValueError and others)
        except Exception as exc:  # noqa: BLE001
            self.failed += 1
            logger.info("rendezvous at %s failed: %s: %s", point, type(exc).__name__, exc)
            return
        name = point.to_base58()
        if name not in self.registered:
            self.registered.append(name)
        for info in peers[:_RENDEZVOUS_LIMIT]:
            if info.peer_id != self._host.get_id():
                self.discovered.add(info.peer_id.to_base58())
                if await dial_announced(self._host, info, dial):
                    self.dialed += 1


async def dial_announced(host: IHost, info: PeerInfo, dial: Callable[[str], Awaitable[bool]]) -> bool:
    """Dial a peer someone announced (mDNS, a rendezvous point, the DHT) at the first of its
    addresses, at most ``MAX_ADDRS``, that connects; True once connected by us. Ourselves and
    peers already connected are skipped. Announced addresses may lack the peer's own
    ``/p2p/<id>`` (a circuit one still names its relay's)."""
    if info.peer_id == host.get_id() or host.get_network().get_connections(info.peer_id):
        return False
    suffix = f"/p2p/{info.peer_id}"
    for addr in info.addrs[:MAX_ADDRS]:
        text = str(addr)
        if await dial(text if text.endswith(suffix) else text + suffix):
            return True
    return False
