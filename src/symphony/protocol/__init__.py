"""Wire protocol: identities, signed envelopes, versioned messages, request limits. Pure, no I/O.

- ``identity``: the Ed25519 ``Identity``; agent ID = libp2p peer ID, from which ``verify`` recovers
  the public key, so every signature is checked against the claimed author.
- ``envelope``: the signed binary frame every request and reply travels in (``seal`` / ``open_body``),
  with its ``ReplayGuard``.
- ``messages``: the pydantic wire models (ledger records, heartbeats, beacons, tasks) and the
  capability-vector codecs.
- ``limits``: per-peer token buckets and retry backoff.
- ``sharding``: the sharded ledger's summaries and gateway messages; import them from
  ``symphony.protocol.sharding`` (a public module of this package).

Validation lives here: a malformed, oversized, stale, replayed or forged input raises a
``symphony.errors.PeerError``.
"""

from symphony.protocol.envelope import (
    MAX_INFLATED_BYTES,
    PROTOCOL_VERSION,
    Envelope,
    ReplayGuard,
    b64,
    decode_envelope,
    open_body,
    open_envelope,
    parse_json,
    peek_kind,
    seal,
)
from symphony.protocol.identity import Identity, agent_id_from_public_key, public_key_from_agent_id, verify
from symphony.protocol.limits import RateLimit, RateLimiter, backoff_delay
from symphony.protocol.messages import (
    MAX_BEACON_REQUIREMENTS,
    MAX_RECORD_BYTES,
    MAX_VECTOR_DIMS,
    AgentId,
    Beacon,
    BeaconResponse,
    Digest,
    Hardware,
    Heartbeat,
    LedgerRecord,
    SyncReply,
    SyncRequest,
    Task,
    TaskResult,
    decode_sparse,
    decode_vector,
    encode_sparse,
    encode_vector,
)

__all__ = [
    "MAX_BEACON_REQUIREMENTS",
    "MAX_INFLATED_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_VECTOR_DIMS",
    "PROTOCOL_VERSION",
    "AgentId",
    "Beacon",
    "BeaconResponse",
    "Digest",
    "Envelope",
    "Hardware",
    "Heartbeat",
    "Identity",
    "LedgerRecord",
    "RateLimit",
    "RateLimiter",
    "ReplayGuard",
    "SyncReply",
    "SyncRequest",
    "Task",
    "TaskResult",
    "agent_id_from_public_key",
    "b64",
    "backoff_delay",
    "decode_envelope",
    "decode_sparse",
    "decode_vector",
    "encode_sparse",
    "encode_vector",
    "open_body",
    "open_envelope",
    "parse_json",
    "peek_kind",
    "public_key_from_agent_id",
    "seal",
    "verify",
]
