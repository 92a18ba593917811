"""Wire models of the sharded ledger and the gateway beacon (paper §3.3; DESIGN §3, architecture §8).

- ``ShardSummary``: what a shard's gateway publishes about its members, signed by the gateway so
  any node can relay and store it: member count and a few *cones* (a unit centroid of a cluster of
  members' published capability vectors and the smallest cosine between that centroid and any
  member of the cluster), plus the per-dimension max/min of all members' unit vectors (``Box``).
  Every member with a non-zero vector lies inside one cone and inside the box, so the summary bounds the cosine
  score any member can reach for a requirement (``ledger.shard.summary_bound``). It also names up to
  ``MAX_STANDBY`` standby members (the rendezvous runners-up) to ask if the gateway is dead.
- ``GatewayForward`` (body of a ``gateway.forward`` envelope, sealed by the initiator): the
  requirement vectors (one per sub-task of a chain), how many members to forward to, per-requirement
  score floors, an exclude list, a deadline, and the initiator's own sealed ``beacon`` envelope,
  which the gateway relays unchanged to its members.
- ``GatewayBundle`` (body of a ``gateway.bundle`` envelope, sealed by the gateway): each member's
  own signed ledger record and its own sealed ``beacon.reply`` envelope. The initiator verifies
  every reply against the member's key and its own nonce, so a gateway can drop replies but cannot
  forge or inflate one.

Every list and string is capped and every vector decoded at validation; the ``parse_*`` functions
size-check raw bytes before JSON decoding.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator

from symphony.protocol.envelope import PROTOCOL_VERSION, Envelope, parse_json
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

EncodedVector = Annotated[str, StringConstraints(min_length=1, max_length=4 * MAX_VECTOR_DIMS)]
Floor = Annotated[float, Field(ge=-1.0, le=1.0)]


def _decodes(values: list[str]) -> list[str]:
    dims = {len(decode_vector(v)) for v in values}
    if len(dims) > 1:
        raise ValueError("vectors differ in dimension")
    return values


class Cone(_Wire):
    """A cluster of members: unit ``centroid`` (float16, as records carry vectors) and ``cos_radius``,
    a lower bound on the cosine between the centroid and every member of the cluster."""

    centroid: EncodedVector
    cos_radius: float = Field(ge=-1.0, le=1.0)
    members: int = Field(ge=1, le=1_000_000)

    @field_validator("centroid")
    @classmethod
    def _centroid_decodes(cls, value: str) -> str:
        if not any(decode_vector(value)):
            raise ValueError("centroid is the zero vector")
        return value


class Contact(_Wire):
    """A member the initiator may dial: its agent ID and listen addresses (from its own record)."""

    agent_id: AgentId
    addrs: list[Multiaddr] = Field(default_factory=list, max_length=MAX_ADDRS)


class Box(_Wire):
    """Per-dimension ``high`` / ``low`` of the members' unit vectors, rounded outward to float16."""

    high: EncodedVector
    low: EncodedVector

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        high, low = decode_vector(self.high), decode_vector(self.low)
        if len(high) != len(low) or any(h < lo for h, lo in zip(high, low, strict=True)):
            raise ValueError("box high and low differ in dimension or cross")
        return self


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
    box: Box | None = None  # of the members in cones; None when cones is empty
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
        if (self.box is None) != (not self.cones):
            raise ValueError("a box comes with the cones and only with them")
        if self.cones and self.box is not None:
            _decodes([c.centroid for c in self.cones] + [self.box.high])
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
    beacon: Envelope

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
    reply: Envelope


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
    "Box",
    "BundleEntry",
    "Cone",
    "Contact",
    "GatewayBundle",
    "GatewayForward",
    "ShardSummary",
]
