"""Signed envelopes: the authenticated wrapper around every request/response message.

An envelope is a compact binary frame (version 2; ~120 bytes of framing instead of ~270 as JSON
with base58/base64 text)::

    version u8 = 2 | flags u8 (bit 0: body is zlib) | sender Ed25519 public key (32 bytes)
    | nonce (12 bytes) | ts u64 ms | kind length u8 | kind (ASCII) | body (JSON object) | sig (64 bytes)

``sig`` is the sender's Ed25519 signature over ``symphony/envelope/2\n`` + every byte before it,
exactly as sent, so it cannot be moved to another kind of message or another body. A body over
256 bytes is zlib-compressed when that makes it smaller; inflating is capped at 256 kB (a zip bomb is
refused) and happens only after the signature checked out. A receiver checks, in order: size cap,
framing (version, flags, kind), signature, timestamp skew window, that the nonce was not seen
before (DESIGN §2: "Beacons carry a nonce and deadline; replies echo the nonce"), then inflates
and parses the body.

Self-certifying ledger data (records, heartbeats) is signed by its author directly
(see ``messages``) because it is relayed by third parties; envelopes are for messages
whose sender matters: beacons, tasks, sync requests.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, PlainSerializer, PlainValidator, ValidationError

from symphony.errors import BadSignature, MalformedMessage, ReplayedMessage, StaleMessage, TooLarge, WrongVersion
from symphony.protocol.identity import Identity, agent_id_from_public_key, verify

PROTOCOL_VERSION = 1  # of self-certifying ledger data (``messages``)
ENVELOPE_VERSION = 2
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_INFLATED_BYTES = 256 * 1024
COMPRESS_ABOVE = 256  # task and chain-beacon bodies (~600 B of JSON text) shrink by a quarter to a half
DEFAULT_SKEW_MS = 30_000

_FIXED = struct.Struct("<BB32s12sQB")  # version, flags, sender key, nonce, ts, kind length
_SIG_LEN = 64
_ZLIB = 0x01
_KIND = re.compile(r"[a-z0-9._-]{1,64}")
_DOMAIN = b"symphony/envelope/2\n"


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


@functools.lru_cache(maxsize=65_536)
def _agent_id(public_key: bytes) -> str:
    return agent_id_from_public_key(public_key)


@dataclass(frozen=True)
class Envelope:
    """A signed, replay-protected message from ``sender``; ``wire`` is the exact frame sent."""

    kind: str
    sender: str
    nonce: str  # 24 hex digits (12 random bytes)
    ts: int
    body: dict[str, Any]
    wire: bytes

    def to_bytes(self) -> bytes:
        return self.wire


def _encode_body(body: dict[str, Any]) -> tuple[int, bytes]:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > COMPRESS_ABOVE:
        packed = zlib.compress(data, 6)
        if len(packed) < len(data):
            return _ZLIB, packed
    return 0, data


def seal(identity: Identity, kind: str, body: dict[str, Any], *, now_ms: int) -> Envelope:
    """Wrap ``body`` in an envelope signed by ``identity`` with a fresh random nonce.

    Raises:
        ValueError: ``kind`` is not 1-64 of ``[a-z0-9._-]`` or ``now_ms`` is negative (local misuse).
    """
    if not _KIND.fullmatch(kind) or now_ms < 0:
        raise ValueError(f"cannot seal kind {kind!r} at {now_ms!r}")
    nonce = os.urandom(12)
    flags, data = _encode_body(body)
    unsigned = _FIXED.pack(ENVELOPE_VERSION, flags, identity.public_key, nonce, now_ms, len(kind)) + kind.encode() + data
    wire = unsigned + identity.sign(_DOMAIN + unsigned)
    return Envelope(kind=kind, sender=identity.agent_id, nonce=nonce.hex(), ts=now_ms, body=body, wire=wire)


@dataclass(frozen=True)
class _Frame:
    flags: int
    key: bytes
    nonce: bytes
    ts: int
    kind: str
    data: bytes
    sig: bytes


def _frame(raw: bytes) -> _Frame:
    """Split a frame into its fields, checking the framing only (no signature, no body)."""
    if len(raw) < _FIXED.size + 1 + _SIG_LEN:
        raise MalformedMessage(f"envelope of {len(raw)} bytes is truncated")
    version, flags, key, nonce, ts, kind_len = _FIXED.unpack_from(raw)
    if version != ENVELOPE_VERSION:
        raise WrongVersion(f"envelope version {version} is not {ENVELOPE_VERSION}")
    if flags & ~_ZLIB:
        raise MalformedMessage(f"envelope flags {flags:#x} are unknown")
    body_at = _FIXED.size + kind_len
    kind = raw[_FIXED.size:body_at].decode("ascii", errors="replace")
    if not _KIND.fullmatch(kind) or body_at > len(raw) - _SIG_LEN:
        raise MalformedMessage(f"envelope kind {kind[:64]!r} is invalid")
    return _Frame(flags, key, nonce, ts, kind, raw[body_at:-_SIG_LEN], raw[-_SIG_LEN:])


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise MalformedMessage(f"envelope body does not inflate: {exc}") from exc
    if len(out) > MAX_INFLATED_BYTES:
        raise TooLarge(f"envelope body inflates past the {MAX_INFLATED_BYTES}-byte cap")
    if not inflater.eof or inflater.unused_data:
        raise MalformedMessage("envelope body is not one complete zlib stream")
    return out


def _body(frame: _Frame) -> dict[str, Any]:
    data = _inflate(frame.data) if frame.flags & _ZLIB else frame.data
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"envelope body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise MalformedMessage(f"envelope body is a {type(body).__name__}, not an object")
    return body


def decode_envelope(raw: bytes) -> Envelope:
    """Parse an envelope WITHOUT checking its signature or freshness (for our own frames and accounting).

    Raises:
        MalformedMessage, WrongVersion, TooLarge.
    """
    frame = _frame(raw)
    return Envelope(kind=frame.kind, sender=_agent_id(frame.key), nonce=frame.nonce.hex(), ts=frame.ts,
                    body=_body(frame), wire=raw)


def _sealed(value: Any) -> Envelope:
    """Pydantic validator of ``Sealed``: a base64 frame within the size cap, framing checked (not the signature)."""
    if isinstance(value, Envelope):
        return value
    if not isinstance(value, str) or len(value) > (MAX_ENVELOPE_BYTES + 2) // 3 * 4:
        raise ValueError("a sealed envelope is a base64 string within the envelope size cap")
    try:
        return decode_envelope(unb64(value))
    except (MalformedMessage, WrongVersion) as exc:
        raise ValueError(str(exc)) from exc


#: An envelope carried inside another message's body (a relayed beacon, a member's reply in a gateway
#: bundle): its exact frame as base64, so the final receiver can verify the original signature itself.
Sealed = Annotated[Envelope, PlainValidator(_sealed), PlainSerializer(lambda env: b64(env.wire), return_type=str)]


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
        return _frame(raw).kind
    except (MalformedMessage, WrongVersion):
        return "?"


def open_envelope(
    raw: bytes,
    *,
    guard: ReplayGuard,
    now_ms: int,
    kind: str | None = None,
    limit: int = MAX_ENVELOPE_BYTES,
) -> Envelope:
    """Decode and fully verify an envelope received from the network (checks in the module docstring's order).

    Raises:
        TooLarge, MalformedMessage, WrongVersion, BadSignature, StaleMessage, ReplayedMessage.
    """
    if len(raw) > limit:
        raise TooLarge(f"envelope of {len(raw)} bytes exceeds the {limit}-byte cap")
    frame = _frame(raw)
    if kind is not None and frame.kind != kind:
        raise MalformedMessage(f"expected a {kind!r} message, got {frame.kind!r}")
    sender = _agent_id(frame.key)
    verify(sender, _DOMAIN + raw[:-_SIG_LEN], frame.sig)
    nonce = frame.nonce.hex()
    guard.check(sender, nonce, frame.ts, now_ms=now_ms)
    return Envelope(kind=frame.kind, sender=sender, nonce=nonce, ts=frame.ts, body=_body(frame), wire=raw)


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
