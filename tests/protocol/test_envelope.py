import os
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.errors import (
    BadSignature,
    MalformedMessage,
    PeerError,
    ReplayedMessage,
    StaleMessage,
    TooLarge,
    WrongVersion,
)
from symphony.protocol.envelope import MAX_INFLATED_BYTES, ReplayGuard, decode_envelope, open_envelope, peek_kind, seal
from tests.conftest import identity

NOW = 1_700_000_000_000


def _sealed(body: dict | None = None, *, now: int = NOW) -> bytes:
    return seal(identity(0), "test.kind", body or {"x": 1}, now_ms=now).to_bytes()


def test_roundtrip() -> None:
    """A sealed envelope opens with the same sender and body."""
    env = open_envelope(_sealed({"q": "hi"}), guard=ReplayGuard(), now_ms=NOW)
    assert env.sender == identity(0).agent_id and env.body == {"q": "hi"}


def test_replay_is_rejected() -> None:
    """The same envelope accepted once is refused the second time."""
    raw, guard = _sealed(), ReplayGuard()
    open_envelope(raw, guard=guard, now_ms=NOW)
    with pytest.raises(ReplayedMessage):
        open_envelope(raw, guard=guard, now_ms=NOW + 5)


@pytest.mark.parametrize("offset", [-31_000, 31_000])
def test_timestamp_outside_skew_window_is_stale(offset: int) -> None:
    """Envelopes more than 30 s off our clock, either way, are refused."""
    with pytest.raises(StaleMessage):
        open_envelope(_sealed(now=NOW + offset), guard=ReplayGuard(), now_ms=NOW)


def _frame(body: bytes, *, kind: bytes = b"test.kind", flags: int = 0, version: int = 2, ts: int = NOW,
           signer: int = 0) -> bytes:
    """A hand-made frame (see ``envelope``'s docstring), signed by ``identity(signer)``."""
    unsigned = struct.pack("<BB32s12sQB", version, flags, identity(signer).public_key, os.urandom(12), ts,
                           len(kind)) + kind + body
    return unsigned + identity(signer).sign(b"symphony/envelope/2\n" + unsigned)


def test_tampered_body_fails_signature() -> None:
    """Changing any signed byte breaks the signature."""
    raw = _sealed({"amount": 1})
    tampered = raw.replace(b'"amount":1', b'"amount":9')
    assert tampered != raw
    with pytest.raises(BadSignature):
        open_envelope(tampered, guard=ReplayGuard(), now_ms=NOW)


def test_sender_swap_fails_signature() -> None:
    """An envelope signed by A but claiming sender B is refused."""
    raw = _sealed()
    swapped = raw[:2] + identity(1).public_key + raw[34:]
    with pytest.raises(BadSignature):
        open_envelope(swapped, guard=ReplayGuard(), now_ms=NOW)


def test_wrong_version_is_rejected() -> None:
    with pytest.raises(WrongVersion, match="^envelope version 1 is not 2$"):
        open_envelope(_frame(b"{}", version=1), guard=ReplayGuard(), now_ms=NOW)
    with pytest.raises(WrongVersion):  # a version-1 JSON envelope
        open_envelope(b'{"v":1,"kind":"k","sender":"s","nonce":"' + b"0" * 24 + b'","ts":1,"body":{},"sig":"'
                      + b"A" * 88 + b'"}', guard=ReplayGuard(), now_ms=NOW)


def test_oversized_is_rejected_before_parsing() -> None:
    with pytest.raises(TooLarge):
        open_envelope(b"\x02" + b" " * 300_000, guard=ReplayGuard(), now_ms=NOW)


@pytest.mark.parametrize(("raw", "match"), [
    (b"", "truncated"),
    (b"not json", "truncated"),
    (_frame(b"{}", flags=2), "flags 0x2 are unknown"),
    (_frame(b"{}", kind=b"Bad Kind"), "kind 'Bad Kind' is invalid"),
    (_frame(b"{}", kind=b""), "kind '' is invalid"),
    (_frame(b"[1, 2]"), "body is a list, not an object"),
    (_frame(b"{"), "not valid JSON"),
    (_frame(b"\xff\xfe"), "not valid JSON"),
    (_frame(b"not zlib", flags=1), "does not inflate"),
    (_frame(zlib.compress(b"{}") + b"junk", flags=1), "not one complete zlib stream"),
])
def test_malformed_is_rejected(raw: bytes, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        open_envelope(raw, guard=ReplayGuard(), now_ms=NOW)


def test_zip_bomb_is_refused() -> None:
    """A signed body that inflates past 256 kB is refused however small it is on the wire."""
    bomb = zlib.compress(b'{"x":"' + b"0" * (MAX_INFLATED_BYTES + 10) + b'"}', 9)
    assert len(bomb) < 2_000
    with pytest.raises(TooLarge, match="inflates past the 262144-byte cap"):
        open_envelope(_frame(bomb, flags=1), guard=ReplayGuard(), now_ms=NOW)


def test_a_large_body_is_compressed_and_opens_unchanged() -> None:
    """Bodies over 256 bytes travel zlib-compressed (flag bit 0) when that is smaller; small ones never do."""
    body = {"text": "the same words again " * 200}
    raw = _sealed(body)
    assert raw[1] == 1 and len(raw) < 600
    assert open_envelope(raw, guard=ReplayGuard(), now_ms=NOW).body == body
    assert _sealed({"x": 1})[1] == 0


def test_framing_costs_under_130_bytes() -> None:
    """Sender key, nonce, timestamp, kind and signature as binary: the frame is the body plus ~120 bytes."""
    raw = _sealed({"x": 1})
    assert len(raw) - len(b'{"x":1}') == 1 + 1 + 32 + 12 + 8 + 1 + len("test.kind") + 64


def test_unverified_decoding_and_kind_peeking() -> None:
    raw = _sealed({"q": "hi"})
    env = decode_envelope(raw)
    assert (env.kind, env.sender, env.body, env.to_bytes()) == ("test.kind", identity(0).agent_id, {"q": "hi"}, raw)
    assert peek_kind(raw) == "test.kind" and peek_kind(b"garbage") == "?"


def test_sealing_refuses_a_bad_kind() -> None:
    with pytest.raises(ValueError, match="cannot seal kind"):
        seal(identity(0), "Bad Kind", {}, now_ms=NOW)


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(MalformedMessage, match="expected a 'other'"):
        open_envelope(_sealed(), guard=ReplayGuard(), now_ms=NOW, kind="other")


def test_replay_guard_eviction_raises_the_floor() -> None:
    """When the cache is full, evicting a nonce must not reopen a replay of it."""
    guard = ReplayGuard(capacity=2)
    for i, nonce in enumerate(["a" * 16, "b" * 16, "c" * 16]):
        guard.check("s", nonce, NOW + i, now_ms=NOW)
    assert len(guard) == 2
    with pytest.raises(StaleMessage):
        guard.check("s", "a" * 16, NOW, now_ms=NOW)


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused_as_a_peer_error(position: int, bit: int) -> None:
    """No single-bit corruption of a valid frame is ever accepted, and none escapes as anything but a PeerError."""
    raw = bytearray(_sealed({"q": "hello"}))
    raw[position % len(raw)] ^= 1 << bit
    with pytest.raises(PeerError):
        open_envelope(bytes(raw), guard=ReplayGuard(), now_ms=NOW)
