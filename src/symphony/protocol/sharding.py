"""Wire models of the sharded ledger and the gateway beacon (paper §3.3; DESIGN §3, architecture §9).

- ``ShardSummary``: what a shard's gateway publishes about its members, signed by the gateway so
  any node can relay and store it: member count and a few clusters of members' published
  capability vectors, each a *cone* (a centroid and the smallest cosine between it and any member
  of the cluster) and a *box* (the cluster's per-dimension max/min), in int8 levels. Every member
  with a non-zero vector lies inside one cone and its box, so the summary bounds the cosine score
  any member can reach for a requirement (``ledger.shard.summary_bound``). It also names up to
  ``MAX_STANDBY`` standby members (the rendezvous runners-up) to ask if the gateway is dead.
- ``GatewayForward`` (body of a ``gateway.forward`` envelope, sealed by the initiator): the
  requirement vectors (one per sub-task of a chain), how many members to forward to, per-requirement
  score floors, an exclude list, a deadline, and the initiator's own sealed ``beacon`` envelope,
  which the gateway relays unchanged to its members.
- ``GatewayBundle`` (body of a ``gateway.bundle`` envelope, sealed by the gateway): each member's
  own signed ledger record and its own sealed ``beacon.reply`` envelope. The initiator verifies
  every reply against the member's key and its own nonce, so a gateway can drop replies but cannot
  forge or inflate one.

Every list and string is capped and every vector decoded at validation; ``ShardSummary.parse``
size-checks raw bytes before JSON decoding (envelopes are opened with a size limit by the caller).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator

from symphony.errors import MalformedMessage
from symphony.protocol.envelope import PROTOCOL_VERSION, Sealed, b64, parse_json, unb64
from symphony.protocol.messages import MAX_VECTOR_DIMS, AgentId, Multiaddr, _Signed, _Wire, decode_vector

MAX_SUMMARY_BYTES = 16 * 1024
MAX_CONES = 8
MAX_STANDBY = 2
MAX_REQUIREMENTS = 12  # one per sub-task of a chain (Task.max_steps caps chains at 12)
MAX_EXCLUDE = 256
MAX_FORWARD_TOP_L = 64
MAX_BUNDLE_ENTRIES = 64
MAX_FORWARD_BYTES = 48 * 1024
MAX_BUNDLE_BYTES = 512 * 1024
MAX_SHARDS = 65_536
MAX_ADDRS = 4

Q8 = 127
Q8Vector = Annotated[str, StringConstraints(min_length=1, max_length=4 * MAX_VECTOR_DIMS // 3 + 4)]
EncodedVector = Annotated[str, StringConstraints(min_length=1, max_length=4 * MAX_VECTOR_DIMS)]
Floor = Annotated[float, Field(ge=-1.0, le=1.0)]


def _decodes(values: list[str]) -> list[str]:
    dims = {len(decode_vector(v)) for v in values}
    if len(dims) > 1:
        raise ValueError("vectors differ in dimension")
    return values


def encode_q8(levels: Sequence[int]) -> str:
    """Pack integer levels in [-127, 127] (value = level / 127) as base64 int8: 1 byte per dim."""
    if len(levels) > MAX_VECTOR_DIMS or any(not -Q8 <= q <= Q8 for q in levels):
        raise ValueError(f"q8 vectors hold at most {MAX_VECTOR_DIMS} levels in [-{Q8}, {Q8}]")
    return b64(struct.pack(f"{len(levels)}b", *levels))


def decode_q8(text: str) -> list[float]:
    """The values of an ``encode_q8`` string. Raises MalformedMessage on a bad length or level."""
    raw = unb64(text)
    levels = struct.unpack(f"{len(raw)}b", raw)
    if len(raw) > MAX_VECTOR_DIMS or -Q8 - 1 in levels:
        raise MalformedMessage(f"q8 vector of {len(raw)} bytes is not valid")
    return [q / Q8 for q in levels]


class Cone(_Wire):
    """A cluster of members: a unit-ish ``centroid`` with ``cos_radius``, a lower bound on the cosine
    between it and every member of the cluster, and the cluster's box: per-dimension ``high`` /
    ``low`` of the members' unit vectors, rounded outward. All three vectors travel as int8 levels
    (``encode_q8``): the radius is measured against the quantized centroid, so rounding costs
    tightness, never soundness."""

    centroid: Q8Vector
    cos_radius: float = Field(ge=-1.0, le=1.0)
    members: int = Field(ge=1, le=1_000_000)
    high: Q8Vector
    low: Q8Vector

    @model_validator(mode="after")
    def _consistent(self) -> Cone:
        centroid, high, low = decode_q8(self.centroid), decode_q8(self.high), decode_q8(self.low)
        if not any(centroid):
            raise ValueError("centroid is the zero vector")
        if not len(centroid) == len(high) == len(low) or any(h < lo for h, lo in zip(high, low, strict=True)):
            raise ValueError("cone vectors differ in dimension or its box crosses")
        return self


class Contact(_Wire):
    """A member the initiator may dial: its agent ID and listen addresses (from its own record)."""

    agent_id: AgentId
    addrs: list[Multiaddr] = Field(default_factory=list, max_length=MAX_ADDRS)


class ShardSummary(_Signed):
    """A shard gateway's signed summary of its shard (relayed by gossip, stored by every node)."""

    _domain = "shard.summary"

    v: int = PROTOCOL_VERSION
    shard: int = Field(ge=0, lt=MAX_SHARDS)
    shards: int = Field(ge=2, le=MAX_SHARDS)
    gateway: AgentId
    addrs: list[Multiaddr] = Field(default_factory=list, max_length=MAX_ADDRS)
    members: int = Field(ge=1, le=1_000_000)
    cones: list[Cone] = Field(default_factory=list, max_length=MAX_CONES)  # members with a zero vector: in none
    standby: list[Contact] = Field(default_factory=list, max_length=MAX_STANDBY)
    issued_at: int = Field(ge=0)

    @property
    def author(self) -> str:
        return self.gateway

    @model_validator(mode="after")
    def _consistent(self) -> ShardSummary:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} out of range for {self.shards} shards")
        if sum(c.members for c in self.cones) > self.members:
            raise ValueError("cones hold more members than the shard")
        standby = [c.agent_id for c in self.standby]
        if self.gateway in standby or len(set(standby)) != len(standby):
            raise ValueError("standby lists the gateway or repeats a member")
        if len({len(decode_q8(c.centroid)) for c in self.cones}) > 1:
            raise ValueError("cones differ in dimension")
        return self

    @classmethod
    def parse(cls, raw: bytes) -> ShardSummary:
        """Size-check, decode, validate and verify a summary from the network.

        Raises:
            TooLarge, MalformedMessage, WrongVersion, BadSignature.
        """
        return cls.from_wire(parse_json(raw, limit=MAX_SUMMARY_BYTES))


class GatewayForward(_Wire):
    """The initiator's request to a shard gateway: beacon my requirements inside your shard."""

    shard: int = Field(ge=0, lt=MAX_SHARDS)
    shards: int = Field(ge=2, le=MAX_SHARDS)
    requirements: list[EncodedVector] = Field(min_length=1, max_length=MAX_REQUIREMENTS)
    floors: list[Floor] = Field(default_factory=list, max_length=MAX_REQUIREMENTS)
    top_l: int = Field(ge=1, le=MAX_FORWARD_TOP_L)
    exclude: list[AgentId] = Field(default_factory=list, max_length=MAX_EXCLUDE)
    deadline_ms: int = Field(ge=0)
    beacon: Sealed

    @field_validator("requirements")
    @classmethod
    def _requirements_decode(cls, value: list[str]) -> list[str]:
        return _decodes(value)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayForward:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} out of range for {self.shards} shards")
        if self.floors and len(self.floors) != len(self.requirements):
            raise ValueError("floors must be empty or one per requirement")
        if self.beacon.kind != "beacon":
            raise ValueError(f"relayed envelope is a {self.beacon.kind!r}, not a beacon")
        return self

    def vectors(self) -> list[list[float]]:
        return [decode_vector(r) for r in self.requirements]


class BundleEntry(_Wire):
    """One member's answer: its own signed ledger record and its own sealed ``beacon.reply``."""

    record: dict[str, Any]
    reply: Sealed


class GatewayBundle(_Wire):
    """The gateway's answer: the members' replies, plus how many it asked and lost."""

    shard: int = Field(ge=0, lt=MAX_SHARDS)
    nonce: Annotated[str, StringConstraints(min_length=16, max_length=64)]
    asked: int = Field(ge=0, le=MAX_BUNDLE_ENTRIES)
    entries: list[BundleEntry] = Field(default_factory=list, max_length=MAX_BUNDLE_ENTRIES)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayBundle:
        if len(self.entries) > self.asked:
            raise ValueError(f"{len(self.entries)} replies from {self.asked} members asked")
        return self


__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_ENTRIES",
    "MAX_CONES",
    "MAX_EXCLUDE",
    "MAX_FORWARD_BYTES",
    "MAX_FORWARD_TOP_L",
    "MAX_REQUIREMENTS",
    "MAX_STANDBY",
    "MAX_SUMMARY_BYTES",
    "BundleEntry",
    "Cone",
    "Contact",
    "GatewayBundle",
    "GatewayForward",
    "ShardSummary",
    "decode_q8",
    "encode_q8",
]
