"""Wire models of the sharded ledger: every cap and consistency rule rejects, with a clear error."""

from __future__ import annotations

import base64
import json

import pytest

from symphony.errors import BadSignature, MalformedMessage, TooLarge, WrongVersion
from symphony.ledger.shard import issue_summary, shard_of
from symphony.protocol.envelope import b64, seal
from symphony.protocol.messages import LedgerRecord, encode_vector
from symphony.protocol.sharding import (
    MAX_CONES,
    MAX_REQUIREMENTS,
    MAX_SUMMARY_BYTES,
    Cone,
    GatewayBundle,
    GatewayForward,
    ShardSummary,
    decode_q8,
    encode_q8,
)
from tests.conftest import identity

SHARDS = 2


def member(shard: int) -> int:
    """The first test identity that hashes into ``shard``."""
    return next(n for n in range(100) if shard_of(identity(n).agent_id, SHARDS) == shard)


def summary() -> ShardSummary:
    who = identity(member(0))
    records = [
        LedgerRecord(
            agent_id=identity(n).agent_id, lamport=1, capability=encode_vector([1.0, float(n), 0.5]), issued_at=0
        ).signed_by(identity(n))
        for n in range(12)
    ]
    return issue_summary(who, records, shard=0, shards=SHARDS, now_ms=1_000)


def test_summary_round_trips_and_verifies() -> None:
    """A gateway's summary parses back equal from its bytes."""
    s = summary()
    assert ShardSummary.parse(s.to_bytes()) == s


def test_oversized_summary_is_rejected() -> None:
    """Bytes over the cap are refused before JSON decoding."""
    with pytest.raises(TooLarge):
        ShardSummary.parse(b" " * (MAX_SUMMARY_BYTES + 1))


def test_tampered_summary_fails_its_signature() -> None:
    """Changing the member count after signing breaks the gateway's signature."""
    data = json.loads(summary().to_bytes())
    data["members"] += 1
    data["cones"][0]["members"] += 1
    with pytest.raises(BadSignature):
        ShardSummary.from_wire(data)


def test_wrong_version_is_rejected() -> None:
    """A summary of another protocol version is refused as such."""
    data = json.loads(summary().to_bytes()) | {"v": 99}
    with pytest.raises(WrongVersion):
        ShardSummary.from_wire(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shard": 2}, "out of range"),
        ({"members": 1}, "more members"),
        ({"cones": "MIXED_DIMS"}, "differ in dimension"),
        ({"standby": [{"agent_id": "GATEWAY", "addrs": []}]}, "standby lists the gateway"),
        ({"cones": "TOO_MANY"}, "at most 8"),
    ],
)
def test_inconsistent_summary_is_malformed(change: dict[str, object], message: str) -> None:
    """Out-of-range shard, cones holding more than the shard, box without cones (or the reverse),
    the gateway as its own standby, too many cones: each is malformed."""
    data = json.loads(summary().to_bytes())
    if change.get("standby"):
        change = {"standby": [{"agent_id": data["gateway"], "addrs": []}]}
    if change.get("cones") == "MIXED_DIMS":
        short = data["cones"][0] | {"centroid": encode_q8([1]), "high": encode_q8([1]), "low": encode_q8([0])}
        change = {"cones": [data["cones"][0], short]}
    if change.get("cones") == "TOO_MANY":
        change = {"cones": [data["cones"][0]] * (MAX_CONES + 1)}
    with pytest.raises(MalformedMessage, match=message):
        ShardSummary.from_wire(data | change)


def test_zero_centroid_and_crossed_box_are_malformed() -> None:
    """A zero centroid, and a box whose high lies below its low, do not validate."""
    with pytest.raises(ValueError, match="zero vector"):
        Cone(centroid=encode_q8([0, 0]), cos_radius=0.5, members=1, high=encode_q8([1, 1]), low=encode_q8([0, 0]))
    with pytest.raises(ValueError, match="crosses"):
        Cone(centroid=encode_q8([1, 0]), cos_radius=0.5, members=1, high=encode_q8([0, 0]), low=encode_q8([5, 0]))


def test_q8_vectors_round_trip_and_reject_bad_levels() -> None:
    """int8 levels decode as level / 127; level -128 and out-of-range levels are refused."""
    assert decode_q8(encode_q8([127, -127, 0])) == [1.0, -1.0, 0.0]
    with pytest.raises(ValueError, match="levels in"):
        encode_q8([128])
    with pytest.raises(MalformedMessage, match="not valid"):
        decode_q8(base64.b64encode(bytes([0x80])).decode())


def forward(**changes: object) -> dict[str, object]:
    beacon = b64(seal(identity(0), "beacon", {"requirements": [encode_vector([1.0, 0.0])], "deadline_ms": 5}, now_ms=0).wire)
    return {
        "shard": 1,
        "shards": 4,
        "requirements": [encode_vector([1.0, 0.0])],
        "top_l": 4,
        "deadline_ms": 5,
        "beacon": beacon,
    } | changes


def test_valid_forward_decodes_its_requirements() -> None:
    """A forward's requirement vectors decode as sent."""
    assert GatewayForward.model_validate(forward()).vectors() == [[1.0, 0.0]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"requirements": [encode_vector([1.0])] * (MAX_REQUIREMENTS + 1)}, "at most 12"),
        ({"requirements": [encode_vector([1.0]), encode_vector([1.0, 0.0])]}, "differ in dimension"),
        ({"floors": [0.1, 0.2]}, "one per requirement"),
        ({"top_l": 0}, "greater than or equal to 1"),
        ({"exclude": ["x"] * 257}, "at most 256"),
        ({"shard": 4}, "out of range"),
    ],
)
def test_invalid_forward_is_rejected(change: dict[str, object], message: str) -> None:
    """Too many requirements, mixed dimensions, misaligned floors, top_l 0, a long exclude list, a
    shard out of range: each is refused."""
    with pytest.raises(ValueError, match=message):
        GatewayForward.model_validate(forward(**change))


def test_forward_must_relay_a_beacon() -> None:
    """Only a ``beacon`` envelope may be relayed (not a task, say)."""
    task = b64(seal(identity(0), "task", {}, now_ms=0).wire)
    with pytest.raises(ValueError, match="not a beacon"):
        GatewayForward.model_validate(forward(beacon=task))


def test_bundle_cannot_hold_more_replies_than_members_asked() -> None:
    """A bundle claiming more replies than members asked is malformed."""
    reply = b64(seal(identity(1), "beacon.reply", {}, now_ms=0).wire)
    with pytest.raises(ValueError, match="2 replies from 1 members"):
        GatewayBundle.model_validate(
            {"shard": 0, "nonce": "n" * 24, "asked": 1, "entries": [{"record": {}, "reply": reply}] * 2}
        )


@pytest.mark.parametrize(
    ("reply", "message"),
    [("!!not base64", "not valid base64"), (b64(b"\x02" * 40), "truncated"), (12, "base64 string")],
)
def test_bundle_refuses_a_reply_that_is_not_a_sealed_frame(reply: object, message: str) -> None:
    """A member reply inside a bundle must be a base64 envelope frame; anything else is malformed."""
    with pytest.raises(ValueError, match=message):
        GatewayBundle.model_validate(
            {"shard": 0, "nonce": "n" * 24, "asked": 1, "entries": [{"record": {}, "reply": reply}]}
        )
