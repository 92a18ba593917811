"""Anti-entropy: pull the difference from one peer to repair whatever push gossip missed.

Theory of operation
-------------------
Late joiners, healed partitions and lost messages all leave replicas apart. Every
``anti_entropy_interval_s`` (or at once when a heartbeat shows we are behind) a node picks one
random connected peer and runs at most three request/response steps over
``/symphony/ledger-sync/1.0.0``:

1. compare digest hashes, 32 bytes: the common case ends here;
2. send the full digest ``{agent_id: lamport}``, receive the records we lack plus the IDs the peer
   lacks (``answer``);
3. push those (``records_wanted``).

Requests are signed envelopes (replay-checked); records inside are self-signed and verified one
by one (``Ledger.merge_wire``). ``answer`` and ``records_wanted`` decide; ``AntiEntropy`` only
carries their bytes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import ValidationError

from symphony.errors import MalformedMessage, PeerError, TransportError
from symphony.ledger.context import GossipContext, Step
from symphony.ledger.store import Ledger, Merge
from symphony.protocol.envelope import open_body, parse_json, seal
from symphony.protocol.messages import SyncReply, SyncRequest

SYNC_PROTOCOL = "/symphony/ledger-sync/1.0.0"
SYNC_KIND = "ledger.sync"
MAX_SYNC_BYTES = 4 * 1024 * 1024

#: ``after_merge(payload, outcome, source)``: what push gossip does with a record merged from a sync
#: with ``source`` (``LedgerService``).
AfterMerge = Callable[[dict[str, Any], Merge, str], Awaitable[None]]


def answer(ledger: Ledger, request: SyncRequest, *, limit: int) -> SyncReply:
    """The reply to one sync step (its pushed ``records`` already merged): step 1 says whether the
    digest hashes agree (an empty hash, a bare push, counts as agreeing), step 2 sends up to
    ``limit`` records the peer lacks and names those we lack."""
    if request.digest is None:
        return SyncReply(in_sync=request.digest_hash == ledger.digest_hash() or not request.digest_hash)
    ours_newer, theirs_newer = ledger.diff(request.digest)
    return SyncReply(records=[r.model_dump(mode="json") for r in ours_newer[:limit]], want=theirs_newer)


def records_wanted(ledger: Ledger, want: list[str], *, limit: int) -> list[dict[str, Any]]:
    """Step 3: the records a peer asked for that we hold, at most ``limit``, as they travel."""
    wanted = [ledger.records[a] for a in want if a in ledger.records]
    return [r.model_dump(mode="json") for r in wanted[:limit]]


def encode_reply(reply: SyncReply) -> bytes:
    return json.dumps(reply.model_dump(mode="json", exclude_defaults=True), separators=(",", ":")).encode()


class AntiEntropy:
    """The anti-entropy shell of one node: the pull loop, the client steps and the server handler.

    Call ``run()`` in a task group (``LedgerService.run`` does); ``wake()`` asks for a pull now.
    """

    def __init__(self, ctx: GossipContext, *, after_merge: AfterMerge, heartbeat: Step) -> None:
        self.ctx = ctx
        self._after_merge = after_merge
        self._heartbeat = heartbeat
        self._wanted = anyio.Event()
        self._announce = False
        self._first: list[str] = []  # peers to sync with at the next wake, before a random one

    def wake(self, *, announce: bool = False, peer: str | None = None) -> None:
        """Pull at once; with ``announce``, heartbeat first (a peer came back: tell the far side we live);
        with ``peer``, sync with that peer (one we just met and hold no record of)."""
        self._announce = self._announce or announce
        if peer is not None and peer not in self._first:
            self._first.append(peer)
        self._wanted.set()

    def pull_if_unknown(self, agent_ids: list[str]) -> None:
        """Agents vouched for whose records we lack: pull them now (as a heartbeat "behind" would)."""
        if self.ctx.lacks_any(agent_ids):
            self._wanted.set()

    async def run(self) -> None:
        """Sync with one random kept peer every interval (jittered by half), or sooner when woken."""
        ctx = self.ctx
        while True:
            with anyio.move_on_after(ctx.config.anti_entropy_interval_s * ctx.rng.uniform(0.5, 1.5)):
                await self._wanted.wait()
            self._wanted = anyio.Event()
            if self._announce:
                self._announce = False
                await self._heartbeat()
            peers = ctx.kept_peers()
            first, self._first = [p for p in self._first if p in peers], []
            for peer in first:
                await self.sync_with(peer)
            if peers and not first:
                await self.sync_with(ctx.rng.choice(peers))

    async def sync_with(self, peer: str) -> bool:
        """Run one anti-entropy exchange with ``peer``. Returns False if it failed."""
        ledger = self.ctx.ledger
        try:
            reply = await self.request(peer, SyncRequest(digest_hash=ledger.digest_hash()))
            if reply.in_sync:
                return True
            reply = await self.request(peer, SyncRequest(digest=ledger.digest()))
            await self.merge_batch(reply.records, source=peer)
            if reply.want:
                batch = records_wanted(ledger, reply.want, limit=self.ctx.config.max_records_per_reply)
                await self.request(peer, SyncRequest(records=batch))
            return True
        except TransportError as exc:
            self.ctx.on_event("sync_failed", {"peer": peer, "error": type(exc).__name__})
        except PeerError as exc:
            self.ctx.reject(exc, source=peer, channel=SYNC_PROTOCOL)
        return False

    async def request(self, peer: str, request: SyncRequest) -> SyncReply:
        """One signed sync step to ``peer``. Raises TransportError, or PeerError for a bad reply."""
        ctx = self.ctx
        body = request.model_dump(mode="json", exclude_defaults=True)
        envelope = seal(ctx.identity, SYNC_KIND, body, now_ms=ctx.now_ms())
        timeout = ctx.config.request_timeout_s
        raw = await ctx.transport.request(peer, SYNC_PROTOCOL, envelope.to_bytes(), timeout=timeout)
        try:
            return SyncReply.model_validate(parse_json(raw, limit=MAX_SYNC_BYTES))
        except ValidationError as exc:
            raise MalformedMessage(f"invalid sync reply: {exc.error_count()} errors") from exc

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Transport handler for ``SYNC_PROTOCOL``: serve one step; rejects unauthenticated or malformed requests."""
        ctx = self.ctx
        try:
            _, request = open_body(payload, SyncRequest, sender=peer, kind=SYNC_KIND, guard=ctx.guard,
                                   now_ms=ctx.now_ms(), limit=MAX_SYNC_BYTES)
        except PeerError as exc:
            ctx.reject(exc, source=peer, channel=SYNC_PROTOCOL)
            raise
        await self.merge_batch(request.records, source=peer)
        return encode_reply(answer(ctx.ledger, request, limit=ctx.config.max_records_per_reply))

    async def merge_batch(self, records: list[dict[str, Any]], *, source: str) -> None:
        """Verify and merge records one by one; a bad one is counted and the rest still merge."""
        for data in records:
            outcome = self.ctx.ledger.merge_wire(data, now=self.ctx.clock())
            if isinstance(outcome, PeerError):
                self.ctx.reject(outcome, source=source, channel=SYNC_PROTOCOL, counted=True)
            else:
                await self._after_merge(data, outcome, source)
