import json

import pytest

from symphony.errors import BadSignature, MalformedMessage, ReplayedMessage, StaleMessage, TooLarge, WrongVersion
from symphony.protocol.envelope import ReplayGuard, open_envelope, seal
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


def test_tampered_body_fails_signature() -> None:
    """Changing any signed field breaks the signature."""
    data = json.loads(_sealed({"amount": 1}))
    data["body"]["amount"] = 1000
    with pytest.raises(BadSignature):
        open_envelope(json.dumps(data).encode(), guard=ReplayGuard(), now_ms=NOW)


def test_sender_swap_fails_signature() -> None:
    """An envelope signed by A but claiming sender B is refused."""
    data = json.loads(_sealed())
    data["sender"] = identity(1).agent_id
    with pytest.raises(BadSignature):
        open_envelope(json.dumps(data).encode(), guard=ReplayGuard(), now_ms=NOW)


def test_wrong_version_is_rejected() -> None:
    data = json.loads(_sealed())
    data["v"] = 99
    with pytest.raises(WrongVersion):
        open_envelope(json.dumps(data).encode(), guard=ReplayGuard(), now_ms=NOW)


def test_oversized_is_rejected_before_parsing() -> None:
    with pytest.raises(TooLarge):
        open_envelope(b"{" + b" " * 300_000 + b"}", guard=ReplayGuard(), now_ms=NOW)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"[1,2", b"[]", b'{"v":1}', b'{"v":1,"kind":"k","sender":"s","nonce":"n","ts":-1,"body":{},"sig":""}'])
def test_malformed_is_rejected(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        open_envelope(raw, guard=ReplayGuard(), now_ms=NOW)


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
