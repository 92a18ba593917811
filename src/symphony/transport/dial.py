"""Peer dials that return once connected: py-libp2p's happy-eyeballs head start, ended early.

``Swarm.dial_peer`` (libp2p/network/swarm.py) dials a peer's selected addresses one after another
and gives each a head start of ``_HAPPY_EYEBALLS_DELAY`` (250 ms) before the next. It waits that
head start out after *every* address, the last one included, and ends it early only when the dial
failed: a dial that connected in 20 ms on 127.0.0.1 still returned after 250 ms (and with a second
address it went on to dial that one too). Every first contact, every beacon round that dials a
candidate and every join paid it. Setting the head start to 0 is no fix: a node's addresses are
then all dialled at once (a UPnP node's router address and its own, issue #19).

The upstream fix (go-libp2p's dial worker) ends the head start when a dial connects. Without
copying ``dial_peer``, ``end_head_start_on_connect`` wraps two of the swarm's methods on the
instance: ``_dial_with_retry`` (one address) sets an event for the peer once it has connected
(``add_conn`` has run: the connection is in the swarm's table, started), and ``dial_peer``
returns as soon as that event is set, cancelling the rest of py-libp2p's ``dial_peer``: its head
start, and fallback addresses not yet dialled (as py-libp2p's own ``cancel_scope.cancel()`` does
once ``max_connections_per_peer`` connections are open). Address order, the head start for a
dial that fails or stalls, the negative cache and duplicate-dial handling stay py-libp2p's.
"""

from __future__ import annotations

from typing import Any

import trio
from libp2p.abc import INetConn
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from multiaddr import Multiaddr  # type: ignore[import-untyped]


class _ConnectedDials:
    """The two wrappers and the per-peer events they share (see the module docstring)."""

    def __init__(self, swarm: Swarm) -> None:
        self._swarm = swarm
        self._dial_peer = swarm.dial_peer
        self._dial_with_retry = swarm._dial_with_retry
        self._connected: dict[ID, trio.Event] = {}  # peers being dialled by dial_peer

    async def dial_with_retry(self, addr: Multiaddr, peer_id: ID, *args: Any, **kwargs: Any) -> INetConn:
        """py-libp2p's one-address dial; tells a ``dial_peer`` under way that it connected."""
        conn = await self._dial_with_retry(addr, peer_id, *args, **kwargs)
        if (event := self._connected.get(peer_id)) is not None:
            event.set()
        return conn

    async def dial_peer(self, peer_id: ID) -> list[INetConn]:
        """py-libp2p's ``dial_peer``, returning once one address has connected.

        Raises:
            whatever ``Swarm.dial_peer`` raises when no address connects.
        """
        connected = self._connected.setdefault(peer_id, trio.Event())
        done: list[list[INetConn]] = []
        failed: list[Exception] = []
        try:
            async with trio.open_nursery() as nursery:

                async def dial() -> None:
                    try:
                        done.append(await self._dial_peer(peer_id))
                    except Exception as exc:  # re-raised below as is, not wrapped in the nursery's group
                        failed.append(exc)
                    connected.set()

                nursery.start_soon(dial)
                await connected.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self._connected.get(peer_id) is connected:
                del self._connected[peer_id]
        if done:
            return done[0]
        conns = [conn for conn in self._swarm.get_connections(peer_id) if not conn.is_closed]
        if conns:
            self._swarm._negative_peer_cache.evict(str(peer_id))  # what the cancelled dial_peer would have done
            return conns
        raise failed[0] if failed else SwarmException(f"the connection to {peer_id} closed as soon as it opened")


def end_head_start_on_connect(swarm: Swarm) -> None:
    """Make ``swarm.dial_peer`` return once an address has connected (see the module docstring)."""
    dials = _ConnectedDials(swarm)
    swarm.dial_peer = dials.dial_peer  # type: ignore[method-assign]
    swarm._dial_with_retry = dials.dial_with_retry  # type: ignore[method-assign]
