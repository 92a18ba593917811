"""Signed envelopes: the authenticated wrapper around every request/response message.

An envelope is ``{v, kind, sender, nonce, ts, body, sig}``. ``sig`` is the sender's
Ed25519 signature over the canonical encoding of everything else (sorted-key compact
JSON behind a domain-separation prefix), so it cannot be moved to another kind of
message or another body. A receiver checks, in order: size cap, JSON and schema,
version, signature, timestamp skew window, and that the nonce was not seen before
(DESIGN §2: "Beacons carry a nonce and deadline; replies echo the nonce").

Self-certifying ledger data (records, heartbeats) is signed by its author directly
(see ``messages``) because it is relayed by third parties; envelopes are for messages
whose sender matters: beacons, tasks, sync requests.
"""

from __future__ import annotations

import base64
import json
import os
from collections import OrderedDict
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from symphony.errors import BadSignature, MalformedMessage, ReplayedMessage, StaleMessage, TooLarge, WrongVersion
from symphony.protocol.identity import MAX_AGENT_ID_LEN, Identity, verify

PROTOCOL_VERSION = 1
MAX_ENVELOPE_BYTES = 256 * 1024
DEFAULT_SKEW_MS = 30_000


def canonical_bytes(domain: str, payload: dict[str, Any]) -> bytes:
    """The exact bytes that get signed: ``symphony/<domain>\\n`` + sorted compact JSON."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"symphony/{domain}\n".encode() + text.encode("utf-8")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise MalformedMessage("field is not valid base64") from exc


class Envelope(BaseModel):
    """A signed, replay-protected message from ``sender``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int
    kind: str = Field(min_length=1, max_length=64)
    sender: str = Field(min_length=1, max_length=MAX_AGENT_ID_LEN)
    nonce: str = Field(min_length=16, max_length=64)
    ts: int = Field(ge=0)
    body: dict[str, Any]
    sig: str = Field(max_length=128)

    def signed_part(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"sig"})

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def seal(identity: Identity, kind: str, body: dict[str, Any], *, now_ms: int) -> Envelope:
    """Wrap ``body`` in an envelope signed by ``identity`` with a fresh random nonce."""
    unsigned = Envelope(v=PROTOCOL_VERSION, kind=kind, sender=identity.agent_id, nonce=os.urandom(12).hex(),
                        ts=now_ms, body=body, sig="")
    sig = identity.sign(canonical_bytes("envelope", unsigned.signed_part()))
    return unsigned.model_copy(update={"sig": b64(sig)})


class ReplayGuard:
    """Remembers nonces inside the skew window so a captured message cannot be replayed.

    Memory is bounded by ``capacity``. When full, the oldest entry is evicted and the
    acceptance floor rises to its timestamp: anything at or before the floor is then
    rejected as stale, so eviction never reopens a replay hole.
    """

    def __init__(self, *, skew_ms: int = DEFAULT_SKEW_MS, capacity: int = 100_000) -> None:
        self.skew_ms = skew_ms
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._floor_ms = -1

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, sender: str, nonce: str, ts: int, *, now_ms: int) -> None:
        """Accept (and remember) the nonce, or raise.

        Raises:
            StaleMessage: ``ts`` is outside ``now ± skew`` or below the eviction floor.
            ReplayedMessage: this (sender, nonce) was already accepted.
        """
        if abs(now_ms - ts) > self.skew_ms or ts <= self._floor_ms:
            raise StaleMessage(f"timestamp {ts} outside the accepted window around {now_ms}")
        self._expire(now_ms)
        key = (sender, nonce)
        if key in self._seen:
            raise ReplayedMessage(f"nonce {nonce} from {sender} was already used")
        self._seen[key] = ts
        if len(self._seen) > self.capacity:
            _, evicted_ts = self._seen.popitem(last=False)
            self._floor_ms = max(self._floor_ms, evicted_ts)

    def _expire(self, now_ms: int) -> None:
        while self._seen:
            key, ts = next(iter(self._seen.items()))
            if ts >= now_ms - self.skew_ms:
                break
            del self._seen[key]


def parse_json(raw: bytes, *, limit: int) -> Any:
    """Size-check then decode JSON from the network."""
    if len(raw) > limit:
        raise TooLarge(f"message of {len(raw)} bytes exceeds the {limit}-byte cap")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"not valid JSON: {exc}") from exc


def peek_kind(raw: bytes) -> str:
    """The ``kind`` an envelope claims, unverified (for accounting only); ``"?"`` if unreadable."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "?"
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else "?"


def open_envelope(
    raw: bytes,
    *,
    guard: ReplayGuard,
    now_ms: int,
    kind: str | None = None,
    limit: int = MAX_ENVELOPE_BYTES,
) -> Envelope:
    """Decode and fully verify an envelope received from the network.

    Raises:
        TooLarge, MalformedMessage, WrongVersion, BadSignature, StaleMessage, ReplayedMessage.
    """
    data = parse_json(raw, limit=limit)
    if isinstance(data, dict) and data.get("v") != PROTOCOL_VERSION:
        raise WrongVersion(f"protocol version {data.get('v')!r} is not {PROTOCOL_VERSION}")
    try:
        env = Envelope.model_validate(data)
    except ValidationError as exc:
        raise MalformedMessage(f"invalid envelope: {exc.error_count()} schema errors") from exc
    if kind is not None and env.kind != kind:
        raise MalformedMessage(f"expected a {kind!r} message, got {env.kind!r}")
    verify(env.sender, canonical_bytes("envelope", env.signed_part()), unb64(env.sig))
    guard.check(env.sender, env.nonce, env.ts, now_ms=now_ms)
    return env


BodyT = TypeVar("BodyT", bound=BaseModel)


def open_body(
    raw: bytes,
    body_type: type[BodyT],
    *,
    sender: str,
    kind: str,
    guard: ReplayGuard,
    now_ms: int,
    limit: int = MAX_ENVELOPE_BYTES,
) -> tuple[Envelope, BodyT]:
    """``open_envelope`` plus the two checks every request/reply handler needs: the
    envelope's signer is ``sender`` (the peer the transport authenticated, or the one we
    asked), and its body validates as ``body_type``.

    Raises:
        everything ``open_envelope`` raises; BadSignature for a signer mismatch;
        MalformedMessage for an invalid body.
    """
    env = open_envelope(raw, guard=guard, now_ms=now_ms, kind=kind, limit=limit)
    if env.sender != sender:
        raise BadSignature(f"{kind} signed by {env.sender} came from {sender}")
    try:
        return env, body_type.model_validate(env.body)
    except ValidationError as exc:
        raise MalformedMessage(f"invalid {kind} body: {exc.errors()[0]['msg']}") from exc
