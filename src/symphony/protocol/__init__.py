"""Wire protocol: identities, signed envelopes, versioned messages. Pure, no I/O."""

from symphony.protocol.envelope import (
    PROTOCOL_VERSION,
    Envelope,
    ReplayGuard,
    open_envelope,
    seal,
)
from symphony.protocol.identity import Identity, agent_id_from_public_key, public_key_from_agent_id
from symphony.protocol.messages import (
    Beacon,
    BeaconResponse,
    Hardware,
    Heartbeat,
    LedgerRecord,
    SyncReply,
    SyncRequest,
    Task,
    TaskResult,
    decode_vector,
    encode_vector,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Beacon",
    "BeaconResponse",
    "Envelope",
    "Hardware",
    "Heartbeat",
    "Identity",
    "LedgerRecord",
    "ReplayGuard",
    "SyncReply",
    "SyncRequest",
    "Task",
    "TaskResult",
    "agent_id_from_public_key",
    "decode_vector",
    "encode_vector",
    "open_envelope",
    "public_key_from_agent_id",
    "seal",
]
