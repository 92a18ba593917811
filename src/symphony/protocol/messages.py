"""Versioned wire models (pydantic). Every field is bounded so hostile input is capped.

Self-certifying ledger data:

- ``LedgerRecord``: an agent's capability record, signed by the agent itself over
  body + lamport. Any node may store and relay it; only the owner can produce it.
- ``Heartbeat``: a tiny signed liveness beacon carrying the owner's current lamport,
  so a receiver that is behind knows to pull the newer record.

Envelope bodies (``envelope.seal``): ``Beacon``, ``BeaconResponse``, ``Task``,
``TaskResult`` (the paper's Alg. 1 messages) and the anti-entropy ``Sync*`` bodies.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from symphony.errors import MalformedMessage, WrongVersion
from symphony.protocol.envelope import PROTOCOL_VERSION, b64, canonical_bytes, parse_json, unb64
from symphony.protocol.identity import MAX_AGENT_ID_LEN, Identity, verify

MAX_RECORD_BYTES = 16 * 1024
MAX_HEARTBEAT_BYTES = 1024
MAX_VECTOR_DIMS = 256
MAX_LAMPORT = 2**53
#: addresses in one agent record (also what a node registers at a rendezvous point or in the DHT)
MAX_ADDRS = 8
#: characters in one multiaddr of a record
MAX_ADDR_LEN = 256
_Addr = TypeVar("_Addr")

AgentId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_AGENT_ID_LEN)]
ShortText = Annotated[str, StringConstraints(max_length=64)]
Multiaddr = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ADDR_LEN, pattern=r"^/")]
Availability = Literal["online", "busy", "leaving"]


def record_addrs(addrs: Sequence[_Addr]) -> list[_Addr]:
    """The addresses a node publishes (its record, a rendezvous registration, a DHT provider record):
    the first ``MAX_ADDRS`` of ``addrs`` whose text fits ``MAX_ADDR_LEN``, in order (reachable ones
    come first). ``addrs`` are strings or multiaddrs."""
    return [addr for addr in addrs if len(str(addr)) <= MAX_ADDR_LEN][:MAX_ADDRS]


def encode_vector(values: list[float]) -> str:
    """Pack a capability vector as base64 little-endian float16 (2 bytes per dim).

    float16 keeps three significant digits, ample for cosine ranking, and doubles as
    the coarsening DESIGN §2 asks of published vectors.
    """
    if len(values) > MAX_VECTOR_DIMS:
        raise ValueError(f"vector has {len(values)} dims, the cap is {MAX_VECTOR_DIMS}")
    return b64(struct.pack(f"<{len(values)}e", *values))


def decode_vector(text: str) -> list[float]:
    raw = unb64(text)
    if len(raw) % 2 or len(raw) // 2 > MAX_VECTOR_DIMS:
        raise MalformedMessage(f"capability vector of {len(raw)} bytes is not a valid float16 array")
    values = list(struct.unpack(f"<{len(raw) // 2}e", raw))
    if not math.isfinite(sum(values)):  # float16 sums cannot overflow; any inf or nan makes it non-finite
        raise MalformedMessage("capability vector holds a non-finite value")
    return values


_SPARSE_HEADER = struct.Struct("<eB")  # float16 scale, dims - 1
_QUANT = 127


def encode_sparse(values: list[float]) -> str:
    """Pack a mostly-zero vector (a requirement r(t)) as base64 of: float16 scale, dims - 1 (one byte),
    then 2 bytes per non-zero dim: its index and its value quantized to int8 (value ~ scale * q / 127).

    A 224-dim requirement with ~15 set dims takes ~33 bytes instead of 448 (``encode_vector``).
    Quantization costs at most scale / 254 per dim, far below what changes a cosine ranking.
    """
    if not 1 <= len(values) <= MAX_VECTOR_DIMS:
        raise ValueError(f"vector has {len(values)} dims, it must have 1 to {MAX_VECTOR_DIMS}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("vector holds a non-finite value")
    scale = struct.unpack("<e", struct.pack("<e", min(65504.0, max((abs(v) for v in values), default=0.0))))[0]
    entries = [(i, round(v / scale * _QUANT)) for i, v in enumerate(values)] if scale > 0 else []
    body = b"".join(struct.pack("<Bb", i, max(-_QUANT, min(_QUANT, q))) for i, q in entries if q)
    return b64(_SPARSE_HEADER.pack(scale if body else 0.0, len(values) - 1) + body)


def decode_sparse(text: str) -> list[float]:
    """Strict inverse of ``encode_sparse``: exactly one canonical encoding per vector is accepted.

    Raises:
        MalformedMessage: bad base64, truncated, scale not finite or not positive with entries (or
            not zero without), an index out of range or not strictly increasing (duplicates), a
            zero or -128 value.
    """
    raw = unb64(text)
    if len(raw) < _SPARSE_HEADER.size or (len(raw) - _SPARSE_HEADER.size) % 2:
        raise MalformedMessage(f"sparse vector of {len(raw)} bytes is truncated")
    scale, last = _SPARSE_HEADER.unpack_from(raw)
    dims = last + 1
    count = (len(raw) - _SPARSE_HEADER.size) // 2
    if dims > MAX_VECTOR_DIMS or count > dims:
        raise MalformedMessage(f"sparse vector claims {dims} dims and {count} entries (cap {MAX_VECTOR_DIMS})")
    if not math.isfinite(scale) or (scale <= 0 if count else scale != 0):
        raise MalformedMessage(f"sparse vector scale {scale!r} is invalid for {count} entries")
    values = [0.0] * dims
    previous = -1
    for index, q in struct.iter_unpack("<Bb", raw[_SPARSE_HEADER.size:]):
        if not previous < index < dims or q in (0, -128):
            raise MalformedMessage(f"sparse vector entry ({index}, {q}) is out of range, repeated or unordered")
        values[index] = scale * q / _QUANT
        previous = index
    return values


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON body for an envelope: fields left at their defaults are omitted (the receiver fills them)."""
        return self.model_dump(mode="json", exclude_defaults=True)


class Hardware(_Wire):
    """Declared hardware profile (used for QUERY constraints and the 64 hardware dims)."""

    memory_gb: float = Field(default=0.0, ge=0, le=1e6)
    accelerator: ShortText = "cpu"
    tokens_per_s: float = Field(default=0.0, ge=0, le=1e7)
    cores: int = Field(default=0, ge=0, le=65536)  # CPU cores (0: not said)


class _Signed(_Wire):
    """A model whose ``sig`` is the author's signature over every other field."""

    _domain = "signed"

    sig: str = Field(default="", max_length=128)

    @property
    def author(self) -> str:
        raise NotImplementedError

    def signing_bytes(self) -> bytes:
        return canonical_bytes(self._domain, self.model_dump(mode="json", exclude={"sig"}))

    def signed_by(self, identity: Identity) -> Self:
        if identity.agent_id != self.author:
            raise ValueError(f"{identity.agent_id} cannot sign data authored by {self.author}")
        return self.model_copy(update={"sig": b64(identity.sign(self.signing_bytes()))})

    def verify(self) -> None:
        """Raise ``BadSignature`` unless ``sig`` was made by the author's own key."""
        verify(self.author, self.signing_bytes(), unb64(self.sig))

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        """Validate untrusted JSON data and check the signature."""
        if isinstance(data, dict) and data.get("v") != PROTOCOL_VERSION:
            raise WrongVersion(f"{cls.__name__} version {data.get('v')!r} is not {PROTOCOL_VERSION}")
        try:
            obj = cls.model_validate(data)
        except ValidationError as exc:
            raise MalformedMessage(f"invalid {cls.__name__}: {exc.errors()[0]['msg']}") from exc
        obj.verify()
        return obj


class LedgerRecord(_Signed):
    """One agent's entry in the capability ledger (DESIGN §3). Owner-written only."""

    _domain = "record"

    v: int = PROTOCOL_VERSION
    agent_id: AgentId
    lamport: int = Field(ge=0, lt=MAX_LAMPORT)
    name: ShortText = ""
    capability: str = Field(default="", max_length=4 * MAX_VECTOR_DIMS)
    tags: list[ShortText] = Field(default_factory=list, max_length=32)
    models: list[Annotated[str, StringConstraints(max_length=128)]] = Field(default_factory=list, max_length=8)
    hardware: Hardware = Field(default_factory=Hardware)
    availability: Availability = "online"
    reputation: dict[AgentId, float] = Field(default_factory=dict, max_length=64)
    addrs: list[Multiaddr] = Field(default_factory=list, max_length=MAX_ADDRS)
    issued_at: int = Field(ge=0)

    @property
    def author(self) -> str:
        return self.agent_id

    @field_validator("capability")
    @classmethod
    def _vector_decodes(cls, value: str) -> str:
        decode_vector(value)
        return value

    @field_validator("reputation")
    @classmethod
    def _reputation_in_unit_range(cls, value: dict[str, float]) -> dict[str, float]:
        if not all(0.0 <= r <= 1.0 for r in value.values()):
            raise ValueError("reputation values must lie in [0, 1]")
        return value

    @property
    def vector(self) -> list[float]:
        return decode_vector(self.capability)

    @classmethod
    def parse(cls, raw: bytes) -> LedgerRecord:
        return cls.from_wire(parse_json(raw, limit=MAX_RECORD_BYTES))


class Heartbeat(_Signed):
    """Liveness proof: "agent is up at ``ts``, its newest record is ``lamport``"."""

    _domain = "heartbeat"

    v: int = PROTOCOL_VERSION
    agent_id: AgentId
    lamport: int = Field(ge=0, lt=MAX_LAMPORT)
    ts: int = Field(ge=0)

    @property
    def author(self) -> str:
        return self.agent_id

    @classmethod
    def parse(cls, raw: bytes) -> Heartbeat:
        return cls.from_wire(parse_json(raw, limit=MAX_HEARTBEAT_BYTES))


# ---- anti-entropy bodies (inside envelopes, kind "ledger.sync") ---------------------------

Digest = dict[AgentId, Annotated[int, Field(ge=0, lt=MAX_LAMPORT)]]


class SyncRequest(_Wire):
    """Step 1 sends only ``digest_hash``; step 2 the full digest; step 3 pushes ``records``."""

    digest_hash: Annotated[str, StringConstraints(max_length=64)] = ""
    digest: Digest | None = Field(default=None, max_length=20_000)
    records: list[dict[str, Any]] = Field(default_factory=list, max_length=1_000)


class SyncReply(_Wire):
    in_sync: bool = False
    records: list[dict[str, Any]] = Field(default_factory=list, max_length=1_000)
    want: list[AgentId] = Field(default_factory=list, max_length=20_000)


# ---- pipeline bodies (paper Alg. 1; used by the Beacon/pipeline layers) -------------------


MAX_BEACON_REQUIREMENTS = 12  # a chain's sub-tasks (Task.max_steps caps them at 12 too)


class Beacon(_Wire):
    """BEACONSELECT's probe: requirement vectors r(t) (one per sub-task of a chain), a deadline and a priority.

    One beacon per chain instead of one per sub-task: a candidate scores itself against every
    requirement and answers once, so a 5-step chain costs one round, not five."""

    requirements: list[Annotated[str, StringConstraints(max_length=4 * MAX_VECTOR_DIMS)]] = Field(
        min_length=1, max_length=MAX_BEACON_REQUIREMENTS)
    deadline_ms: int = Field(ge=0)
    priority: int = Field(default=0, ge=0, le=9)
    task_type: ShortText = ""

    @field_validator("requirements")
    @classmethod
    def _requirements_decode(cls, value: list[str]) -> list[str]:
        for text in value:
            decode_sparse(text)
        return value

    @property
    def vectors(self) -> list[list[float]]:
        """The requirement vectors (``encode_sparse`` on the wire)."""
        return [decode_sparse(text) for text in self.requirements]


Score = Annotated[float, Field(ge=-1.0, le=1.0)]


class BeaconResponse(_Wire):
    """A candidate's local score for each requirement, in order, and its QoS; ``nonce`` echoes the beacon's."""

    nonce: Annotated[str, StringConstraints(min_length=16, max_length=64)]
    scores: list[Score] = Field(min_length=1, max_length=MAX_BEACON_REQUIREMENTS)
    queue_length: int = Field(ge=0, le=1_000_000)
    expected_latency_ms: float = Field(ge=0, le=1e9)


TaskText = Annotated[str, StringConstraints(max_length=32_000)]
AnswerKindName = Literal["number", "option", "yes_no", "text", "code"]


class TaskKnobs(_Wire):
    """A question's fault knobs (issue 17; ``pipeline.chain``), from the initiator to its planners and
    executors. A field left None takes the planner node's own default."""

    redundancy: int | None = Field(default=None, ge=1, le=2)  # executors per step (2: cross-checked)
    hop_timeout: Literal["adaptive", "off"] | Annotated[float, Field(gt=0, le=3600)] | None = None
    replans: int | None = Field(default=None, ge=0, le=3)  # failed steps re-planned per chain
    disclosure: Literal["full", "minimal"] | None = None  # minimal: executors get only marked context
    priority: int = Field(default=0, ge=0, le=9)  # higher is served first where work queues
    latency_budget_ms: float | None = Field(default=None, gt=0, le=3_600_000)  # executors over it rank last


class Task(_Wire):
    """A unit of work for a remote agent: ``plan`` (decompose and drive a chain) or
    ``execute`` (solve one sub-task). ``task_id`` makes retries idempotent. ``stop`` is no work: the
    agent that sent a plan or execute Task (same ``task_id`` and question) and stopped waiting for it
    asks for it to be stopped and for what it spent (``TaskService._stop``, on its own protocol)."""

    task_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Literal["plan", "execute", "stop"]
    # a question must say something: a blank one is malformed, not work (pattern: one non-space)
    question: Annotated[str, StringConstraints(max_length=32_000, pattern=r"\S")]
    background: TaskText = ""
    # the conversation before the question (system text and earlier turns), for planner and executors
    context: TaskText = ""
    # the executors' sampling temperature (a client's choice); None: each executor's own default
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    previous: list[tuple[TaskText, TaskText]] = Field(default_factory=list, max_length=32)
    answer_kind: AnswerKindName = "text"
    final: bool = True
    max_steps: int = Field(default=5, ge=1, le=12)
    strategy: Literal["cosine", "random", "linucb"] = "cosine"
    top_l: int = Field(default=8, ge=1, le=256)
    deadline_ms: int = Field(ge=0)
    knobs: TaskKnobs | None = None


class TaskResult(_Wire):
    """The outcome of a Task: answer, cost and (for a chain) its trace."""

    task_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    ok: bool
    answer: Annotated[str, StringConstraints(max_length=64_000)] = ""
    error: Annotated[str, StringConstraints(max_length=1_000)] = ""
    weight: float = Field(default=0.0, ge=-1.0, le=1.0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    trace: dict[str, Any] = Field(default_factory=dict)


Share = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_OUTCOME_EXECUTORS = 64


class Outcome(_Wire):
    """After a question's vote, how far the work done for ``task_id`` agreed with the accepted answer.

    The initiator sends one per chain to its planner (``task_id`` = the chain's ``{task}/c{n}``,
    ``agreed`` = the chain's answer won, ``executors`` = each of the chain's executors' share of
    upheld steps); the planner forwards each executor's share to it under the sub-task ID it sent
    (``{task}/c{n}/s{i}``). ``agreed`` is None when only the executors were judged."""

    task_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    agreed: Share | None = None
    executors: list[tuple[AgentId, Share]] = Field(default_factory=list, max_length=MAX_OUTCOME_EXECUTORS)


class OutcomeAck(_Wire):
    """The reply to an ``Outcome``: whether it moved anything (``reason`` when not), how many forwarded."""

    task_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    accepted: bool
    reason: ShortText = ""
    forwarded: int = Field(default=0, ge=0, le=MAX_OUTCOME_EXECUTORS)


__all__ = [
    "MAX_BEACON_REQUIREMENTS",
    "Beacon",
    "BeaconResponse",
    "Hardware",
    "Heartbeat",
    "LedgerRecord",
    "Outcome",
    "OutcomeAck",
    "SyncReply",
    "SyncRequest",
    "Task",
    "TaskKnobs",
    "TaskResult",
    "decode_sparse",
    "decode_vector",
    "encode_sparse",
    "encode_vector",
]
