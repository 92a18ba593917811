"""Kademlia DHT (``symphony node --dht``): Symphony peers found beyond one ledger's reach.

Only ``symphony.transport.libp2p`` uses this module. It runs py-libp2p's ``KadDHT``
(``libp2p.kad_dht``) in server mode on the standard ``/ipfs/kad/1.0.0`` protocol, and uses it
for one thing: **provider records under ``SYMPHONY_KEY``**. Every ``--dht`` node adds each peer
it connects to (its bootstrap peers first) to its routing table, then, every
``DHT_INTERVAL_S``, announces itself as a provider of ``SYMPHONY_KEY`` to the peers closest
to the key and asks those peers for the other providers, and dials them. Two nodes that share
no ledger path (other bootstrap nodes, other shards) but sit in one DHT find each other.

What py-libp2p does not do, done here:

- **Our record's addresses.** ``ProviderStore.provide`` and ``_send_add_provider`` announce
  ``host.get_addrs()``: the bound addresses only (``_BoundAddrsOnly``), which nobody can dial
  when we are behind NAT. ``reach.RecordAddrsHost`` hands the provider store our record's
  addresses instead, the ``/p2p-circuit`` ones first.
- **Finding others, not ourselves.** ``ProviderStore.find_providers`` answers from the local
  store whenever it holds any provider, and ``provide`` has just put us there: it never asked
  the network. ``Dht._find`` asks the closest peers themselves (``find_closest_peers_network``
  is the iterative part; provider records live on those peers).

Hostile input (a stranger's DHT messages must neither crash nor bloat the node):

- Every inbound stream runs under the transport's stream guard (an exception resets the
  stream and counts an offence), and py-libp2p caps a message at 4 MiB, its handlers at 12.
- **Values are refused**: a validator with no namespace, strict, so every ``PUT_VALUE`` is
  rejected (py-libp2p's default accepts ``/pk`` and ``/ipns`` records, up to 50,000 of them:
  memory for anyone to fill). ``enable_values=False`` alone is only read by
  ``validate_config``, never by the ``PUT_VALUE`` handler.
- **Providers only under ``SYMPHONY_KEY``**: py-libp2p's store holds 20 providers per key but
  any number of keys; a record under another key is refused and counted. A provider's
  addresses are cut to ``MAX_ADDRS`` of at most ``MAX_ADDR_LEN`` characters (py-libp2p keeps
  all that fit the 4 MiB message). Its rate limit (10 ``ADD_PROVIDER`` per peer per 10 s) stays.
- What a lookup returns is hostile input as well: at most ``_FOUND_LIMIT`` providers are dialed,
  each at its first ``MAX_ADDRS`` addresses, through ``connect`` (Noise proves the peer ID).

Known limit (py-libp2p's provider store, per the Kademlia spec): a node keeps 20 providers per
key for 48 hours, so 20 fake providers announced first can hide later ones at that node.
Provider records are a way in, not the membership: what a node learns after connecting comes
from the ledger.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.provider_store import ProviderStore
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import NamespacedValidator
from libp2p.tools.anyio_service import background_trio_service

from symphony.protocol.messages import record_addrs
from symphony.transport.reach import RecordAddrsHost, dial_announced

logger = logging.getLogger(__name__)

#: the DHT key Symphony nodes provide: a sha2-256 multihash of a fixed name
SYMPHONY_KEY = b"\x12\x20" + hashlib.sha256(b"/symphony/peers/1").digest()
#: seconds between two rounds of announcing ourselves and looking for the others
DHT_INTERVAL_S = 60.0
#: how long one round (announce, look up) may take
_ROUND_TIMEOUT_S = 30.0
#: providers dialed from one lookup
_FOUND_LIMIT = 20


class _SymphonyProviders(ProviderStore):
    """py-libp2p's provider store, holding providers of ``SYMPHONY_KEY`` only, each with at
    most ``MAX_ADDRS`` addresses; ``refused`` counts the records turned away."""

    def __init__(self, host: Any, peer_routing: Any) -> None:
        super().__init__(host=host, peer_routing=peer_routing)
        self.refused = 0

    def add_provider(self, key: bytes, provider: PeerInfo) -> None:
        if key != SYMPHONY_KEY:
            self.refused += 1
            logger.debug("refused a provider record of %s under a foreign key", provider.peer_id)
            return
        super().add_provider(key, PeerInfo(provider.peer_id, record_addrs(provider.addrs)))


class Dht:
    """A Kademlia DHT node that announces us under ``SYMPHONY_KEY`` and dials the others there."""

    def __init__(self, host: IHost, *, addrs: Callable[[], list[str]]) -> None:
        self._host = host
        # strict, with no namespace: every PUT_VALUE is refused (module docstring)
        self._kad = KadDHT(
            host,
            DHTMode.SERVER,
            validator=NamespacedValidator({}, strict_validation=True),
            validator_changed=True,
            strict_validation=True,
            enable_values=False,
        )
        self._providers = _SymphonyProviders(RecordAddrsHost(host, addrs), self._kad.peer_routing)
        self._kad.provider_store = self._providers
        self._running = False
        self.announced = 0  # rounds in which at least one peer took our provider record
        self.discovered: set[str] = set()  # Symphony peers the DHT told us of
        self.connected: set[str] = set()  # of those, connected once a round ended (the lookup itself may dial them)
        self.failed = 0  # rounds that raised or timed out

    def status(self) -> dict[str, object]:
        """What ``reach_status`` shows: routing table size, rounds announced, peers found and
        connected, failed rounds, provider records refused."""
        return {
            "routing_table": self._kad.get_routing_table_size(),
            "announced": self.announced,
            "discovered": len(self.discovered),
            "connected": len(self.connected),
            "failed": self.failed,
            "refused": self._providers.refused,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the DHT protocol until cancelled."""
        async with background_trio_service(self._kad):
            task_status.started()
            await trio.sleep_forever()

    async def join(self, peer: ID, dial: Callable[[str], Awaitable[bool]]) -> None:
        """Add ``peer`` (just connected) to the routing table; the first one also starts the
        rounds, which run every ``DHT_INTERVAL_S`` until cancelled."""
        await self._kad.add_peer(peer)
        if self._running:
            return
        self._running = True
        while True:
            await self._round(dial)
            await trio.sleep(DHT_INTERVAL_S)

    async def _round(self, dial: Callable[[str], Awaitable[bool]]) -> None:
        try:
            with trio.fail_after(_ROUND_TIMEOUT_S):
                if await self._providers.provide(SYMPHONY_KEY):
                    self.announced += 1
                found = await self._find()
        # py-libp2p raises several unrelated types from lookups against misbehaving peers
        except Exception as exc:  # noqa: BLE001
            self.failed += 1
            logger.info("DHT round failed: %s: %s", type(exc).__name__, exc)
            return
        network = self._host.get_network()
        for info in found[:_FOUND_LIMIT]:
            peer = info.peer_id.to_base58()
            self.discovered.add(peer)
            if await dial_announced(self._host, info, dial) or network.get_connections(info.peer_id):
                self.connected.add(peer)

    async def _find(self) -> list[PeerInfo]:
        """Providers of ``SYMPHONY_KEY`` other than us, asked of the peers closest to the key."""
        closest = await self._kad.peer_routing.find_closest_peers_network(SYMPHONY_KEY)
        me, found = self._host.get_id(), {}
        for peer in closest:
            if peer == me:
                continue
            providers, _ = await self._providers._get_providers_from_peer_with_closers(peer, SYMPHONY_KEY)
            for info in providers[:_FOUND_LIMIT]:
                if info.peer_id != me:
                    found.setdefault(info.peer_id, info)
        return list(found.values())
