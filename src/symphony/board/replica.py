"""A board replica on the network: the trio shell around ``crdt.Board`` (the pure core).

Board entries are self-certifying (``entries``), so they travel as they are on one gossip topic per
task, ``symphony/board/<task>``, and any peer may relay them: a replica merges what verifies and
counts what does not (``Board.rejected``, by reason), never raising into the transport. A replica
applies its own posts at once and publishes them; what arrives twice is merged twice, harmlessly.
Anti-entropy for a replica that joins late or lost messages: ``pull`` asks one peer for its whole
board over request/response (``/symphony/board-sync/1.0.0``) and merges the answer, entry by entry,
with the same checks.

Contract-net messages (announce, bid, award) are about who speaks, not shared state, so they are
sealed envelopes (``protocol.envelope``) on a second topic ``symphony/board/<task>/cnet``, checked for
signature, skew and replay like every other envelope, and handed to ``on_cnet``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from symphony.board.crdt import Board
from symphony.board.entries import Entry, decode_entry, parse_entry
from symphony.errors import PeerError, TransportError
from symphony.protocol import Envelope, Identity, ReplayGuard, open_envelope, parse_json, seal
from symphony.transport import Transport

SYNC_PROTOCOL = "/symphony/board-sync/1.0.0"
MAX_SYNC_BYTES = 8 * 1024 * 1024
CNET_KINDS = ("board.announce", "board.bid", "board.award")
CnetHandler = Callable[[Envelope], Awaitable[None]]


def topic(board_id: str) -> str:
    return f"symphony/board/{board_id}"


class BoardReplica:
    """One agent's copy of a task's board, kept in step with its peers.

    Args:
        transport: the node's network (memory engine or py-libp2p).
        identity: signs this agent's entries and envelopes.
        board: the replica's state (its ``board_id`` names the topics).
        clock: seconds; virtual under ``trio.testing.MockClock``; on real nodes their wall clock, since
            entry times are compared across replicas.
        topic_name: where entries are published; default ``topic(board_id)``. A node that holds many
            boards publishes all of them on one topic and routes what arrives by ``board`` itself
            (``service.TeamService``), so it never needs to leave a topic.
        is_member: whether an entry's author may post to this board (default: anyone whose signature
            verifies); an entry by another author is refused and counted as ``not_member``.
        cnet_topic: where contract-net envelopes are published; default ``topic(board_id) + "/cnet"``. Each
            carries ``board`` in its body, so a node that holds many boards routes them (``deliver_cnet``).
    """

    def __init__(self, transport: Transport, identity: Identity, board: Board, *,
                 clock: Callable[[], float] = trio.current_time, topic_name: str | None = None,
                 is_member: Callable[[str], bool] | None = None, cnet_topic: str | None = None) -> None:
        self.transport = transport
        self.identity = identity
        self.board = board
        self.clock = clock
        self.topic_name = topic_name or topic(board.board_id)
        self.is_member = is_member
        self.cnet_topic = cnet_topic or topic(board.board_id) + "/cnet"
        self.on_cnet: CnetHandler | None = None
        self._changed = trio.Event()
        self._guard = ReplayGuard()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def start(self) -> None:
        """Subscribe to the board's topics and serve pulls."""
        await self.transport.subscribe(self.topic_name, self._on_entry)
        await self.transport.subscribe(self.cnet_topic, self._on_cnet)
        self.transport.set_handler(SYNC_PROTOCOL, self._serve_sync)

    async def post(self, entry: Entry) -> None:
        """Apply one of our entries here and gossip it."""
        self._apply(entry)
        await self.transport.publish(self.topic_name, entry.to_bytes())

    async def changed(self) -> None:
        """Return when the next new entry is merged."""
        await self._changed.wait()

    async def pull(self, peer: str, *, timeout: float = 5.0) -> int:
        """Merge a peer's whole board (anti-entropy); returns the entries that were new here."""
        raw = await self.transport.request(peer, SYNC_PROTOCOL, self.board.board_id.encode(), timeout=timeout)
        try:
            items = parse_json(raw, limit=MAX_SYNC_BYTES)
        except PeerError as exc:
            self.board.rejected[exc.reason] += 1
            return 0
        if not isinstance(items, list):
            self.board.rejected["malformed"] += 1
            return 0
        return sum(self._merge_untrusted(item) for item in items)

    async def send_cnet(self, kind: str, body: dict[str, Any]) -> None:
        """Seal and gossip a contract-net message; it is handled here too, as peers handle it."""
        env = seal(self.identity, kind, {**body, "board": self.board.board_id}, now_ms=self.now_ms())
        await self.transport.publish(self.cnet_topic, env.to_bytes())
        if self.on_cnet is not None:
            await self.on_cnet(env)

    def _apply(self, entry: Entry) -> bool:
        new = self.board.add(entry)
        if new:
            self._changed.set()
            self._changed = trio.Event()
        return new

    def offer(self, entry: Entry) -> bool:
        """Merge an entry from the network whose signature was checked (``parse_entry``), if its author
        may post here; True if it was new."""
        if self.is_member is not None and not self.is_member(entry.author):
            self.board.rejected["not_member"] += 1
            return False
        return self._apply(entry)

    def _merge_untrusted(self, data: Any) -> bool:
        try:
            entry = parse_entry(data)
        except PeerError as exc:
            self.board.rejected[exc.reason] += 1
            return False
        return self.offer(entry)

    async def _on_entry(self, _sender: str, data: bytes) -> None:
        try:
            entry = decode_entry(data)  # capped at entries.MAX_ENTRY_BYTES, the one limit of an entry
        except PeerError as exc:
            self.board.rejected[exc.reason] += 1
            return
        self.offer(entry)

    async def _on_cnet(self, _sender: str, data: bytes) -> None:
        try:
            env = open_envelope(data, guard=self._guard, now_ms=self.now_ms())
        except PeerError as exc:
            self.board.rejected[f"cnet_{exc.reason}"] += 1
            return
        await self.deliver_cnet(env)

    async def deliver_cnet(self, env: Envelope) -> None:
        """Hand an opened contract-net envelope to ``on_cnet``; another kind, or a non-member sender, is counted."""
        if env.kind not in CNET_KINDS:
            self.board.rejected["cnet_kind"] += 1
        elif self.is_member is not None and not self.is_member(env.sender):
            self.board.rejected["cnet_not_member"] += 1
        elif self.on_cnet is None:
            self.board.rejected["cnet_unused"] += 1  # a board in claim mode, or no agent here
        else:
            await self.on_cnet(env)

    async def _serve_sync(self, _peer: str, payload: bytes) -> bytes:
        return self.sync_reply() if payload.decode(errors="replace") == self.board.board_id else b"[]"

    def sync_reply(self) -> bytes:
        """The whole board, as ``pull`` reads it."""
        return json.dumps([e.model_dump(mode="json") for e in self.board.all_entries()]).encode()


async def pull_quietly(replica: BoardReplica, peer: str) -> int:
    """``pull`` that counts a failed peer instead of raising (anti-entropy is best effort)."""
    try:
        return await replica.pull(peer)
    except TransportError:
        replica.board.rejected["sync_failed"] += 1
        return 0


__all__ = ["SYNC_PROTOCOL", "BoardReplica", "pull_quietly", "topic"]
