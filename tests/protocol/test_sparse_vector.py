"""Sparse requirement encoding: compact, round-trips within quantization, and strict on hostile input."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.capability.vector import HashingTagEncoder, classify_task_type, requirement_vector
from symphony.errors import MalformedMessage
from symphony.protocol.messages import MAX_VECTOR_DIMS, Beacon, decode_sparse, encode_sparse, encode_vector


def _raw(scale: float, dims: int, entries: list[tuple[int, int]]) -> str:
    body = struct.pack("<eB", scale, dims - 1) + b"".join(struct.pack("<Bb", i, q) for i, q in entries)
    return base64.b64encode(body).decode()


def test_a_requirement_is_a_tenth_of_its_dense_size() -> None:
    """A real sub-task requirement (224 dims, mostly zero) packs far smaller than dense float16."""
    text = "Sub-task 3: compute the quantity of part 3 of the problem."
    r = list(requirement_vector(text, classify_task_type(text), HashingTagEncoder()))
    assert len(encode_sparse(r)) * 5 < len(encode_vector(r))
    assert decode_sparse(encode_sparse(r)) == pytest.approx(r, abs=max(map(abs, r)) / 254 + 1e-3)


def test_the_zero_vector_is_header_only() -> None:
    assert decode_sparse(encode_sparse([0.0] * 7)) == [0.0] * 7
    assert len(base64.b64decode(encode_sparse([0.0] * 7))) == 3


@pytest.mark.parametrize(("text", "match"), [
    (_raw(1.0, 4, [(1, 5), (1, 6)]), "repeated or unordered"),
    (_raw(1.0, 4, [(2, 5), (1, 6)]), "repeated or unordered"),
    (_raw(1.0, 4, [(4, 5)]), "out of range"),
    (_raw(1.0, 4, [(0, 0)]), "out of range"),
    (_raw(1.0, 4, [(0, -128)]), "out of range"),
    (_raw(float("nan"), 4, [(0, 1)]), "scale nan is invalid"),
    (_raw(float("inf"), 4, [(0, 1)]), "scale inf is invalid"),
    (_raw(-1.0, 4, [(0, 1)]), "scale -1.0 is invalid"),
    (_raw(1.0, 4, []), "scale 1.0 is invalid for 0 entries"),
    (_raw(1.0, 2, [(0, 1), (1, 1), (1, 1)]), "claims 2 dims and 3 entries"),
    (base64.b64encode(b"\x00\x3c").decode(), "truncated"),
    (base64.b64encode(struct.pack("<eB", 1.0, 3) + b"\x01").decode(), "truncated"),
    ("not base64!", "base64"),
])
def test_hostile_encodings_are_rejected(text: str, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        decode_sparse(text)


def test_a_beacon_with_a_bad_requirement_is_invalid() -> None:
    """The wire model decodes every requirement, so a bad one never reaches a responder's scoring."""
    with pytest.raises(ValueError, match="repeated or unordered"):
        Beacon(requirements=[encode_sparse([1.0]), _raw(1.0, 4, [(1, 5), (1, 6)])], deadline_ms=0)


def test_encoding_refuses_too_many_dims_and_non_finite_values() -> None:
    with pytest.raises(ValueError, match="dims"):
        encode_sparse([0.0] * (MAX_VECTOR_DIMS + 1))
    with pytest.raises(ValueError, match="non-finite"):
        encode_sparse([float("nan")])


vectors = st.lists(st.one_of(st.just(0.0), st.floats(-1000, 1000, allow_nan=False)), min_size=1,
                   max_size=MAX_VECTOR_DIMS)


@given(vectors)
def test_round_trip_is_within_quantization_and_canonical(values: list[float]) -> None:
    """decode(encode(v)) is v to within scale / 254 per dim (zeros stay zero), and re-encoding is stable."""
    decoded = decode_sparse(encode_sparse(values))
    scale = max(map(abs, values))
    assert len(decoded) == len(values)
    for v, d in zip(values, decoded, strict=True):
        assert abs(v - d) <= scale / 254 + scale * 1e-3 + 1e-6
        if v == 0.0:
            assert d == 0.0
    assert encode_sparse(decoded) == encode_sparse(values) or decode_sparse(encode_sparse(decoded)) == pytest.approx(
        decoded, abs=scale / 254 + scale * 1e-3 + 1e-6)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_malformed(raw: bytes) -> None:
    try:
        values = decode_sparse(base64.b64encode(raw).decode())
    except MalformedMessage:
        return
    assert 1 <= len(values) <= MAX_VECTOR_DIMS
