import os
import stat

import pytest

from symphony.errors import BadSignature, ConfigError, MalformedMessage
from symphony.protocol import identity as identity_module
from symphony.protocol.identity import Identity, _VerifiedCache, public_key_from_agent_id, verify


def test_agent_id_is_the_libp2p_peer_id() -> None:
    """Our pure peer-ID derivation matches libp2p's for the same Ed25519 key."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    ident = Identity.generate()
    assert ID.from_pubkey(create_new_key_pair(ident.seed).public_key).to_base58() == ident.agent_id


def test_public_key_recovered_from_agent_id() -> None:
    """The agent ID embeds the public key, so signatures verify from the ID alone."""
    ident = Identity.generate()
    assert public_key_from_agent_id(ident.agent_id) == ident.public_key
    verify(ident.agent_id, b"hello", ident.sign(b"hello"))


def test_signature_by_another_key_is_rejected() -> None:
    """A signature made by A does not verify as B's."""
    a, b = Identity.generate(), Identity.generate()
    with pytest.raises(BadSignature):
        verify(b.agent_id, b"hello", a.sign(b"hello"))


@pytest.mark.parametrize("bad", ["", "not-base58-0OIl", "12D3KooW", "x" * 100, "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"])
def test_malformed_agent_ids_are_rejected(bad: str) -> None:
    """Anything but an Ed25519 identity-multihash peer ID is malformed."""
    with pytest.raises(MalformedMessage):
        public_key_from_agent_id(bad)


def test_key_file_is_created_0600_and_reloaded(tmp_path) -> None:
    """A restarted node loads the same key, stored with mode 0600."""
    path = tmp_path / "key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load_or_create(path).agent_id == first.agent_id


def test_world_readable_key_file_is_refused(tmp_path) -> None:
    """A key readable by other users is refused with the fix in the message."""
    path = tmp_path / "key"
    Identity.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Identity.load_or_create(path)


def test_a_bad_signature_is_never_cached() -> None:
    """A forged signature fails every time: failures are not remembered, so it cannot become a hit."""
    a, b = Identity.generate(), Identity.generate()
    forged = a.sign(b"pay 5")
    for _ in range(3):
        with pytest.raises(BadSignature):
            verify(b.agent_id, b"pay 5", forged)
    assert not identity_module._verified.hit((b.agent_id, forged, identity_module.hashlib.sha256(b"pay 5").digest()))


def test_a_cached_success_still_requires_the_same_bytes() -> None:
    """After a good signature is cached, the same signature over other bytes or by another signer still fails."""
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"pay 5")
    verify(a.agent_id, b"pay 5", sig)
    verify(a.agent_id, b"pay 5", sig)  # the hit
    with pytest.raises(BadSignature):
        verify(a.agent_id, b"pay 500", sig)
    with pytest.raises(BadSignature):
        verify(b.agent_id, b"pay 5", sig)


def test_verified_cache_is_a_bounded_lru() -> None:
    """The cache holds at most its capacity, evicting the least recently used entry."""
    cache = _VerifiedCache(capacity=2)
    cache.add(("a", b"s", b"d1"))
    cache.add(("a", b"s", b"d2"))
    assert cache.hit(("a", b"s", b"d1"))  # d1 is now the most recent
    cache.add(("a", b"s", b"d3"))
    assert len(cache) == 2
    assert not cache.hit(("a", b"s", b"d2"))
    assert cache.hit(("a", b"s", b"d1")) and cache.hit(("a", b"s", b"d3"))
